import Foundation
import Testing
@testable import UVLoop

/// Runs `body` on a new OS thread and waits for it to finish; the thread has exited on return.
@discardableResult
func onNewThread<T: Sendable>(name: String = "uvloop-test", _ body: @escaping @Sendable () throws -> T) throws -> T {
    let result = LockedValue<Result<T, any Error>?>(nil)
    var thread = pthread_t()
    let box = Unmanaged.passRetained(ThreadBody {
        let value = Result { try body() }
        result.withLock { $0 = value }
    })
    let rc = pthread_create(&thread, nil, { arg in
        let body = Unmanaged<ThreadBody>.fromOpaque(arg!).takeRetainedValue()
        body.run()
        return nil
    }, box.toOpaque())
    precondition(rc == 0, "pthread_create failed: \(rc)")
    pthread_join(thread, nil)
    return try result.withLock { $0! }.get()
}

final class ThreadBody: @unchecked Sendable {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// Starts `body` on a new OS thread without waiting; returns a function that joins it.
func startThread(_ body: @escaping @Sendable () -> Void) -> @Sendable () -> Void {
    var thread = pthread_t()
    let box = Unmanaged.passRetained(ThreadBody(body))
    pthread_create(&thread, nil, { arg in
        Unmanaged<ThreadBody>.fromOpaque(arg!).takeRetainedValue().run()
        return nil
    }, box.toOpaque())
    let joined = thread
    return { pthread_join(joined, nil) }
}

/// Number of open file descriptors of this process.
///
/// timerfds are left out: libdispatch (behind the test harness's time limits and Task.sleep) opens
/// one lazily at a moment no test controls. Loops' own timerfds are counted by
/// `timerDescriptorCount()`.
func openDescriptorCount() -> Int { openDescriptors().count }

/// A descriptor number that is not open: far above the lowest free number the kernel hands out,
/// so tests running meanwhile never reuse it (a descriptor a test closes itself may be reused at
/// once). Tests check it is closed before relying on it.
let closedDescriptor: Int32 = 65_000

/// Number of open timerfds of this process: each loop has one (its timers); libdispatch may open
/// one more at any moment.
func timerDescriptorCount() -> Int {
    ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).filter {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)")) == "anon_inode:[timerfd]"
    }.count
}

/// Open descriptors of this process and what they point at (timerfds left out, see above).
func openDescriptors() -> [Int32: String] {
    var result: [Int32: String] = [:]
    for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
        guard let fd = Int32(name),
              let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(name)"),
              target != "anon_inode:[timerfd]" else { continue }
        result[fd] = target
    }
    return result
}

/// In an exit test: prints every descriptor opened since `before` and still open (a leak); the
/// parent expects silence. Descriptors that were closed are not reported: the test harness closes
/// some of its own inherited ones while the child runs.
func reportDescriptorChanges(since before: [Int32: String], _ when: String) {
    let after = openDescriptors()
    for (fd, target) in after.sorted(by: { $0.key < $1.key }) where before[fd] != target {
        print("\(when): leaked fd \(fd) -> \(target)")
    }
}

/// The text an exit test's child printed (it prints only what went wrong).
func childOutput(_ result: ExitTest.Result?) -> String {
    result.map { String(decoding: $0.standardOutputContent, as: UTF8.self) } ?? "(no result)"
}

/// Number of threads of this process.
func threadCount() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? -1
}

/// A value shared between the test and loop callbacks.
final class Box<T: Sendable>: Sendable {
    private let storage: LockedValue<T>
    init(_ value: T) { storage = LockedValue(value) }
    var value: T {
        get { storage.withLock { $0 } }
        set { storage.withLock { $0 = newValue } }
    }
    func mutate<R>(_ body: (inout T) -> R) -> R { storage.withLock { body(&$0) } }
}

/// Runs the helper executable (Tests/UVLoopTestHelper) with `scenario`; returns its exit status
/// and output. The helper runs scenarios on its process's main thread.
func runHelper(_ arguments: String...) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = helperURL()
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    // Start the helper with SIGCHLD blocked, as a process started from a libdispatch worker thread
    // is: signal-based watchers must still work (regression: they hung until UVSignal unblocked
    // its signal on the loop thread).
    var blocked = sigset_t(), previous = sigset_t()
    sigemptyset(&blocked)
    sigaddset(&blocked, SIGCHLD)
    pthread_sigmask(SIG_BLOCK, &blocked, &previous)
    defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
    try process.run()
    // A hung helper is killed after two minutes (it then fails its test instead of hanging CI).
    let pid = process.processIdentifier
    let watchdog = DispatchWorkItem { kill(pid, SIGKILL) }
    DispatchQueue.global().asyncAfter(deadline: .now() + 120, execute: watchdog)
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    watchdog.cancel()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

