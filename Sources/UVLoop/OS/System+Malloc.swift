import Glibc

extension System {
    /// Lets glibc's malloc keep freed read buffers in its heap instead of handing their pages back
    /// to the kernel at once. Done once, when the first stream is made.
    ///
    /// Every `read` returns a new array of up to 64 KiB; it is freed after use, typically at the top
    /// of the heap. With glibc's initial thresholds (trim at 128 KiB of free top), each such free
    /// trims the heap and the next allocation faults the pages back in: measured on B4 (64 KiB
    /// echo), 6 page faults per message and half the throughput. glibc raises the thresholds by
    /// itself (mmap threshold to the size, trim threshold to twice it) the first time a block
    /// allocated with mmap is freed; freeing one 1 MiB block triggers that documented dynamic
    /// adjustment now rather than at some later moment. `mallopt` is not used: it would switch
    /// the dynamic adjustment off for the whole process.
    static let keepFreedBuffersInHeap: Void = {
        if let block = malloc(1 << 20) {
            escape(block)   // or the optimizer removes the malloc/free pair
            free(block)
        }
    }()

    @inline(never) @_optimize(none)
    private static func escape(_ pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: 1, as: UInt8.self)
    }
}
