/// A growable FIFO buffer whose elements are moved in and moved out, never copied: draining it
/// costs no reference-count traffic beyond the element's own release, and its capacity is kept
/// from one batch to the next (no page faults once warm).
///
/// Not thread-safe: owned by one thread at a time (the loop thread, or a lock's holder).
final class WorkBuffer<Element> {
    @exclusivity(unchecked) private var base: UnsafeMutablePointer<Element>
    @exclusivity(unchecked) private var capacity: Int
    @exclusivity(unchecked) private(set) var count = 0

    init(capacity: Int = 64) {
        self.capacity = max(capacity, 1)
        base = .allocate(capacity: self.capacity)
    }

    deinit {
        base.deinitialize(count: count)
        base.deallocate()
    }

    var isEmpty: Bool { count == 0 }

    @inline(__always)
    func append(_ element: consuming Element) {
        if count == capacity { grow() }
        (base + count).initialize(to: element)
        count += 1
    }

    private func grow() {
        let newCapacity = capacity * 2
        let newBase = UnsafeMutablePointer<Element>.allocate(capacity: newCapacity)
        newBase.moveInitialize(from: base, count: count)
        base.deallocate()
        base = newBase
        capacity = newCapacity
    }

    /// Moves every element of `other`, in order, to the end of this buffer; `other` is left empty.
    func append(movingFrom other: WorkBuffer<Element>) {
        while capacity - count < other.count { grow() }
        (base + count).moveInitialize(from: other.base, count: other.count)
        count += other.count
        other.count = 0
    }

    /// Passes every element, in order, to `body`, leaving the buffer empty. `body` must not touch
    /// this buffer (it may append to another one).
    @inline(__always)
    func drain(_ body: (consuming Element) -> Void) {
        let total = count
        count = 0
        var index = 0
        while index < total {
            body((base + index).move())
            index += 1
        }
    }

    /// Exchanges the contents (elements and storage) of two buffers.
    func swapContents(with other: WorkBuffer<Element>) {
        swap(&base, &other.base)
        swap(&capacity, &other.capacity)
        swap(&count, &other.count)
    }

}
