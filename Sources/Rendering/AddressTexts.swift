import DatapathModel

/// The text of the addresses a writer met lately, each written once and copied after:
/// a log names few addresses many times (a pod's own on every line), and writing an
/// IPv6 address as RFC 5952 has it costs several times a copy. A ``DirectMapped`` table
/// of fixed slots in raw memory.
public final class AddressTexts {
    private static let bits = 6, slots = 1 << bits, slotBytes = 48  // INET6_ADDRSTRLEN is 46
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
    /// Two-way: an address is looked for in its slot and the one beside it, and a new one
    /// moves the slot's address beside it, so two that share a slot (a line's source and
    /// destination) both stay.
    @inline(__always)
    public func put(_ address: IPAddress, into cursor: inout OutputCursor) {
        let words = address.words
        let index = DirectMapped.slot(words.0, words.1, bits: Self.bits)
        if entries[index].count > 0, entries[index].words == words {
            return cursor.put(UnsafeBufferPointer(start: texts + index * Self.slotBytes, count: entries[index].count))
        }
        if entries[index ^ 1].count > 0, entries[index ^ 1].words == words {
            return cursor.put(UnsafeBufferPointer(start: texts + (index ^ 1) * Self.slotBytes, count: entries[index ^ 1].count))
        }
        let text = texts + index * Self.slotBytes
        entries[index ^ 1] = entries[index]
        (texts + (index ^ 1) * Self.slotBytes).update(from: text, count: entries[index].count)
        var writer = OutputCursor(at: text)
        writer.put(address: address)
        entries[index] = Slot(words: words, count: writer.position - text)
        cursor.put(UnsafeBufferPointer(start: text, count: entries[index].count))
    }
}
