import Glibc

extension ChildProcess {
    /// Wraps the parent's pipe ends in streams on `loop`. Loop thread.
    func attachPipes(loop: EventLoop, stdin: Int32?, stdout: Int32?, stderr: Int32?) throws {
        // Streams land with the servers issue; until then the parent's ends are closed here.
        [stdin, stdout, stderr].compactMap { $0 }.forEach(System.closeDescriptor)
    }

    /// Closes the pipes (a failed spawn).
    func closePipes() {}
}
