import CUVLoopOS
import Glibc

/// The child-subreaper flag and this process's children, for `becomeChildSubreaper()`.
extension System {
    /// Sets or clears PR_SET_CHILD_SUBREAPER.
    /// - Throws: `UVError` from prctl (EINVAL before Linux 3.4).
    static func setChildSubreaper(_ on: Bool) throws(UVError) {
        let rc = cos_set_child_subreaper(on ? 1 : 0)
        if rc < 0 { throw UVError(code: rc, operation: "prctl(PR_SET_CHILD_SUBREAPER)") }
    }

    /// Whether this process is a child subreaper.
    static var isChildSubreaper: Bool { cos_is_child_subreaper() == 1 }

    /// Every child of this process, running or a zombie, from each thread's
    /// `/proc/self/task/TID/children` (a child belongs to the thread that started it; an
    /// adopted orphan to the thread the kernel chose). Empty where the files are missing.
    static func childProcesses() -> [pid_t] {
        guard let tasks = opendir("/proc/self/task") else { return [] }
        defer { closedir(tasks) }
        var children: [pid_t] = []
        while let entry = readdir(tasks) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let tid = Int32(name) else { continue }
            let fd = open("/proc/self/task/\(tid)/children", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { closeDescriptor(fd) }
            var text: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count <= 0 { break }
                text += buffer[..<count]
            }
            children += text.split(separator: UInt8(ascii: " ")).compactMap { pid_t(String(decoding: $0, as: UTF8.self)) }
        }
        return children
    }
}
