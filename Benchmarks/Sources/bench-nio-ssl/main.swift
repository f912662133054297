// The NIO-SSL participant: `bench-nio-ssl B12|B12b LOOPS`, a TLS echo server on SwiftNIO and
// swift-nio-ssl (BoringSSL), measured by run.py's c/tls_client.c. A target of its own, so that
// bench-nio does not build BoringSSL.
import BenchSupport

runParticipant(
    impl: "NIO-SSL",
    benchmarks: [
        "B12": tlsEchoServer,
        "B12b": tlsEchoServer,  // the same server; the client makes a new connection per handshake
    ]
)
