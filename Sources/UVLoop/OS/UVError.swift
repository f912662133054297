import Glibc

/// An error reported by libuv or by a system call made on libuv's behalf.
///
/// `code` is libuv's negative error code (`UV_ENOENT`, ...); `name` is libuv's name for it
/// (`"ENOENT"`). Two errors are equal when their codes are equal, whatever the operation, so
/// callers can match them against the static members:
///
/// ```swift
/// do { _ = try await createSubprocessExec("/no/such/program") }
/// catch let error as UVError where error == .ENOENT { ... }
/// ```
///
/// The value lives in the OS layer, which reports system calls with it (on Unix a libuv code is
/// minus the errno value); its names, messages and the named codes come from libuv
/// (`UVError+Names.swift` in the libuv layer).
public struct UVError: Error, Hashable, Sendable {
    /// libuv's (negative) error code.
    public let code: Int32
    /// The operation that failed, such as `"uv_spawn"` or `"uv_tcp_bind"`.
    public let operation: String

    /// Creates an error from libuv's negative code (a positive errno value is negated).
    public init(code: Int32, operation: String = "") {
        self.code = code > 0 ? -code : code
        self.operation = operation
    }

    /// An error for the errno value `number` (positive, as in `errno`) of a failed system call.
    init(errno number: Int32, operation: String) {
        self.init(code: -number, operation: operation)
    }

    /// An error for the calling thread's current `errno`.
    static func lastError(_ operation: String) -> UVError {
        UVError(errno: errno, operation: operation)
    }

    /// Equal when the codes are equal, whatever the operations.
    public static func == (lhs: UVError, rhs: UVError) -> Bool { lhs.code == rhs.code }
    /// Hashes the code only, as `==` compares it only.
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }

    /// Pattern match: `case UVError.ENOENT:` in a `catch` or `switch`.
    public static func ~= (pattern: UVError, value: any Error) -> Bool {
        (value as? UVError)?.code == pattern.code
    }

    /// Returns `result` when it is not negative, else throws it as a `UVError` naming `operation`.
    @inline(__always) @discardableResult
    static func check(_ result: Int32, _ operation: @autoclosure () -> String) throws(UVError) -> Int32 {
        if result < 0 { throw UVError(code: result, operation: operation()) }
        return result
    }
}
