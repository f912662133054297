/// The plaintext a TLS read decrypts into: one per loop thread, as `ReceiveBuffer`, so idle TLS
/// connections hold no read memory of UVLoop's.
final class PlaintextBuffer {
    static let size = 65_536
    let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: PlaintextBuffer.size, alignment: 16)

    deinit { bytes.deallocate() }

    private static let slot = ThreadLocal<PlaintextBuffer>()

    static func forCurrentThread() -> PlaintextBuffer { slot.get(orCreate: PlaintextBuffer.init) }
}
