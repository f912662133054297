import Foundation
import Logging
@testable import UVLoop

/// A kernel for the reaping logic that produces, on demand, what a real one cannot: a status
/// another reaper took, ECHILD, EINTR on any call, a pidfd that cannot be opened, a child that
/// exited before it was registered. Used in addition to the real-process tests, never instead.
///
/// Children are pid numbers above `pid_max` (2^22), so no real child of the test process can be
/// mistaken for one. Pidfds are real pipes: their read end becomes readable when the fake child
/// exits, so libuv's poll and `poll(2)` wait on them for real.
///
/// `@unchecked Sendable`: every field is read and written under `condition`'s lock.
final class FakeKernel: ChildKernel, @unchecked Sendable {
    private struct Child {
        /// The raw wait status once it exited.
        var status: Int32?
        /// Taken by `waitpid`/`waitid` without WNOWAIT, here or by "another reaper".
        var reaped = false
        var signals: [Int32] = []
    }

    private let condition = NSCondition()
    private var children: [pid_t: Child] = [:]
    /// Pidfd read end -> (pid, write end).
    private var pidfds: [Int32: (pid: pid_t, write: Int32)] = [:]
    /// Calls still to be interrupted, by call name ("waitpid", "waitid", "waitReadable").
    private var interruptions: [String: Int] = [:]
    /// Calls that were interrupted, by call name.
    private var interrupted: [String: Int] = [:]
    /// What `pidfdOpen` of a child returns while set (minus an errno value).
    private var pidfdFailure: Int32?
    private var nextPid: pid_t = 10_000_000

    let processID: pid_t = 9_999_999

    /// - Parameter pidfds: false makes `pidfd_open` fail with ENOSYS, also for the probe.
    init(pidfds: Bool = true) {
        if !pidfds { pidfdFailure = -ENOSYS }
    }

    // MARK: Driving the fake

    /// A new running child.
    func spawn() -> pid_t {
        condition.withLock {
            nextPid += 1
            children[nextPid] = Child()
            return nextPid
        }
    }

    /// The child exits with `code`.
    func exit(_ pid: pid_t, code: Int32) { finish(pid, status: (code & 0xff) << 8) }

    /// A signal kills the child.
    func kill(_ pid: pid_t, bySignal signal: Int32) { finish(pid, status: signal & 0x7f) }

    /// The child exits and someone else reaps it at once (a stray `waitpid(-1)` elsewhere): both
    /// under one lock, so no waiter sees the exit before the theft.
    func exitAndSteal(_ pid: pid_t) { finish(pid, status: 0, stolen: true) }

    /// The next `count` calls named `call` fail with EINTR.
    func interrupt(_ call: String, times count: Int) {
        condition.withLock { interruptions[call, default: 0] += count }
    }

    /// How many calls named `call` were interrupted.
    func interruptedCount(_ call: String) -> Int { condition.withLock { interrupted[call, default: 0] } }

    /// Makes `pidfd_open` of children fail with `errno` (nil: succeed again).
    func failPidfdOpen(with errno: Int32?) { condition.withLock { pidfdFailure = errno.map { -$0 } } }

    /// True once the child's status was taken.
    func isReaped(_ pid: pid_t) -> Bool { condition.withLock { children[pid]?.reaped ?? false } }

    /// The signals sent to the child so far.
    func signals(of pid: pid_t) -> [Int32] { condition.withLock { children[pid]?.signals ?? [] } }

    /// Pidfds still open.
    var openPidfdCount: Int { condition.withLock { pidfds.count } }

    private func finish(_ pid: pid_t, status: Int32, stolen: Bool = false) {
        condition.withLock {
            guard children[pid]?.status == nil else { return }
            children[pid]?.status = status
            if stolen { children[pid]?.reaped = true }
            for (_, entry) in pidfds where entry.pid == pid { writeByte(entry.write) }
            condition.broadcast()
        }
    }

    private func writeByte(_ fd: Int32) {
        var byte: UInt8 = 1
        _ = Glibc.write(fd, &byte, 1)
    }

    /// Under the lock: true (and counted) when this call is to be interrupted.
    private func consumeInterruption(_ call: String) -> Bool {
        guard let left = interruptions[call], left > 0 else { return false }
        interruptions[call] = left - 1
        interrupted[call, default: 0] += 1
        return true
    }

    // MARK: ChildKernel

