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
        [stdinWriter, stdoutReader, stderrReader].compactMap { $0 }.forEach(System.closeDescriptor)
    }
}
