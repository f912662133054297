import BenchSupport
import Dispatch
import Glibc
import NIOCore
import NIOPosix
import NIOSSL

/// Writes back every read, flushed once per read burst: bench-nio's B4 echo handler, here behind
/// `NIOSSLServerHandler`, so what it reads and writes is plaintext.
final class TLSEchoHandler: ChannelInboundHandler {
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

/// B12 and B12b: one event loop (`loops` of them), TLS 1.3 at least, the certificate and key
/// run.py made; serves on 127.0.0.1 (any port) until SIGTERM. swift-nio-ssl's defaults otherwise
/// (its cipher suites, BoringSSL's session tickets), as the other servers keep theirs.
func tlsEchoServer(loops: Int) throws -> [Measurement] {
    let files = try TLSFiles.fromEnvironment()
    let chain = try NIOSSLCertificate.fromPEMFile(files.certificateChain)
    let key = try NIOSSLPrivateKey(file: files.privateKey, format: .pem)
    var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                                 privateKey: .privateKey(key))
    configuration.minimumTLSVersion = .tlsv13
    let context = try NIOSSLContext(configuration: configuration)

    let group = MultiThreadedEventLoopGroup(numberOfThreads: loops)
    let channel = try ServerBootstrap(group: group)
        .serverChannelOption(ChannelOptions.backlog, value: 511)
        .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
        .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                try channel.pipeline.syncOperations.addHandler(TLSEchoHandler())
            }
        }
        .bind(host: "127.0.0.1", port: 0)
        .wait()
    announceListening(port: channel.localAddress?.port ?? 0)

    signal(SIGTERM, SIG_IGN)
    let done = DispatchSemaphore(value: 0)
    let source = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
    source.setEventHandler { done.signal() }
    source.resume()
    done.wait()
    source.cancel()

    try? channel.close().wait()
    try? group.syncShutdownGracefully()
    return []
}
