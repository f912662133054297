import CLibUV
import Glibc

/// `uv_process_t`: a child started with `uv_spawn` whose exit libuv reports (and reaps) itself,
/// with its O(n)-per-SIGCHLD `waitpid` over the loop's children (ARCHITECTURE fact 2).
final class UVProcess: UVHandle {
    /// Called once with how the child ended.
    var exitCallback: (Termination) -> Void
    private(set) var pid: pid_t = 0
    private(set) var hasExited = false

    /// Spawns the child `plan` describes on `loop`.
    ///
    /// libuv forks and has no call to join a process group or close inherited descriptors:
    /// a new session is its `UV_PROCESS_DETACHED`; passed descriptors are extra stdio entries
    /// inherited under their own numbers; closing the others is done by marking every
    /// inheritable one close-on-exec for the duration of the fork, then unmarking it.
    /// - Throws: `UVError.ENOTSUP` for a process group or a pseudo-terminal; `UVError` from `uv_spawn` (ENOENT, EACCES,
    ///   ...) or from opening /dev/null; nothing is left on the loop.
    init(loop: UVRunLoop, plan: SpawnPlan, _ exitCallback: @escaping (Termination) -> Void) throws(UVError) {
        if plan.processGroup != nil {
            throw UVError(errno: ENOTSUP, operation: "uv_spawn: libuv cannot set a process group (use startNewSession, or a watcher that spawns with posix_spawn)")
        }
        if plan.terminal != nil {
            throw UVError(errno: ENOTSUP, operation: "uv_spawn: libuv cannot give the child a controlling terminal (Stdio.pty needs a watcher that spawns with posix_spawn)")
        }
        self.exitCallback = exitCallback
        // libuv learns of the exit through its own SIGCHLD handle on this loop, which uv_spawn
        // starts without touching the signal mask: make sure the signal can reach this thread.
        System.unblockOnThisThread(SIGCHLD)
        var opened: [Int32] = []
        defer { opened.forEach(System.closeDescriptor) }
        var containers: [uv_stdio_container_t] = []
        for (target, stdio) in plan.stdio.enumerated() {
            var container = uv_stdio_container_t()
            container.flags = UV_INHERIT_FD
            switch stdio {
            case .inherit:
                container.data.fd = Int32(target)
            case .descriptor(let fd):
                container.data.fd = fd
            case .null:
                // uv_spawn has no "/dev/null" container: open it here; the child gets a copy.
                let fd = open("/dev/null", (target == 0 ? O_RDONLY : O_WRONLY) | O_CLOEXEC)
                if fd < 0 { throw UVError.lastError("open(/dev/null)") }
                opened.append(fd)
                container.data.fd = fd
            case .sameAsStdout:
                container.data.fd = containers[1].data.fd
            case .terminal:
                throw UVError(errno: ENOTSUP, operation: "uv_spawn: no terminal")   // refused above
            }
            containers.append(container)
        }
        // Passed descriptors: stdio entries at their own numbers; the numbers between are ignored.
        if let highest = plan.passedDescriptors.last, highest > 2 {
            let passed = Set(plan.passedDescriptors)
            for fd in 3...highest {
                var container = uv_stdio_container_t()
                if passed.contains(fd) {
                    container.flags = UV_INHERIT_FD
                    container.data.fd = fd
                } else {
                    container.flags = UV_IGNORE
                }
                containers.append(container)
            }
        }
        // Closing the others: what would be inherited is close-on-exec while libuv forks.
        var marked: [Int32] = []
        if plan.closeOtherDescriptors {
            let passed = Set(plan.passedDescriptors)
            for fd in System.openDescriptors() where fd > 2 && !passed.contains(fd) && !System.isCloseOnExec(fd) {
                System.setCloseOnExec(fd, true)
                marked.append(fd)
            }
        }
        defer { for fd in marked { System.setCloseOnExec(fd, false) } }
        let argv = CStringArray(plan.arguments)
        defer { argv.free() }
        let envp = plan.environment.map(CStringArray.init)
        defer { envp?.free() }
        var spawnedPid: pid_t = 0
        try super.init(type: UV_PROCESS, operation: "uv_spawn(\(plan.executable))", initializedOnFailure: true) { raw in
            plan.executable.withCString { file in
                (plan.workingDirectory ?? "").withCString { cwd in
                    containers.withUnsafeMutableBufferPointer { stdio in
                        var options = uv_process_options_t()
                        options.file = file
                        options.args = argv.pointer
                        options.env = envp?.pointer
                        options.cwd = plan.workingDirectory == nil ? nil : cwd
                        options.stdio_count = Int32(stdio.count)
                        options.stdio = stdio.baseAddress
                        if plan.newSession { options.flags |= UInt32(UV_PROCESS_DETACHED.rawValue) }
                        options.exit_cb = { handle, status, signal in
                            guard let process = uvWrapper(handle, as: UVProcess.self) else { return }
                            process.hasExited = true
                            process.exitCallback(Termination(exitStatus: status, signal: signal))
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
