import Glibc

/// An IPv4 or IPv6 address as the datapath stores it: 16 bytes, IPv4 mapped
/// (`::ffff:a.b.c.d`), so one trie and one code path serve both families.
/// Held inline (no array), so decoding millions of events or conntrack
/// entries allocates nothing for their addresses.
public struct IPAddress: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The 16 bytes in network order, as two words in memory order.
    private var storage: (UInt64, UInt64)

    static let mappedPrefix: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]

    /// The address in `bytes` (16 bytes, as the datapath stores it).
    public init(bytes: [UInt8]) {
        precondition(bytes.count == 16, "an IPAddress has 16 bytes")
        storage = bytes.withUnsafeBytes { ($0.loadUnaligned(as: UInt64.self), $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) }
    }

    /// The 16 bytes at `offset` of `raw` (a key or record the datapath wrote).
    public init(_ raw: UnsafeRawBufferPointer, at offset: Int) {
        precondition(offset >= 0 && offset + 16 <= raw.count, "an IPAddress has 16 bytes")
        storage = (raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self), raw.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self))
    }

    /// Parses `198.18.0.1` or `2001:db8::1`; nil for anything else.
    public init?(_ text: String) {
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            self.init(bytes: Self.mappedPrefix + withUnsafeBytes(of: v4) { Array($0) })
        } else if inet_pton(AF_INET6, text, &v6) == 1 {
            self.init(bytes: withUnsafeBytes(of: v6) { Array($0) })
        } else {
            return nil
        }
    }

    /// An IPv4 address from its four bytes.
    public init(ipv4 octets: [UInt8]) {
        self.init(bytes: Self.mappedPrefix + octets)
    }

    /// The 16 bytes in network order.
    public var bytes: [UInt8] { withUnsafeBytes(of: storage) { Array($0) } }

    /// Calls `body` with the 16 bytes, without copying them into an array.
    public func withBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        try withUnsafeBytes(of: storage, body)
    }

    public var isIPv4: Bool {
        storage.0 == 0 && withUnsafeBytes(of: storage.1) { $0.load(as: UInt32.self) } == UInt32(bigEndian: 0xffff)
    }

    /// The four bytes of an IPv4 address, or the 16 of an IPv6 one: what goes in a packet.
    public var wireBytes: [UInt8] { isIPv4 ? Array(bytes.suffix(4)) : bytes }

    /// `198.18.0.1` or `2001:db8::1`.
    public var description: String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        withBytes { bytes in
            if isIPv4 {
                _ = inet_ntop(AF_INET, bytes.baseAddress! + 12, &text, socklen_t(text.count))
            } else {
                _ = inet_ntop(AF_INET6, bytes.baseAddress, &text, socklen_t(text.count))
            }
        }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public static func == (a: IPAddress, b: IPAddress) -> Bool { a.storage == b.storage }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(storage.0)
        hasher.combine(storage.1)
    }

    public static func < (a: IPAddress, b: IPAddress) -> Bool {
        (UInt64(bigEndian: a.storage.0), UInt64(bigEndian: a.storage.1)) < (UInt64(bigEndian: b.storage.0), UInt64(bigEndian: b.storage.1))
    }

    /// The address with every bit after the first `length` cleared.
    func masked(to length: Int) -> IPAddress {
        var result = bytes
        for index in 0..<16 {
            let kept = max(0, min(8, length - index * 8))
            result[index] &= kept == 8 ? 0xff : ~(0xff >> kept)
        }
        return IPAddress(bytes: result)
    }
}

/// Encodes as people write it (`198.18.0.1`), as JSON output shows it.
extension IPAddress: Encodable {
    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// A CIDR block. `length` counts bits of the 16-byte form, so an IPv4 /24 has
/// length 120; ``description`` prints it the way people write it.
public struct IPPrefix: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The network address (host bits cleared).
    public let address: IPAddress
    /// Bits of the 16-byte address that are fixed (0...128).
    public let length: Int

    /// The prefix of `address` with `length` bits (in the 16-byte form), host bits cleared.
    public init(address: IPAddress, length: Int) {
        self.address = address.masked(to: length)
        self.length = length
    }

    /// What parsing a CIDR found: the prefix, and whether host bits had to be cleared.
    public struct Parsed: Sendable {
        public let prefix: IPPrefix
        public let wasCanonical: Bool
    }

    /// Parses `198.18.0.0/16`, `2001:db8::/32`, or a bare address (a host prefix).
    public static func parse(_ text: String) -> Parsed? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPAddress(String(parts[0])) else { return nil }
        let maximum = address.isIPv4 ? 32 : 128
        var length = maximum
        if parts.count == 2 {
            guard let given = Int(parts[1]), (0...maximum).contains(given), parts[1].allSatisfy(\.isNumber) else { return nil }
            length = given
        }
        let prefix = IPPrefix(address: address, length: length + (address.isIPv4 ? 96 : 0))
        return Parsed(prefix: prefix, wasCanonical: prefix.address == address)
    }

    public var isIPv4: Bool { address.isIPv4 && length >= 96 }

    /// The length as people write it (/24 for IPv4, not /120).
    public var familyLength: Int { isIPv4 ? length - 96 : length }

    public var description: String { "\(address)/\(familyLength)" }

    /// Whether `address` lies in this block.
    public func contains(_ address: IPAddress) -> Bool { address.masked(to: length) == self.address }

    /// Whether `other` lies wholly in this block.
    public func contains(_ other: IPPrefix) -> Bool { other.length >= length && contains(other.address) }

    /// This block cut down to its first `length` bits.
    public func truncated(to length: Int) -> IPPrefix { IPPrefix(address: address, length: min(length, self.length)) }

    public static func < (a: IPPrefix, b: IPPrefix) -> Bool {
        a.address == b.address ? a.length < b.length : a.address < b.address
    }
}
