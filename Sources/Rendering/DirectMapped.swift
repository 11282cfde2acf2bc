/// Where a key of two words goes in a direct-mapped table of `1 << bits` slots: the small
/// caches of what dumps and event logs render again and again (names, addresses) keep one
/// entry per slot, so memory stays bounded and a lookup is a multiply and a compare.
public enum DirectMapped {
    @inlinable
    public static func slot(_ first: UInt64, _ second: UInt64, bits: Int) -> Int {
        Int(truncatingIfNeeded: (first &* 0x9e37_79b9_7f4a_7c15 ^ second &* 0xc2b2_ae3d_27d4_eb4f) >> UInt64(64 - bits))
    }
}
