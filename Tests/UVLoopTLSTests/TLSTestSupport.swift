import Foundation
import UVLoop

/// Certificates made at test time with the `openssl` command line, once per test process: a CA,
/// a server certificate it signs (localhost, 127.0.0.1, ::1), one for "other.test" (SNI), an
/// expired one, a client certificate, and a second CA nobody trusts.
struct TestCertificates: Sendable {
    let directory: String
    var caFile: String { directory + "/ca.pem" }
    var otherCAFile: String { directory + "/other-ca.pem" }
    var serverCert: String { directory + "/server.pem" }
    var serverKey: String { directory + "/server.key" }
    var otherCert: String { directory + "/other.pem" }
    var otherKey: String { directory + "/other.key" }
    var expiredCert: String { directory + "/expired.pem" }
    var clientCert: String { directory + "/client.pem" }
    var clientKey: String { directory + "/client.key" }
    var strangerCert: String { directory + "/stranger.pem" }
    var strangerKey: String { directory + "/stranger.key" }

    static let shared: TestCertificates = {
        let directory = NSTemporaryDirectory() + "uvloop-tls-\(getpid())"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let script = """
        set -e
        cd '\(directory)'
        key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
        key ca.key; key other-ca.key; key server.key; key other.key; key client.key; key stranger.key
        openssl req -x509 -key ca.key -out ca.pem -subj /CN=UVLoop-Test-CA -days 2
        openssl req -x509 -key other-ca.key -out other-ca.pem -subj /CN=Nobody-Trusts-Me -days 2
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\\n' > server.ext
        printf 'subjectAltName=DNS:other.test\\n' > other.ext
        printf 'extendedKeyUsage=clientAuth\\n' > client.ext
        sign() { openssl req -new -key "$1.key" -subj "/CN=$1" | openssl x509 -req -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days "$3" -extfile "$4" -out "$5" 2>/dev/null; }
        sign server ca 2 server.ext server.pem
        sign other ca 2 other.ext other.pem
        sign server ca -1 server.ext expired.pem
        sign client ca 2 client.ext client.pem
        sign stranger other-ca 2 server.ext stranger.pem
        openssl x509 -in other.pem -outform DER -out other.der
        openssl x509 -in server.pem -outform DER -out server.der
        openssl x509 -in client.pem -outform DER -out client.der
        """
        let (status, output) = runProgram("/bin/sh", ["-c", script])
        if status != 0 { fatalError("making the test certificates failed: \(output)") }
        return TestCertificates(directory: directory)
    }()

    func der(_ name: String) -> [UInt8] {
        [UInt8](FileManager.default.contents(atPath: "\(directory)/\(name).der") ?? Data())
    }
}

func runProgram(_ path: String, _ arguments: [String]) -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    do { try process.run() } catch { return (-1, "\(error)") }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Runs `body` on a new loop, on a thread of its own, then closes the loop: off the cooperative
/// pool (one thread per core, two here), which the tasks of the tests running beside need.
func onFreshLoop<T: Sendable>(_ body: @escaping @Sendable (EventLoop) async throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread {
            continuation.resume(with: Result {
                let loop = try EventLoop()
                defer { try? loop.close() }
                return try loop.runUntilComplete { try await body(loop) }
            })
        }
        thread.stackSize = 4 << 20
        thread.start()
    }
}

/// `count` bytes of a position-dependent pattern (so reordering or loss shows).
func patternBytes(_ count: Int, seed: UInt8 = 0) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ ($0 >> 8) &+ Int(seed)) }
}

/// A port on 127.0.0.1 that nothing listens on (bound then released).
func unusedPort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            _ = bind(fd, $0, length)
            _ = getsockname(fd, $0, &length)
        }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Connects (plain) until something listens on `port`, for peers started as processes.
func connectWhenListening(_ loop: EventLoop, port: Int, within seconds: Double = 10) async throws -> (StreamReader, StreamWriter) {
    let deadline = loop.time() + seconds
    while true {
        do {
            return try await loop.openConnection(host: "127.0.0.1", port: port)
        } catch let error as UVError where error == .ECONNREFUSED && loop.time() < deadline {
            try await loop.sleep(0.05)
        }
    }
}

extension String {
    var bytes: [UInt8] { Array(utf8) }
}

func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }
