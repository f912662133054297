import Foundation
import Testing
@testable import UVLoop

/// `Stdio.pty` with real programs: the terminal is the child's controlling one, its size can be
/// set, input is typed into it, and the master's EIO at the end reads as end of file with the exit
/// status kept. The descriptor accounting of the same path under every watcher is in the
/// conformance helper (a process of its own).
extension ProcessWide {
@Suite("Subprocess: pseudo-terminals")
struct PTYTests {
    /// Everything `reader` yields until end of file, as lines ("\r\n" from the terminal stripped).
    func allLines(_ reader: StreamReader) async throws -> [String] {
        var lines: [String] = []
        for try await line in reader.lines { lines.append(line) }
        return lines
    }

    static let probe = """
        import os, sys
        print("tty", os.isatty(0), os.isatty(1), os.isatty(2))
        print("leader", os.getsid(0) == os.getpid(), os.getpgrp() == os.getpid())
        print("foreground", os.tcgetpgrp(0) == os.getpgrp())
        fd = os.open("/dev/tty", os.O_WRONLY)
        os.write(fd, b"via /dev/tty\\n")
        print("same", os.ttyname(0) == os.ttyname(1) == os.ttyname(2))
        sys.stderr.write("on stderr\\n")
        sys.exit(7)
        """

    @Test(.timeLimit(.minutes(1))) func theTerminalIsTheChildsControllingTerminal() throws {
        let (lines, code, termination, leads, stderrIsNil) = try onPolicyLoop { () async throws -> ([String], Int32, Termination?, Bool, Bool) in
            let child = try await createSubprocessExec("python3", ["-c", Self.probe], stdin: .pty, stdout: .pty, stderr: .pty)
            let lines = try await allLines(child.stdout!)
            let code = try await child.wait()
            child.stdin!.close()
            return (lines, code, child.termination, child.leadsProcessGroup, child.stderr == nil)
        }
        #expect(lines == ["tty True True True", "leader True True", "foreground True", "via /dev/tty", "same True", "on stderr"])
        #expect(code == 7 && termination == .exited(7))
        #expect(leads && stderrIsNil)
    }

    @Test(.timeLimit(.minutes(1))) func theSizeStartsAt24By80AndSetTerminalSizeSendsSIGWINCH() throws {
        let script = """
            import os, signal, sys
            def show(*_):
                print("size", *os.get_terminal_size(1)[::-1], flush=True)
                if _: sys.exit(0)
            signal.signal(signal.SIGWINCH, show)
            show()
            print("ready", flush=True)
            signal.pause()
            """
        let lines = try onPolicyLoop { () async throws -> [String] in
            let child = try await createSubprocessExec("python3", ["-c", script], stdout: .pty)
            var lines: [String] = []
            var iterator = child.stdout!.lines.makeAsyncIterator()
            while let line = try await iterator.next() {
                lines.append(line)
                if line == "ready" { try child.setTerminalSize(rows: 50, columns: 132) }
            }
            #expect(try await child.wait() == 0)
            return lines
        }
        #expect(lines == ["size 24 80", "ready", "size 50 132"])
    }

    @Test(.timeLimit(.minutes(1))) func typedInputReachesTheChildAndWriteEOFEndsIt() throws {
        let (whole, partial, viaCommunicate) = try onPolicyLoop { () async throws -> ([String], [String], String) in
            // A whole line, then ^D: the terminal echoes the line, cat prints it, cat sees EOF.
            let cat = try await createSubprocessExec("cat", stdin: .pty, stdout: .pty)
            try cat.stdin!.write("hello\n")
            try cat.stdin!.writeEOF()
            let whole = try await allLines(cat.stdout!)
            #expect(try await cat.wait() == 0)
            // A partial line needs ^D twice (the first only ends the line).
            let partialCat = try await createSubprocessExec("cat", stdin: .pty, stdout: .pty)
            try partialCat.stdin!.write("abc")
            try partialCat.stdin!.writeEOF()
            let partial = try await allLines(partialCat.stdout!)
            #expect(try await partialCat.wait() == 0)
            // communicate() ends a terminal's input the same way.
            let wc = try await createSubprocessShell("wc -l", stdin: .pty, stdout: .pty)
            let (output, _) = try await wc.communicate(Array("one\ntwo\nthree\n".utf8))
            return (whole, partial, String(decoding: output, as: UTF8.self))
        }
        #expect(whole == ["hello", "hello"])
        #expect(partial == ["abcabc"])
        #expect(viaCommunicate == "one\r\ntwo\r\nthree\r\n3\r\n")
    }

