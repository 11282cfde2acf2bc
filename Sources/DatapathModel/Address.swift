import Glibc

/// An IP address family, as `enum nf_family` numbers it.
public enum AddressFamily: UInt8, Hashable, ABIName {
    case ipv4 = 4, ipv6 = 6

    /// `ipv4` / `ipv6`, as JSON output spells it.
    public var name: StaticString { self == .ipv4 ? "ipv4" : "ipv6" }
}

/// An IPv4 or IPv6 address as the datapath stores it: 16 bytes, IPv4 mapped
/// (`::ffff:a.b.c.d`), so one code path serves both families. Where an address
/// is matched against prefixes its family travels beside it (a packet's, a
/// rule's): the bytes of an IPv6 `::ffff:a.b.c.d` and of IPv4 `a.b.c.d` are the same.
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

    /// The 16 bytes as two words in memory order: a cheap key for tables of addresses.
    public var words: (UInt64, UInt64) { storage }

    /// Whether the bytes are IPv4 mapped: how an IPv4 address is stored.
    public var isIPv4: Bool {
        storage.0 == 0 && withUnsafeBytes(of: storage.1) { $0.load(as: UInt32.self) } == UInt32(bigEndian: 0xffff)
    }

    /// The family the bytes stand for when nothing else says: IPv4 when mapped.
    public var family: AddressFamily { isIPv4 ? .ipv4 : .ipv6 }

    /// The four bytes of an IPv4 address, or the 16 of an IPv6 one: what goes in a packet.
    public var wireBytes: [UInt8] { isIPv4 ? Array(bytes.suffix(4)) : bytes }

    /// `198.18.0.1` or `2001:db8::1`.
    public var description: String { text(as: family) }

    /// The address as `family` writes it: an IPv6 `::ffff:198.18.0.1` stays IPv6.
    public func text(as family: AddressFamily) -> String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        withBytes { bytes in
            if family == .ipv4 {
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
        // Each word holds its bytes in network order once byte-swapped to big endian.
        func mask(_ bits: Int) -> UInt64 { bits <= 0 ? 0 : bits >= 64 ? ~0 : UInt64(bigEndian: ~0 << (64 - bits)) }
        var result = self
        result.storage = (storage.0 & mask(length), storage.1 & mask(length - 64))
        return result
    }
}

/// Encodes as people write it (`198.18.0.1`), as JSON output shows it.
extension IPAddress: Encodable {
    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// A CIDR block of one family. `length` counts bits of the 16-byte form, so an
/// IPv4 /24 has length 120; ``description`` prints it the way people write it.
/// A prefix never contains an address or prefix of the other family: IPv6
/// `::/0` does not cover IPv4.
public struct IPPrefix: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let family: AddressFamily
    /// The network address (host bits cleared).
    public let address: IPAddress
    /// Bits of the 16-byte address that are fixed (0...128; 96 and up for IPv4).
    public let length: Int

    /// The prefix of `address` with `length` bits (in the 16-byte form), host bits
    /// cleared. Without a `family`, IPv4 when the address is mapped and the length 96 or more.
    public init(address: IPAddress, length: Int, family: AddressFamily? = nil) {
        self.address = address.masked(to: length)
        self.length = length
        self.family = family ?? (address.isIPv4 && length >= 96 ? .ipv4 : .ipv6)
    }

    /// What parsing a CIDR found: the prefix, and whether host bits had to be cleared.
    public struct Parsed: Sendable {
        public let prefix: IPPrefix
        public let wasCanonical: Bool
    }

    /// Parses `198.18.0.0/16`, `2001:db8::/32`, or a bare address (a host prefix).
    /// The family is the one the text is written in: `::ffff:198.18.0.0/112` is IPv6.
    public static func parse(_ text: String) -> Parsed? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPAddress(String(parts[0])) else { return nil }
        let family: AddressFamily = parts[0].contains(":") ? .ipv6 : .ipv4
        let maximum = family == .ipv4 ? 32 : 128
        var length = maximum
        if parts.count == 2 {
            guard let given = Int(parts[1]), (0...maximum).contains(given), parts[1].allSatisfy(\.isNumber) else { return nil }
            length = given
        }
        let prefix = IPPrefix(address: address, length: length + (family == .ipv4 ? 96 : 0), family: family)
        return Parsed(prefix: prefix, wasCanonical: prefix.address == address)
    }

    public var isIPv4: Bool { family == .ipv4 }

    /// An IPv6 prefix inside `::ffff:0:0/96`: IPv4 written as IPv6 (RFC 4291 2.5.5.2).
    public var isIPv4Mapped: Bool { family == .ipv6 && length >= 96 && address.isIPv4 }

    /// The length as people write it (/24 for IPv4, not /120).
    public var familyLength: Int { isIPv4 ? length - 96 : length }

    public var description: String { "\(address.text(as: family))/\(familyLength)" }

    /// Whether `address` of `family` lies in this block.
    public func contains(_ address: IPAddress, family: AddressFamily) -> Bool {
        family == self.family && address.masked(to: length) == self.address
    }

    /// Whether `other` lies wholly in this block (and is of its family).
    public func contains(_ other: IPPrefix) -> Bool {
        other.family == family && other.length >= length && other.address.masked(to: length) == address
    }

    /// This block cut down to its first `length` bits.
    public func truncated(to length: Int) -> IPPrefix { IPPrefix(address: address, length: min(length, self.length), family: family) }

    public static func < (a: IPPrefix, b: IPPrefix) -> Bool {
        if a.family != b.family { return a.family.rawValue < b.family.rawValue }
        return a.address == b.address ? a.length < b.length : a.address < b.address
    }
}