    func waitpid(_ pid: pid_t, _ status: inout Int32, _ options: Int32) -> pid_t {
        condition.lock()
        defer { condition.unlock() }
        if consumeInterruption("waitpid") { return -EINTR }
        if pid == -1 {
            let live = children.filter { !$0.value.reaped }
            if live.isEmpty { return -ECHILD }
            guard let (found, child) = live.first(where: { $0.value.status != nil }) else { return 0 }
            children[found]?.reaped = true
            status = child.status!
            return found
        }
        while true {
            guard let child = children[pid], !child.reaped else { return -ECHILD }
            if let exit = child.status {
                children[pid]?.reaped = true
                status = exit
                return pid
            }
            if options & WNOHANG != 0 { return 0 }
            condition.wait()
        }
    }

    func waitid(_ pid: pid_t, _ options: Int32, _ childPid: inout pid_t) -> Int32 {
        condition.lock()
        defer { condition.unlock() }
        if consumeInterruption("waitid") { return -EINTR }
        while true {
            guard let child = children[pid], !child.reaped else { return -ECHILD }
            if child.status != nil {
                if options & WNOWAIT == 0 { children[pid]?.reaped = true }
                childPid = pid
                return 0
            }
            if options & WNOHANG != 0 {
                childPid = 0
                return 0
            }
            condition.wait()
        }
    }

    func kill(_ pid: pid_t, _ signal: Int32) -> Int32 {
        let result: Int32 = condition.withLock {
            guard let child = children[pid], !child.reaped else { return -ESRCH }
            children[pid]?.signals.append(signal)
            return 0
        }
        if result == 0 && (signal == SIGKILL || signal == SIGTERM) { kill(pid, bySignal: signal) }
        return result
    }

    func pidfdOpen(_ pid: pid_t) -> Int32 {
        condition.withLock {
            if let pidfdFailure, pid != processID || pidfdFailure == -ENOSYS { return pidfdFailure }
            var exited = false
            if pid != processID {
                guard let child = children[pid], !child.reaped else { return -ESRCH }
                exited = child.status != nil
            }
            var fds: [Int32] = [-1, -1]
            guard pipe(&fds) == 0 else { return -errno }
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            pidfds[fds[0]] = (pid, fds[1])
            if exited { writeByte(fds[1]) }
            return fds[0]
        }
    }

    func pidfdSendSignal(_ pidfd: Int32, _ signal: Int32) -> Int32 {
        guard let pid = condition.withLock({ pidfds[pidfd]?.pid }) else { return -EBADF }
        return kill(pid, signal)
    }

    func waitReadable(_ fd: Int32) -> Int32 {
        if condition.withLock({ consumeInterruption("waitReadable") }) { return -EINTR }
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, -1) < 0 ? -errno : 0
    }

    func close(_ fd: Int32) {
        condition.withLock {
            if let entry = pidfds.removeValue(forKey: fd) { Glibc.close(entry.write) }
        }
        Glibc.close(fd)
    }
}

/// Log messages captured from a `Logger` handed to a fake reaper.
final class CapturedLog: Sendable {
    private let lines = LockedValue<[String]>([])

    var messages: [String] { lines.withLock { $0 } }

    /// A logger writing here.
    var logger: Logger {
        Logger(label: "uvloop.watcher") { _ in Handler(log: self) }
    }

    func contains(_ text: String) -> Bool { messages.contains { $0.contains(text) } }

    private struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var metadataProvider: Logger.MetadataProvider?
        var logLevel: Logger.Level = .debug

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            log.lines.withLock { $0.append("\(event.level): \(event.message)") }
        }
    }
}

/// A reaper over a fresh fake kernel, logging into `log`.
func fakeReaper(_ kernel: FakeKernel = FakeKernel(), log: CapturedLog = CapturedLog()) -> Reaper {
    Reaper(kernel: kernel, logger: log.logger)
}

/// Exit callbacks, awaited one by one: (pid, return code) in the order they were reported.
final class ExitStream: Sendable {
    private struct State: Sendable {
        var reported: [(pid: pid_t, code: Int32)] = []
        var waiter: CheckedContinuation<(pid: pid_t, code: Int32), Never>?
    }

    private let state = LockedValue(State())

    /// The callback to register.
    var callback: @Sendable (pid_t, Int32) -> Void {
        { [self] pid, code in
            let waiter = state.withLock { state -> CheckedContinuation<(pid: pid_t, code: Int32), Never>? in
                guard let waiter = state.waiter else {
                    state.reported.append((pid, code))
                    return nil
                }
                state.waiter = nil
                return waiter
            }
            waiter?.resume(returning: (pid, code))
        }
    }

    /// Exits reported and not yet taken by `next()`.
    var pending: Int { state.withLock { $0.reported.count } }

    /// The next exit reported (one waiter at a time).
    func next() async -> (pid: pid_t, code: Int32) {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> (pid: pid_t, code: Int32)? in
                if !state.reported.isEmpty { return state.reported.removeFirst() }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}
