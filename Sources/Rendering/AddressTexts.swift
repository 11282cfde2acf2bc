import DatapathModel

/// The text of the addresses a writer met lately, each written once and copied after:
/// a log names few addresses many times (a pod's own on every line), and writing an
/// IPv6 address as RFC 5952 has it costs several times a copy. A direct-mapped table
/// of fixed slots in raw memory: bounded, and a lookup hashes two words.
public final class AddressTexts {
    private static let slots = 64, slotBytes = 48  // INET6_ADDRSTRLEN is 46
    private struct Slot {
        var words: (UInt64, UInt64) = (0, 0)
        /// Bytes of the text; 0: empty.
        var count = 0
    }
    private let entries = UnsafeMutablePointer<Slot>.allocate(capacity: slots)
    private let texts = UnsafeMutablePointer<UInt8>.allocate(capacity: slots * slotBytes)

    public init() { entries.initialize(repeating: Slot(), count: Self.slots) }

    deinit {
        entries.deallocate()
        texts.deallocate()
    }

    /// Writes `address` as ``OutputCursor/put(address:as:)`` writes it (its own family).
    @inline(__always)
    public func put(_ address: IPAddress, into cursor: inout OutputCursor) {
        let words = address.words
        let index = Int(truncatingIfNeeded: (words.0 &* 0x9e37_79b9_7f4a_7c15 ^ words.1 &* 0xc2b2_ae3d_27d4_eb4f) >> 58)
        let slot = entries + index, text = texts + index * Self.slotBytes
        if slot.pointee.count == 0 || slot.pointee.words != words {
            var writer = OutputCursor(at: text)
            writer.put(address: address)
            slot.pointee = Slot(words: words, count: writer.position - text)
        }
        cursor.put(UnsafeBufferPointer(start: text, count: slot.pointee.count))
    }
}
