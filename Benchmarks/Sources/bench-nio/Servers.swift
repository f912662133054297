import BenchSupport
import Dispatch
import Glibc
import NIOCore
import NIOHTTP1
import NIOPosix

/// B4: SwiftNIO's echo server, NIO's own way (a ChannelInboundHandler as in its NIOEchoServer
/// example): every read is written back, flushed once per read burst.
final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// B4b: an HTTP/1.1 hello server on NIOHTTP1 (the HTTP/1 pipeline with pipelining assistance):
/// each request gets the same 13-byte "Hello, World!" response UVLoop's http-hello sends.
final class HelloHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private var keepAlive = true
    private let body: ByteBuffer
    private var needsFlush = false

    init(allocator: ByteBufferAllocator) {
        body = allocator.buffer(string: "Hello, World!")
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            keepAlive = head.isKeepAlive
        case .body:
            break
        case .end:
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "text/plain")
            headers.add(name: "Content-Length", value: "13")
            if !keepAlive { headers.add(name: "Connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            if keepAlive {
                context.write(wrapOutboundOut(.end(nil)), promise: nil)
                needsFlush = true
            } else {
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if needsFlush {
            needsFlush = false
            context.flush()
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Serves with `threads` event loops on 127.0.0.1 (any port) until SIGTERM.
func serve(threads: Int, _ initialize: @escaping @Sendable (Channel) throws -> Void) throws -> [Measurement] {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    let channel = try ServerBootstrap(group: group)
        .serverChannelOption(ChannelOptions.backlog, value: 511)
        .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
        .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture { try initialize(channel) }
        }
        .bind(host: "127.0.0.1", port: 0)
        .wait()
    announceListening(port: channel.localAddress?.port ?? 0)
    waitForSIGTERM()
    try? channel.close().wait()
    try? group.syncShutdownGracefully()
    return []
}

/// Blocks the calling thread until SIGTERM.
func waitForSIGTERM() {
    signal(SIGTERM, SIG_IGN)
    let done = DispatchSemaphore(value: 0)
    let source = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
    source.setEventHandler { done.signal() }
    source.resume()
    done.wait()
    source.cancel()
}

func echoServer(loops: Int) throws -> [Measurement] {
    try serve(threads: loops) { channel in
        try channel.pipeline.syncOperations.addHandler(EchoHandler())
    }
}

/// B11: idle connections, each a channel with B4's echo handler, waiting for a read the client
/// never sends. RLIMIT_NOFILE is raised to its hard limit first. (B10, connection churn, is B4's
/// echo server as it is.)
func idleServer(loops: Int) throws -> [Measurement] {
    raiseDescriptorLimit()
    return try echoServer(loops: loops)
}

func httpHelloServer(loops: Int) throws -> [Measurement] {
    try serve(threads: loops) { channel in
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: true)
        try channel.pipeline.syncOperations.addHandler(HelloHandler(allocator: channel.allocator))
    }
}
