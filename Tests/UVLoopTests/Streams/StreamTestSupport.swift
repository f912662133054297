import Foundation
import Testing
@testable import UVLoop

/// Runs `body` as a task on a fresh loop, then closes the loop.
@discardableResult
func onFreshLoop<T: Sendable>(_ body: @escaping @Sendable (EventLoop) async throws -> T) throws -> T {
    let loop = try EventLoop()
    defer { try? loop.close() }
    return try loop.runUntilComplete { try await body(loop) }
}

/// `count` bytes of a repeating, position-dependent pattern (so reordering or loss shows).
func patternBytes(_ count: Int, seed: UInt8 = 0) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ ($0 >> 8) &+ Int(seed)) }
}

/// A port on 127.0.0.1 that nothing listens on (bound then released: refused until reused).
func unusedPort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            _ = bind(fd, $0, length)
            _ = getsockname(fd, $0, &length)
        }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A fresh directory under /tmp for Unix sockets (short paths: sun_path holds 107 bytes).
func temporaryDirectory() -> String {
    var template = Array("/tmp/uvl-XXXXXX".utf8CString)
    return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
}

/// Matches a thrown `UVError` against any of `codes`.
func isUVError(_ error: any Error, _ codes: UVError...) -> Bool {
    guard let error = error as? UVError else { return false }
    return codes.contains(error)
}

/// Runs a program to completion off the loop thread; returns its exit status and standard output.
func runProgram(_ path: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// A pipe whose write end a plain thread feeds with `chunks` (each a separate write, a little
/// apart, so they arrive as separate reads), then closes; the read end is for a `StreamReader`.
struct FedPipe {
    let output: Int32
    let join: @Sendable () -> Void

    init(_ chunks: [[UInt8]]) {
        var fds: [Int32] = [0, 0]
        precondition(pipe(&fds) == 0)
        let input = fds[1]
        output = fds[0]
        join = startThread {
            for chunk in chunks {
                var offset = 0
                while offset < chunk.count {
                    let written = chunk.withUnsafeBytes { write(input, $0.baseAddress! + offset, chunk.count - offset) }
                    if written <= 0 { break }
                    offset += written
                }
                usleep(2_000)
            }
            close(input)
        }
    }

    init(_ text: String...) { self.init(text.map { Array($0.utf8) }) }
}