    @Test(.timeLimit(.minutes(1))) func theEndOfALargeOutputIsNotLostAndTheStatusIsKept() throws {
        // 400 KB through the terminal (far more than its buffer), then an exit with 3: every
        // byte arrives, EIO ends the stream as end of file, the status is the child's.
        let (output, code) = try onPolicyLoop { () async throws -> ([UInt8], Int32) in
            let child = try await createSubprocessExec(
                "python3", ["-c", "import sys,os; os.write(1, b'x' * 399999 + b'!'); sys.exit(3)"], stdout: .pty)
            let output = try await child.stdout!.read()
            return (output, try await child.wait())
        }
        #expect(output.count == 400_000 && output.last == UInt8(ascii: "!"))
        #expect(code == 3)
    }

    @Test(.timeLimit(.minutes(1))) func onlyStderrOnTheTerminalAndStdoutOnAPipe() throws {
        let (out, err) = try onPolicyLoop { () async throws -> (String, String) in
            let child = try await createSubprocessShell("test -t 2 && echo stderr-is-tty; test -t 1 || echo out; echo err >&2",
                                                        stdout: .pipe, stderr: .pty)
            let (out, err) = try await child.communicate()
            return (String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self))
        }
        #expect(out == "stderr-is-tty\nout\n")
        #expect(err == "err\r\n")
    }

    @Test(.timeLimit(.minutes(1))) func terminateReachesTheTerminalsWholeSession() throws {
        let (code, grandchildGone) = try onPolicyLoop { () async throws -> (Int32, Bool) in
            let child = try await createSubprocessShell("trap '' TERM; sleep 30 & echo $!; wait", stdout: .pty)
            var lines = child.stdout!.lines.makeAsyncIterator()
            let line = try await lines.next() ?? ""
            let grandchild = pid_t(line) ?? 0
            let code = try await child.terminate(gracePeriod: 0.1)
            _ = try await child.stdout!.read()
            return (code, processHasEnded(grandchild))
        }
        #expect(code == -SIGKILL)
        #expect(grandchildGone)
    }

    // MARK: Bad input

    @Test(.timeLimit(.minutes(1))) func setTerminalSizeOnAPipeChildIsENOTTYAndBadSizesAreRefused() throws {
        try onPolicyLoop { () async throws in
            let piped = try await createSubprocessExec("cat", stdin: .pipe, stdout: .pipe)
            #expect(throws: UVError.ENOTTY) { try piped.setTerminalSize(rows: 24, columns: 80) }
            let _ = try await piped.communicate()
            let pty = try await createSubprocessExec("cat", stdin: .pty, stdout: .pty)
            #expect(throws: EventLoopError.invalidArgument) { try pty.setTerminalSize(rows: -1, columns: 80) }
            #expect(throws: EventLoopError.invalidArgument) { try pty.setTerminalSize(rows: 24, columns: 70_000) }
            try pty.setTerminalSize(rows: 0, columns: 0)
            let _ = try await pty.communicate()
            #expect(throws: UVError.ESRCH) { try pty.setTerminalSize(rows: 24, columns: 80) }
        }
    }

    @Test(.timeLimit(.minutes(1))) func aPtyWithAProcessGroupIsRefusedBeforeAnythingStarts() throws {
        try onPolicyLoop { () async throws in
            await #expect(throws: UVError.EINVAL) {
                _ = try await createSubprocessExec("true", stdout: .pty, processGroup: 0)
            }
        }
    }

    @Test(.timeLimit(.minutes(1))) func theLibuvWatcherRefusesAPtyWithENOTSUP() throws {
        try onPolicyLoop(watcher: LibuvChildWatcher()) { () async throws in
            await #expect(throws: UVError.ENOTSUP) {
                _ = try await createSubprocessExec("true", stdin: .pty, stdout: .pty)
            }
            // The watcher still spawns with pipes afterwards.
            let child = try await createSubprocessExec("true", stdout: .pipe)
            #expect(try await child.wait() == 0)
        }
    }
}
}
