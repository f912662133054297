// subprocess-pipeline: spawn a producer, read its stdout line by line, feed each line into a
// second process, and finish with communicate() moving a megabyte through `wc -c`.
import UVLoop

let loop = try getEventLoop()
try loop.runUntilComplete {
    // 1. A producer whose output arrives over time, read line by line.
    let producer = try await createSubprocessShell(
        "for city in lisbon oslo quito kyoto; do echo $city; sleep 0.05; done", stdout: .pipe)
    // 2. A consumer fed through its stdin pipe.
    let consumer = try await createSubprocessExec("tr", ["a-z", "A-Z"], stdin: .pipe, stdout: .pipe)
    guard let lines = producer.stdout, let feed = consumer.stdin, let result = consumer.stdout else { return }

    while true {
        let line = try await lines.readLine()
        if line.isEmpty { break }                    // EOF
        print("producer -> \(String(decoding: line, as: UTF8.self).trimmingSuffix())")
        try feed.write(line)
        try await feed.drain()                       // backpressure: wait while the pipe is full
    }
    feed.close()                                     // the consumer sees EOF and exits
    let shouted = try await result.read()            // to EOF
    print("consumer -> \(String(decoding: shouted, as: UTF8.self).split(separator: "\n").joined(separator: " "))")
    print("exit codes: producer \(try await producer.wait()), consumer \(try await consumer.wait())")

    // 3. communicate(): write stdin, read stdout and stderr, wait for the exit, no deadlock.
    let counter = try await createSubprocessExec("wc", ["-c"], stdin: .pipe, stdout: .pipe, stderr: .pipe)
    let (output, _) = try await counter.communicate([UInt8](repeating: UInt8(ascii: "x"), count: 1_000_000))
    print("wc -c counted \(String(decoding: output, as: UTF8.self).trimmingSuffix()) bytes, exit \(counter.returnCode ?? -1)")
}
try loop.close()

extension String {
    func trimmingSuffix() -> String {
        var result = self
        while result.last?.isWhitespace == true { result.removeLast() }
        return result
    }
}
