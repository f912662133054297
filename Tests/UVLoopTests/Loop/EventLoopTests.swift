import Foundation
import Testing
@testable import UVLoop

@Suite("EventLoop: running, stopping, closing")
struct EventLoopLifecycleTests {
    @Test func newLoopIsOpenAndNotRunning() throws {
        let loop = try EventLoop()
        #expect(!loop.isRunning)
        #expect(!loop.isClosed)
        try loop.close()
        #expect(loop.isClosed)
        #expect(!loop.isRunning)
    }

    @Test func isRunningIsTrueInsideTheLoop() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let seen = Box(false)
        loop.callSoon {
            seen.value = loop.isRunning && loop.inLoopThread
            loop.stop()
        }
        try loop.runForever()
        #expect(seen.value)
        #expect(!loop.isRunning)
    }

    @Test func stopBeforeRunForeverRunsOneIteration() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let order = Box<[Int]>([])
        loop.callSoon { order.mutate { $0.append(1) } }
        loop.stop()
        loop.callSoon { order.mutate { $0.append(2) } }
        try loop.runForever()
        // Everything scheduled before the run ran; runForever returned after one iteration.
        #expect(order.value == [1, 2])
        // The loop can run again afterwards.
        loop.callSoon { order.mutate { $0.append(3) }; loop.stop() }
        try loop.runForever()
        #expect(order.value == [1, 2, 3])
    }

    @Test func stopInsideACallbackSkipsCallbacksScheduledByTheBatch() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let ran = Box<[String]>([])
        loop.callSoon {
            ran.mutate { $0.append("a") }
            loop.stop()
            loop.callSoon { ran.mutate { $0.append("next-iteration") } }
        }
        loop.callSoon { ran.mutate { $0.append("b") } }   // same batch: still runs
        try loop.runForever()
        #expect(ran.value == ["a", "b"])
        loop.stop()
        try loop.runForever()
        #expect(ran.value == ["a", "b", "next-iteration"])
    }

    @Test(.timeLimit(.minutes(1))) func stopFromAnotherThread() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let join = startThread {
            usleep(50_000)
            loop.stop()
        }
        let start = loop.time()
        try loop.runForever()
        join()
        #expect(loop.time() - start >= 0.04)
    }

    @Test func runningTwiceThrows() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let errors = Box<[EventLoopError]>([])
        loop.callSoon {
            do { try loop.runForever() } catch let error as EventLoopError { errors.mutate { $0.append(error) } } catch {}
            do { _ = try loop.runUntilComplete { 1 } } catch let error as EventLoopError { errors.mutate { $0.append(error) } } catch {}
            loop.stop()
        }
        try loop.runForever()
        #expect(errors.value == [.loopAlreadyRunning, .loopAlreadyRunning])
    }

    @Test(.timeLimit(.minutes(1))) func runningOnTwoThreadsAtOnceThrows() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let started = Box(false)
        loop.callSoon { started.value = true }
        let join = startThread { try? loop.runForever() }
        while !started.value { usleep(1000) }
        #expect(throws: EventLoopError.loopAlreadyRunning) { try loop.runForever() }
        loop.stop()
        join()
    }

    @Test func anotherLoopOnTheSameThreadThrows() throws {
        let outer = try EventLoop()
        let inner = try EventLoop()
        defer { try? outer.close(); try? inner.close() }
        let error = Box<EventLoopError?>(nil)
        outer.callSoon {
            do { try inner.runForever() } catch let e as EventLoopError { error.value = e } catch {}
            outer.stop()
        }
        try outer.runForever()
        #expect(error.value == .anotherLoopIsRunning)
    }

    @Test func closeWhileRunningThrowsAndCloseIsIdempotent() throws {
        let loop = try EventLoop()
        let error = Box<EventLoopError?>(nil)
        loop.callSoon {
            do { try loop.close() } catch let e as EventLoopError { error.value = e } catch {}
            loop.stop()
        }
        try loop.runForever()
        #expect(error.value == .loopIsRunning)
        #expect(!loop.isClosed)
        try loop.close()
        try loop.close()
        #expect(loop.isClosed)
    }

    @Test func aClosedLoopRefusesToRun() throws {
        let loop = try EventLoop()
        try loop.close()
        #expect(throws: EventLoopError.loopClosed) { try loop.runForever() }
        #expect(throws: EventLoopError.loopClosed) { _ = try loop.runUntilComplete { 1 } }
        loop.stop()   // harmless on a closed loop
    }

    @Test func closeDropsPendingCallbacksAndTimers() throws {
        let loop = try EventLoop()
        let ran = Box(false)
        loop.callSoon { ran.value = true }
        loop.callLater(0.01) { ran.value = true }
        #expect(loop.uvLoop.handleCount == 6)   // wake-up, drainer, deadline timer, its armer, statistics, spinner
        try loop.close()
        #expect(!ran.value)
        #expect(loop.uvLoop.handleCount == 0)
    }

    @Test func timeIsMonotonicSeconds() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let a = loop.time()
        usleep(20_000)
        let b = loop.time()
        #expect(b - a >= 0.019)
        #expect(b - a < 1)
    }

    @Test func debugFlagCanBeToggled() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        loop.debug = true
        #expect(loop.debug)
        loop.debug = false
        #expect(!loop.debug)
    }
}