func helperURL() -> URL { productURL("uvloop-test-helper") }

/// An executable product built beside the test bundle (the helper, the examples).
func productURL(_ name: String) -> URL {
    let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    var dir = me.deletingLastPathComponent()
    while dir.path != "/" {
        let candidate = dir.appendingPathComponent(name)
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        dir = dir.deletingLastPathComponent()
    }
    return URL(fileURLWithPath: name)
}

/// Sleeps on the loop's own timers (no libdispatch: it may need a descriptor it cannot get while a
/// test has lowered the descriptor limit).
func loopSleep(_ loop: EventLoop, _ seconds: Double) async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        loop.callLater(seconds) { continuation.resume() }
    }
}

/// Leaves exactly `free` descriptor numbers available: lowers RLIMIT_NOFILE, fills every free
/// number below it with /dev/null, then closes `free` of them. Returns the previous limit and the
/// fillers, for `restoreDescriptors`.
func leaveFreeDescriptors(_ free: Int) -> (rlimit, [Int32]) {
    usleep(200_000)   // the test harness closes some inherited descriptors early in the child
    var previous = rlimit()
    getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &previous)
    var lowered = previous
    lowered.rlim_cur = rlim_t(openDescriptors().count + free + 64)
    setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &lowered)
    var fillers: [Int32] = []
    while true {
        let fd = open("/dev/null", O_RDONLY | O_CLOEXEC)
        if fd < 0 { break }
        fillers.append(fd)
    }
    for _ in 0..<free { if let fd = fillers.popLast() { close(fd) } }
    return (previous, fillers)
}

/// Undoes `leaveFreeDescriptors`.
func restoreDescriptors(_ saved: (rlimit, [Int32])) {
    var (limit, fillers) = saved
    fillers.forEach { close($0) }
    setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
}

/// Runs blocking `body` on a new OS thread and awaits it, so that a long synchronous test (one
/// that runs a loop for a second, say) does not hold one of the few cooperative threads the
/// other tests, running in parallel, need to resume.
func offTheCooperativePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        var thread = pthread_t()
        let box = Unmanaged.passRetained(ThreadBody { continuation.resume(with: Result { try body() }) })
        pthread_create(&thread, nil, { arg in
            Unmanaged<ThreadBody>.fromOpaque(arg!).takeRetainedValue().run()
            return nil
        }, box.toOpaque())
        pthread_detach(thread)
    }
}

/// At most two heavy tests (helper processes, examples) run at once, each on a thread of its own:
/// off the cooperative pool, which has one thread per core (two here) and would otherwise be
/// blocked by them until the async tests behind them hit their time limits; and limited, so that
/// a dozen of them at once do not starve the machine either.
private let heavyTestSlots = DispatchSemaphore(value: 2)

func asHeavyTest<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await offTheCooperativePool {
        heavyTestSlots.wait()
        defer { heavyTestSlots.signal() }
        return try body()
    }
}

/// Runs `body` to completion on a new loop under a fresh default policy (with `watcher` as its
/// child watcher when given), then closes the loop and resets the policy: for the suites in
/// `ProcessWide` that spawn children.
@discardableResult
func onPolicyLoop<T: Sendable>(watcher: (any ChildWatcher)? = nil, _ body: sending @escaping () async throws -> T) throws -> T {
    setEventLoopPolicy(nil)
    if let watcher { setChildWatcher(watcher) }
    defer { setEventLoopPolicy(nil) }
    let loop = try EventLoop()
    defer { try? loop.close() }
    return try loop.runUntilComplete(body)
}

/// True once `pid` no longer runs (gone, or a zombie its parent has not reaped yet); waits up
/// to two seconds for it, blocking the calling thread.
func processHasEnded(_ pid: pid_t) -> Bool {
    guard pid > 0 else { return false }
    for _ in 0..<200 {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        if stat[stat.index(close, offsetBy: 2)] == "Z" { return true }
        usleep(10_000)
    }
    return false
}
