import CUVLoopOS
import Glibc

/// Starts child processes with glibc's `posix_spawn`.
///
/// `posix_spawn` clones with CLONE_VM | CLONE_VFORK, so its cost does not grow with the parent's
/// memory: measured here, 0.52 ms per spawn-and-reap of /bin/true at any size, where `uv_spawn`
/// (fork) took 0.66 ms with a small parent and 34 ms with 1 GiB touched (ARCHITECTURE fact 5).
/// Exec failures (ENOENT, EACCES, a missing directory) come back synchronously, and glibc reaps
/// the failed child itself: nothing is left behind.
enum PosixSpawn {
    /// Starts the child `plan` describes and returns its pid.
    ///
    /// The child gets default signal dispositions (SIGPIPE, ignored by this process, included) and
    /// an empty signal mask (a full one with `blockAllSignals`).
    /// - Throws: `UVError` from posix_spawn (ENOENT, EACCES, ENOTDIR, E2BIG, EAGAIN, ENOMEM...).
    static func spawn(_ plan: SpawnPlan) throws(UVError) -> pid_t {
        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        try addFileActions(plan, to: &fileActions)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        if plan.blockAllSignals {
            posix_spawnattr_setsigmask(&attributes, &allSignals)
        } else {
            posix_spawnattr_setsigmask(&attributes, &noSignals)
        }
        var flags = Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK)
        if plan.newSession { flags |= cos_spawn_setsid }
        if let group = plan.processGroup {
            flags |= cos_spawn_setpgroup
            posix_spawnattr_setpgroup(&attributes, group)
        }
        posix_spawnattr_setflags(&attributes, flags)

        let argv = CStringArray(plan.arguments)
        defer { argv.free() }
        let envp = plan.environment.map(CStringArray.init)
        defer { envp?.free() }

        var pid: pid_t = 0
        let rc = posix_spawn(&pid, plan.executable, &fileActions, &attributes, argv.pointer,
                             envp?.pointer ?? System.environmentPointer)
        if rc != 0 { throw UVError(errno: rc, operation: "posix_spawn(\(plan.executable))") }
        return pid
    }

    /// The plan's working directory and stdio as file actions, applied in order in the child.
    private static func addFileActions(_ plan: SpawnPlan,
                                       to actions: inout posix_spawn_file_actions_t) throws(UVError) {
        func check(_ rc: Int32, _ what: String) throws(UVError) {
            if rc != 0 { throw UVError(errno: rc, operation: "posix_spawn_file_actions_\(what)") }
        }
        if let directory = plan.workingDirectory {
            try check(posix_spawn_file_actions_addchdir_np(&actions, directory), "addchdir_np")
        }
        var openedTerminal: Int32?
        for (target, stdio) in plan.stdio.enumerated() {
            let target = Int32(target)
            switch stdio {
            case .terminal:
                // Opened once, without O_NOCTTY: POSIX_SPAWN_SETSID ran first (glibc sets the
                // session before the file actions), so the session leader acquires it.
                guard let path = plan.terminal else { throw UVError(errno: EINVAL, operation: "posix_spawn: no terminal") }
                if let first = openedTerminal {
                    try check(posix_spawn_file_actions_adddup2(&actions, first, target), "adddup2")
                } else {
                    try check(posix_spawn_file_actions_addopen(&actions, target, path, O_RDWR, 0), "addopen")
                    openedTerminal = target
                }
            case .inherit:
                break
            case .descriptor(let source):
                try check(posix_spawn_file_actions_adddup2(&actions, source, target), "adddup2")
            case .null:
                try check(posix_spawn_file_actions_addopen(&actions, target, "/dev/null",
                                                           target == 0 ? O_RDONLY : O_WRONLY, 0), "addopen")
            case .sameAsStdout:
                // Descriptor 1 is already what the plan made it: actions run in order.
                try check(posix_spawn_file_actions_adddup2(&actions, 1, target), "adddup2")
            }
        }
        // dup2 onto itself clears FD_CLOEXEC in the child (glibc): passed whatever its flag.
        for fd in plan.passedDescriptors where fd > 2 {
            try check(posix_spawn_file_actions_adddup2(&actions, fd, fd), "adddup2")
        }
        if plan.closeOtherDescriptors {
            try addCloseOthers(keeping: plan.passedDescriptors.filter { $0 > 2 }, to: &actions)
        }
    }

    /// Closes, in the child, every descriptor above 2 but `kept` (sorted): the top range with
    /// one `closefrom` (glibc's close_range: no per-descriptor cost), the gaps below the highest
    /// kept one descriptor by descriptor, only those open now. Runs after the stdio actions, so
    /// the pipe ends already copied to 0...2 go too.
    private static func addCloseOthers(keeping kept: [Int32], to actions: inout posix_spawn_file_actions_t) throws(UVError) {
        let top = (kept.last ?? 2) + 1
        let open = kept.isEmpty ? [] : System.openDescriptors()
        let keptSet = Set(kept)
        for fd in open where fd > 2 && fd < top && !keptSet.contains(fd) {
            let rc = posix_spawn_file_actions_addclose(&actions, fd)
            if rc != 0 { throw UVError(errno: rc, operation: "posix_spawn_file_actions_addclose") }
        }
        let rc = cos_spawn_add_closefrom(&actions, top)
        if rc == ENOSYS {
            // glibc before 2.34: each descriptor open now, one by one.
            for fd in System.openDescriptors() where fd >= top {
                let rc = posix_spawn_file_actions_addclose(&actions, fd)
                if rc != 0 { throw UVError(errno: rc, operation: "posix_spawn_file_actions_addclose") }
            }
        } else if rc != 0 {
            throw UVError(errno: rc, operation: "posix_spawn_file_actions_addclosefrom_np")
        }
    }
}