@Suite("EventLoop: callSoon and callSoonThreadsafe")
struct CallSoonTests {
    @Test func callbacksRunInFIFOOrderOnTheLoopThread() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let order = Box<[Int]>([])
        let onLoop = Box(true)
        for i in 0..<1000 {
            loop.callSoon {
                if !loop.inLoopThread { onLoop.value = false }
                order.mutate { $0.append(i) }
            }
        }
        loop.callSoon { loop.stop() }
        try loop.runForever()
        #expect(order.value == Array(0..<1000))
        #expect(onLoop.value)
    }

    @Test func cancelledHandleDoesNotRun() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let ran = Box<[String]>([])
        let handle = loop.callSoon { ran.mutate { $0.append("cancelled") } }
        loop.callSoon { ran.mutate { $0.append("kept") }; loop.stop() }
        #expect(!handle.isCancelled)
        handle.cancel()
        handle.cancel()
        #expect(handle.isCancelled)
        try loop.runForever()
        #expect(ran.value == ["kept"])
    }

    @Test func callbackScheduledFromACallbackRunsLater() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let order = Box<[String]>([])
        loop.callSoon {
            order.mutate { $0.append("first") }
            loop.callSoon { order.mutate { $0.append("third") }; loop.stop() }
        }
        loop.callSoon { order.mutate { $0.append("second") } }
        try loop.runForever()
        #expect(order.value == ["first", "second", "third"])
    }

    @Test(.timeLimit(.minutes(1))) func callSoonFromAnotherThreadIsRoutedSafely() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let count = Box(0)
        let wrongThread = Box(false)
        let total = 4 * 5_000
        let joins = (0..<4).map { _ in
            startThread {
                for _ in 0..<5_000 {
                    // callSoon (not the thread-safe variant) from a foreign thread must not corrupt.
                    loop.callSoon {
                        if !loop.inLoopThread { wrongThread.value = true }
                        if count.mutate({ $0 += 1; return $0 }) == total { loop.stop() }
                    }
                }
            }
        }
        try loop.runForever()
        joins.forEach { $0() }
        #expect(count.value == total)
        #expect(!wrongThread.value)
    }

    @Test(.timeLimit(.minutes(1))) func callSoonThreadsafeFromManyThreadsWhileRunning() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let perThread = 25_000
        let threads = 4
        let received = Box<[Int]>(Array(repeating: 0, count: threads))
        let inOrder = Box(true)
        let done = Box(0)
        let joins = Box<[@Sendable () -> Void]>([])
        loop.callSoon {
            for t in 0..<threads {
                let join = startThread {
                    for i in 0..<perThread {
                        loop.callSoonThreadsafe {
                            received.mutate { counts in
                                // Each producer's callbacks arrive in the order it sent them.
                                if counts[t] != i { inOrder.value = false }
                                counts[t] += 1
                            }
                            if done.mutate({ $0 += 1; return $0 }) == threads * perThread { loop.stop() }
                        }
                    }
                }
                joins.mutate { $0.append(join) }
            }
        }
        try loop.runForever()
        joins.value.forEach { $0() }
        #expect(received.value == Array(repeating: perThread, count: threads))
        #expect(inOrder.value)
    }

    @Test func callSoonBeforeRunningFromAnotherThread() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let ran = Box(false)
        try onNewThread { loop.callSoonThreadsafe { ran.value = true; loop.stop() } }
        try loop.runForever()
        #expect(ran.value)
    }
}

@Suite("EventLoop: exception handler")
struct ExceptionHandlerTests {
    struct Boom: Error, Equatable {}

    @Test func throwingCallbackGoesToTheHandlerAndTheLoopKeepsRunning() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let contexts = Box<[String]>([])
        loop.setExceptionHandler { handlerLoop, context in
            #expect(handlerLoop === loop)
            contexts.mutate { $0.append("\(context.message)|\(context.error.map { "\($0)" } ?? "nil")") }
        }
        let after = Box(false)
        loop.callSoon { throw Boom() }
        loop.callLater(0.001) { throw Boom() }
        loop.callLater(0.01) { after.value = true; loop.stop() }
        try loop.runForever()
        #expect(after.value)
        #expect(contexts.value.count == 2)
        #expect(contexts.value.allSatisfy { $0.hasPrefix("Exception in callback|Boom") })
    }

    @Test func defaultHandlerLogsAndKeepsRunning() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        #expect(loop.getExceptionHandler() == nil)
        let after = Box(false)
        loop.callSoon { throw Boom() }
        loop.callSoon { after.value = true; loop.stop() }
        try loop.runForever()
        #expect(after.value)
    }

    @Test func callExceptionHandlerUsesTheInstalledHandler() throws {
        let loop = try EventLoop()
        defer { try? loop.close() }
        let got = Box<String?>(nil)
        loop.setExceptionHandler { _, context in got.value = context.message }
        loop.callExceptionHandler(ExceptionContext(message: "custom", error: Boom()))
        #expect(got.value == "custom")
        loop.setExceptionHandler(nil)
        loop.callExceptionHandler(ExceptionContext(message: "to the log"))
        #expect(got.value == "custom")
    }
}

@Suite("UVError")
struct UVErrorTests {
    @Test func namesComeFromLibuvOrGlibc() {
        #expect(UVError.ENOENT.name == "ENOENT")
        #expect(UVError(code: -ECHILD).name == "ECHILD")
        #expect(UVError(code: -ENOEXEC).name == "ENOEXEC")
        #expect(UVError(code: ENOENT).code == UVError.ENOENT.code)   // positive errno is negated
        #expect(UVError(code: UVError.EPIPE.code, operation: "write").description == "write: EPIPE (broken pipe)")
        #expect(UVError(code: UVError.EPIPE.code, operation: "a") == UVError(code: UVError.EPIPE.code, operation: "b"))
    }
}
