import CLibUV
import Glibc

/// `uv_process_t`: a child started with `uv_spawn` whose exit libuv reports (and reaps) itself,
/// with its O(n)-per-SIGCHLD `waitpid` over the loop's children (ARCHITECTURE fact 2).
final class UVProcess: UVHandle {
    /// Called once with the return code (minus the signal number when killed).
    var exitCallback: (Int32) -> Void
    private(set) var pid: pid_t = 0
    private(set) var hasExited = false

    /// Spawns `path` on `loop`. The stdio actions are the same as `Spawner`'s.
    /// - Throws: `UVError` from `uv_spawn` (ENOENT, EACCES, ...); nothing is left on the loop.
    init(loop: UVRunLoop, path: String, arguments: [String], environment: [String]?, workingDirectory: String?,
         actions: [Spawner.FileAction], _ exitCallback: @escaping (Int32) -> Void) throws(UVError) {
        self.exitCallback = exitCallback
        // libuv learns of the exit through its own SIGCHLD handle on this loop: make sure the
        // signal can reach this thread (see UVSignal.start).
        UVSignal.unblockOnThisThread(SIGCHLD)
        // Descriptors 0...2 for the child, as uv_stdio_container_t; /dev/null opened here.
        var containers = (0..<3).map { fd in
            var container = uv_stdio_container_t()
            container.flags = UV_INHERIT_FD
            container.data.fd = Int32(fd)
            return container
        }
        var opened: [Int32] = []
        defer { opened.forEach { _ = Glibc.close($0) } }
        for action in actions {
            switch action {
            case .duplicate(let source, let target):
                containers[Int(target)].data.fd = source == 1 && target == 2 ? containers[1].data.fd : source
            case .open(let path, let flags, let target):
                let fd = open(path, flags | O_CLOEXEC)
                if fd < 0 { throw UVError(code: -errno, operation: "open(\(path))") }
                opened.append(fd)
                containers[Int(target)].data.fd = fd
            }
        }
        let argv = CStringArray(arguments)
        defer { argv.free() }
        let envp = environment.map(CStringArray.init)
        defer { envp?.free() }
        var spawnedPid: pid_t = 0
        try super.init(type: UV_PROCESS, operation: "uv_spawn(\(path))", initializedOnFailure: true) { raw in
            path.withCString { file in
                (workingDirectory ?? "").withCString { cwd in
                    containers.withUnsafeMutableBufferPointer { stdio in
                        var options = uv_process_options_t()
                        options.file = file
                        options.args = argv.pointer
                        options.env = envp?.pointer
                        options.cwd = workingDirectory == nil ? nil : cwd
                        options.stdio_count = 3
                        options.stdio = stdio.baseAddress
                        options.exit_cb = { handle, status, signal in
                            guard let process = uvWrapper(handle, as: UVProcess.self) else { return }
                            process.hasExited = true
                            process.exitCallback(signal != 0 ? -signal : Int32(truncatingIfNeeded: status))
                        }
                        let process = raw.assumingMemoryBound(to: uv_process_t.self)
                        let rc = uv_spawn(loop.pointer, process, &options)
                        if rc == 0 { spawnedPid = uv_process_get_pid(process) }
                        return rc
                    }
                }
            }
        }
        pid = spawnedPid
    }

    override func didClose() { exitCallback = { _ in } }
}
