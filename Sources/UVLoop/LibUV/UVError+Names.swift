import CLibUV
import Glibc

/// libuv's names and messages for `UVError`, and the codes callers match against.
extension UVError: CustomStringConvertible {
    /// libuv's name for the code, such as `"ENOENT"`.
    public var name: String {
        let libuvName = withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buffer in
            String(cString: uv_err_name_r(code, buffer.baseAddress!, 64))
        }
        // Errno values outside libuv's table (ECHILD, ENOEXEC...): glibc knows their names.
        if libuvName.hasPrefix("Unknown"), code < 0, let glibcName = strerrorname_np(-code) {
            return String(cString: glibcName)
        }
        return libuvName
    }

    /// libuv's message for the code, such as `"no such file or directory"`.
    public var message: String {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 128) { buffer in
            String(cString: uv_strerror_r(code, buffer.baseAddress!, 128))
        }
    }

    /// `"operation: NAME (message)"`.
    public var description: String {
        operation.isEmpty ? "\(name): \(message)" : "\(operation): \(name) (\(message))"
    }

    /// Argument list too long.
    public static let E2BIG = UVError(code: UV_E2BIG.rawValue)
    /// Permission denied (a program that is not executable, for one).
    public static let EACCES = UVError(code: UV_EACCES.rawValue)
    /// Address already in use.
    public static let EADDRINUSE = UVError(code: UV_EADDRINUSE.rawValue)
    /// Address not available.
    public static let EADDRNOTAVAIL = UVError(code: UV_EADDRNOTAVAIL.rawValue)
    /// Address family not supported (a socket of another family than IPv4, IPv6 or Unix).
    public static let EAFNOSUPPORT = UVError(code: UV_EAFNOSUPPORT.rawValue)
    /// Resource temporarily unavailable (out of processes or threads, for one).
    public static let EAGAIN = UVError(code: UV_EAGAIN.rawValue)
    /// Unknown host or service name.
    public static let EAI_NONAME = UVError(code: UV_EAI_NONAME.rawValue)
    /// Bad file descriptor (not open).
    public static let EBADF = UVError(code: UV_EBADF.rawValue)
    /// Resource busy.
    public static let EBUSY = UVError(code: UV_EBUSY.rawValue)
    /// Operation canceled.
    public static let ECANCELED = UVError(code: UV_ECANCELED.rawValue)
    /// No child process (its status was taken by another reaper).
    public static let ECHILD = UVError(code: -Glibc.ECHILD)
    /// Connection refused.
    public static let ECONNREFUSED = UVError(code: UV_ECONNREFUSED.rawValue)
    /// Connection reset by peer.
    public static let ECONNRESET = UVError(code: UV_ECONNRESET.rawValue)
    /// Already exists.
    public static let EEXIST = UVError(code: UV_EEXIST.rawValue)
    /// Input/output error (a pseudo-terminal's master once nothing has the terminal open).
    public static let EIO = UVError(code: UV_EIO.rawValue)
    /// Invalid argument.
    public static let EINVAL = UVError(code: UV_EINVAL.rawValue)
    /// Too many open files (the descriptor limit).
    public static let EMFILE = UVError(code: UV_EMFILE.rawValue)
    /// Name too long (a Unix socket path beyond `sun_path`).
    public static let ENAMETOOLONG = UVError(code: UV_ENAMETOOLONG.rawValue)
    /// No such file or directory.
    public static let ENOENT = UVError(code: UV_ENOENT.rawValue)
    /// Function not implemented (pidfd_open on an old kernel).
    public static let ENOSYS = UVError(code: UV_ENOSYS.rawValue)
    /// Socket is not connected.
    public static let ENOTCONN = UVError(code: UV_ENOTCONN.rawValue)
    /// Not a terminal (`setTerminalSize` on a child without a pseudo-terminal).
    public static let ENOTTY = UVError(code: UV_ENOTTY.rawValue)
    /// Socket operation on non-socket (`startServer(socket:)` given a pipe, say).
    public static let ENOTSOCK = UVError(code: UV_ENOTSOCK.rawValue)
    /// Operation not supported.
    public static let ENOTSUP = UVError(code: UV_ENOTSUP.rawValue)
    /// End of file.
    public static let EOF = UVError(code: UV_EOF.rawValue)
    /// Operation not permitted.
    public static let EPERM = UVError(code: UV_EPERM.rawValue)
    /// Broken pipe.
    public static let EPIPE = UVError(code: UV_EPIPE.rawValue)
    /// No such process (or: already reaped, never signalled).
    public static let ESRCH = UVError(code: UV_ESRCH.rawValue)
    /// Connection timed out.
    public static let ETIMEDOUT = UVError(code: UV_ETIMEDOUT.rawValue)
}
