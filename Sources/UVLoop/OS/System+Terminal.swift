import CUVLoopOS
import Glibc

/// Pseudo-terminals, for `Stdio.pty`.
extension System {
    /// A new pseudo-terminal: its master (non-blocking) and its slave, both close-on-exec, and
    /// the slave's path (the child opens that path again, so the terminal becomes its controlling
    /// one). Neither becomes this process's controlling terminal.
    /// - Throws: `UVError` (EMFILE, ENOSPC when the system's pty limit is reached).
    static func openPseudoTerminal() throws(UVError) -> (master: Int32, slave: Int32, path: String) {
        var master: Int32 = -1
        var slave: Int32 = -1
        var path = [CChar](repeating: 0, count: 64)
        let rc = cos_open_pty(&master, &slave, &path, path.count)
        if rc < 0 { throw UVError(code: rc, operation: "open pseudo-terminal") }
        return (master, slave, String(decoding: path.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }

    /// Sets the size of the terminal `fd` refers to (TIOCSWINSZ).
    /// - Throws: `UVError.ENOTTY` when `fd` is not a terminal; `UVError.EBADF`.
    static func setWindowSize(_ fd: Int32, rows: UInt16, columns: UInt16) throws(UVError) {
        let rc = cos_set_window_size(fd, rows, columns)
        if rc < 0 { throw UVError(code: rc, operation: "ioctl(TIOCSWINSZ)") }
    }

    /// The end-of-file character of the terminal `fd` refers to (normally ^D); nil when `fd` is
    /// not a terminal or the character is disabled.
    static func terminalEOFCharacter(_ fd: Int32) -> UInt8? {
        let value = cos_terminal_eof_char(fd)
        return value > 0 ? UInt8(value) : nil
    }
}
