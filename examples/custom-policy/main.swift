// custom-policy: asyncio's "Custom Policies" example, verbatim in Swift.
// A policy subclass overrides getEventLoop; every module-level getEventLoop() goes through it.
import UVLoop

// Swift 6 asks a subclass of an `@unchecked Sendable` open class to restate that conformance;
// without the `, @unchecked Sendable` the class compiles the same, with one warning.
final class MyEventLoopPolicy: DefaultEventLoopPolicy, @unchecked Sendable {
    override func getEventLoop() throws -> EventLoop {
        let loop = try super.getEventLoop()
        // Do something with loop ...
        print("MyEventLoopPolicy.getEventLoop -> loop \(ObjectIdentifier(loop))")
        return loop
    }
}

setEventLoopPolicy(MyEventLoopPolicy())

print("policy: \(type(of: getEventLoopPolicy()))")
let loop = try getEventLoop()          // main thread: the policy creates and sets a loop
let again = try getEventLoop()         // same loop, through the override again
print("same loop both times: \(loop === again)")

let result = try loop.runUntilComplete {
    // While the loop runs, getEventLoop() returns the running loop without asking the policy.
    let running = try getEventLoop()
    return running === loop ? "inside the loop, getEventLoop() is the running loop" : "unexpected loop"
}
print(result)
try loop.close()
