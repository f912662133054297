import Glibc

extension ChildProcess {
    /// Wraps the parent's pipe ends in streams on `loop` (its thread). Each descriptor is owned by
    /// its stream from then on; on failure every descriptor not yet owned is closed.
    /// - Throws: `UVError` from libuv (EMFILE, ENOMEM).
    /// Streams of a `.pty` child that are on the terminal get its rules (EIO is end of file,
    /// `writeEOF` sends the end-of-file character).
    func attachPipes(loop: EventLoop, stdin: Int32?, stdout: Int32?, stderr: Int32?, limit: Int,
                     onTerminal: (stdin: Bool, stdout: Bool, stderr: Bool) = (false, false, false)) throws {
        var owned = Pipes()
        do {
            if let stdin { owned.stdin = try StreamWriter(loop: loop, pipe: stdin, terminal: onTerminal.stdin) }
            if let stdout {
                owned.stdout = try StreamReader(loop: loop, pipe: stdout, limit: limit, terminal: onTerminal.stdout)
            }
            if let stderr {
                owned.stderr = try StreamReader(loop: loop, pipe: stderr, limit: limit, terminal: onTerminal.stderr)
            }
        } catch {
            if owned.stdin == nil, let stdin { System.closeDescriptor(stdin) }
            if owned.stdout == nil, let stdout { System.closeDescriptor(stdout) }
            if owned.stderr == nil, let stderr { System.closeDescriptor(stderr) }
            owned.stdin?.close()
            owned.stdout?.close()
            owned.stderr?.close()
            throw error
        }
        pipes.withLock { $0 = owned }
    }

    /// Closes the pipes (a spawn that failed after the child started).
    func closePipes() {
        let owned = pipes.withLock { pipes -> Pipes in
            defer { pipes = Pipes() }
            return pipes
        }
        owned.stdin?.close()
        owned.stdout?.close()
        owned.stderr?.close()
    }

    /// Writes `input` to a child's standard input, ends it (a pipe is closed, a terminal gets its
    /// end-of-file character) and closes the writer. A child that stopped reading, or left its
    /// terminal, is not an error (EPIPE, ECONNRESET, EIO: asyncio ignores them too).
    /// - Throws: the writer's other errors.
    static func feed(_ stdin: StreamWriter, _ input: [UInt8]) async throws {
        defer { stdin.close() }
        do {
            if !input.isEmpty {
                try stdin.write(input)
                try await stdin.drain()
            }
            try stdin.writeEOF()
        } catch let error as UVError where error == .EPIPE || error == .ECONNRESET || error == .EIO {
        }
    }

    /// Sends `input` to the child's stdin (then ends it: a pipe is closed, a `.pty` gets the
    /// terminal's end-of-file character), reads stdout and stderr to their ends,
    /// and waits for the exit (asyncio's `communicate`). Streams that are not pipes give `[]`.
    ///
    /// Reading and writing run concurrently, so megabytes in both directions never deadlock. A
    /// child that exits without reading its input is not an error (EPIPE and ECONNRESET while
    /// feeding stdin are ignored, as asyncio does).
    /// - Throws: `UVError` from reading; `CancellationError`.
    public func communicate(_ input: [UInt8]? = nil) async throws -> (stdout: [UInt8], stderr: [UInt8]) {
        let (stdin, stdout, stderr) = pipes.withLock { ($0.stdin, $0.stdout, $0.stderr) }
        async let output = stdout?.read() ?? []
        async let errors = stderr?.read() ?? []
        if let stdin { try await Self.feed(stdin, input ?? []) }
        let result = (stdout: try await output, stderr: try await errors)
        _ = try await wait()
        return result
    }
}
