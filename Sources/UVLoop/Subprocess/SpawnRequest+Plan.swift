import Glibc

/// The descriptors one spawn creates, and the `SpawnPlan` that wires them into the child: the
/// one place where `Stdio` becomes what the child's 0, 1 and 2 are.
struct SpawnSetup {
    var plan: SpawnPlan
    /// This process's copies of what the child gets (pipe ends, duplicates of low descriptors),
    /// closed once the child has started (or failed to).
    var childEnds: [Int32] = []
    /// The parent's ends of `.pipe`s: it writes to stdin, reads stdout and stderr.
    var stdinWriter: Int32?
    var stdoutReader: Int32?
    var stderrReader: Int32?
    /// The pseudo-terminal's master, for `.pty` (the parent's ends above are copies of it); kept
    /// by the `ChildProcess` for `setTerminalSize`.
    var terminal: Int32?
    /// Whether a reader of the terminal's output exists already (stdout's, when both are on it).
    private var readsTerminal = false

    /// Resolves the program and creates the pipes and descriptors `request` asks for.
    /// - Throws: `UVError` (ENOENT/EACCES for the program, EMFILE); everything created so far is
    ///   closed first.
    init(_ request: SpawnRequest) throws {
        plan = SpawnPlan(executable: try request.resolvedPath(), arguments: request.arguments,
                         environment: request.environment, workingDirectory: request.workingDirectory)
        plan.newSession = request.options.startNewSession
        plan.processGroup = request.options.processGroup
        plan.passedDescriptors = request.options.passFDs
        plan.closeOtherDescriptors = request.options.closeFDs
        do {
            if request.usesTerminal {
                let pty = try System.openPseudoTerminal()
                terminal = pty.master
                // Held until the child has started: the terminal's slave side stays open meanwhile.
                childEnds.append(pty.slave)
                plan.terminal = pty.path
                plan.newSession = true
                try System.setWindowSize(pty.master, rows: 24, columns: 80)
            }
            plan.stdin = try wire(request.stdin, target: 0)
            plan.stdout = try wire(request.stdout, target: 1)
            plan.stderr = try wire(request.stderr, target: 2)
        } catch {
            closeAll()
            throw error
        }
    }

    private mutating func wire(_ stdio: Stdio, target: Int32) throws -> ChildStdio {
        switch stdio {
        case .inherit:
            return .inherit
        case .devNull:
            return .null
        case .stdout:
            return .sameAsStdout
        case .fileDescriptor(let fd):
            guard fd < 3 && fd != target else { return .descriptor(fd) }
            // A source among 0...2 may be replaced in the child before it is used: pass a copy.
            let copy = try System.duplicateAboveStandardDescriptors(fd)
            childEnds.append(copy)
            return .descriptor(copy)
        case .pty:
            guard let master = terminal else { return .terminal }
            // Each parent end is its own copy of the master (one libuv handle per descriptor);
            // the terminal has one output, read by stdout's reader when stdout is on it.
            switch target {
            case 0:
                stdinWriter = try System.duplicateAboveStandardDescriptors(master)
            default:
                guard !readsTerminal else { break }
                readsTerminal = true
                let reader = try System.duplicateAboveStandardDescriptors(master)
                if target == 1 { stdoutReader = reader } else { stderrReader = reader }
            }
            return .terminal
        case .pipe:
            // The parent's end is non-blocking (the loop reads and writes it); the child's is not.
            let pipe = try System.makePipe(nonBlockingRead: target != 0, nonBlockingWrite: target == 0)
            let (childEnd, parentEnd) = target == 0 ? (pipe.read, pipe.write) : (pipe.write, pipe.read)
            switch target {
            case 0: stdinWriter = parentEnd
            case 1: stdoutReader = parentEnd
            default: stderrReader = parentEnd
            }
            let movedChildEnd = try System.moveAboveStandardDescriptors(childEnd)
            childEnds.append(movedChildEnd)
            return .descriptor(movedChildEnd)
        }
    }

    func closeChildEnds() {
        childEnds.forEach(System.closeDescriptor)
    }

    func closeAll() {
        closeChildEnds()
        [stdinWriter, stdoutReader, stderrReader, terminal].compactMap { $0 }.forEach(System.closeDescriptor)
    }
}
