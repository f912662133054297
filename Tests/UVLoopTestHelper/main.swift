// Scenarios that must run on a process's main thread, started by the test suite:
// `uvloop-test-helper <scenario>`. Prints what it checked; exits 0 when every check passed.
import Foundation
import UVLoop

nonisolated(unsafe) var failures = 0
func check(_ condition: Bool, _ what: String) {
    print(condition ? "ok   \(what)" : "FAIL \(what)")
    if !condition { failures += 1 }
}

let scenario = CommandLine.arguments.dropFirst().first ?? ""
switch scenario {
default:
    print("unknown scenario '\(scenario)'")
    exit(2)
}
exit(failures == 0 ? 0 : 1)
