/// The bytes a `StreamReader` has received and not yet returned: an array consumed from a moving
/// head, compacted when the consumed prefix dominates. Loop thread only (owned by a transport).
struct ByteQueue {
    private var storage: [UInt8] = []
    private var head = 0

    /// Capacity kept when the queue empties; larger storage (after a burst) is released.
    static let retainedCapacity = 256 * 1024

    var count: Int { storage.count - head }
    var isEmpty: Bool { head == storage.count }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        if head == storage.count {
            storage.removeAll(keepingCapacity: storage.capacity <= Self.retainedCapacity)
            head = 0
        } else if head >= 64 * 1024 && head * 2 >= storage.count {
            storage.removeSubrange(0..<head)
            head = 0
        }
        storage.append(contentsOf: bytes)
    }

    /// Removes and returns the first `n` bytes (`n <= count`).
    mutating func take(_ n: Int) -> [UInt8] {
        if n < 0 || n > count { fatalError("ByteQueue.take(\(n)) with \(count) bytes queued") }
        if head == 0 && n == storage.count && n * 2 >= storage.capacity {
            // Hand the whole array over instead of copying it.
            defer { storage = [] }
            return storage
        }
        let out = Array(storage[head..<(head + n)])
        head += n
        if head == storage.count {
            storage.removeAll(keepingCapacity: storage.capacity <= Self.retainedCapacity)
            head = 0
        }
        return out
    }

    mutating func takeAll() -> [UInt8] { take(count) }

    /// Drops the first `n` bytes.
    mutating func removeFirst(_ n: Int) {
        if n < 0 || n > count { fatalError("ByteQueue.removeFirst(\(n)) with \(count) bytes queued") }
        head += n
        if head == storage.count {
            storage.removeAll(keepingCapacity: storage.capacity <= Self.retainedCapacity)
            head = 0
        }
    }

    /// Offset (from the first queued byte) of the first occurrence of `separator` at or after
    /// `offset`, or nil.
    func firstIndex(of separator: [UInt8], from offset: Int) -> Int? {
        let length = separator.count
        guard length > 0, count - offset >= length else { return nil }
        return storage.withUnsafeBufferPointer { all -> Int? in
            let bytes = UnsafeBufferPointer(rebasing: all[head...])
            let first = separator[0]
            var index = offset
            let last = bytes.count - length
            while index <= last {
                guard let found = bytes[index...last].firstIndex(of: first) else { return nil }
                if length == 1 { return found }
                var matches = true
                for k in 1..<length where bytes[found + k] != separator[k] {
                    matches = false
                    break
                }
                if matches { return found }
                index = found + 1
            }
            return nil
        }
    }

    /// True when `separator` starts at `offset`.
    func hasSeparator(_ separator: [UInt8], at offset: Int) -> Bool {
        guard offset >= 0, count - offset >= separator.count else { return false }
        for k in 0..<separator.count where storage[head + offset + k] != separator[k] { return false }
        return true
    }
}
