/// A domain name as policy compares it: lower case, without the trailing dot.
public struct DomainName: Hashable, Sendable, CustomStringConvertible {
    /// Labels from the leftmost (`www`) to the top-level one (`com`).
    public let labels: [String]

    /// Parses `www.Example.com.`; nil for an empty name, an empty label, a label over 63
    /// bytes or a name over 253.
    public init?(_ text: String) {
        var trimmed = Substring(text)
        if trimmed.hasSuffix(".") { trimmed = trimmed.dropLast() }
        guard !trimmed.isEmpty, trimmed.utf8.count <= 253 else { return nil }
        let labels = trimmed.split(separator: ".", omittingEmptySubsequences: false).map { $0.lowercased() }
        guard labels.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 63 }) else { return nil }
        self.labels = labels
    }

    /// Labels already in lower case (a name read off the wire, or a suffix of one).
    init(lowercasedLabels labels: [String]) { self.labels = labels }

    /// One label read off the wire, in lower case: ASCII letters folded byte by byte (DNS names
    /// are ASCII; IDNs travel as punycode), anything else through `lowercased()`.
    static func lowercasedLabel(_ bytes: ArraySlice<UInt8>) -> String {
        guard bytes.allSatisfy({ $0 < 0x80 }) else { return String(decoding: bytes, as: UTF8.self).lowercased() }
        return String(unsafeUninitializedCapacity: bytes.count) { buffer in
            for (index, byte) in zip(buffer.indices, bytes) { buffer[index] = byte &- 0x41 < 26 ? byte | 0x20 : byte }
            return bytes.count
        }
    }

    public var description: String { labels.joined(separator: ".") }
}

/// What a `domainName` rule names: one name exactly, or `*.` and a name, which matches
/// one or more labels in front of that name and never the name itself.
public struct DomainPattern: Hashable, Sendable, CustomStringConvertible {
    public let name: DomainName
    public let isWildcard: Bool

    /// Parses `github.com` or `*.salesforce.com` (any case, trailing dot allowed); nil otherwise.
    public init?(_ text: String) {
        let isWildcard = text.hasPrefix("*.")
        guard let name = DomainName(isWildcard ? String(text.dropFirst(2)) : text), !name.labels.contains(where: { $0.contains("*") }) else {
            return nil
        }
        self.name = name
        self.isWildcard = isWildcard
    }

    init(name: DomainName, isWildcard: Bool) {
        self.name = name
        self.isWildcard = isWildcard
    }

    public func matches(_ candidate: DomainName) -> Bool {
        guard isWildcard else { return candidate == name }
        return candidate.labels.count > name.labels.count && candidate.labels.suffix(name.labels.count).elementsEqual(name.labels)
    }

    public var description: String { isWildcard ? "*.\(name)" : name.description }
}

extension DomainPattern {
    /// The id the datapath keys this pattern's rules and grants by: FNV-1a 64 of its text
    /// (lower case, no trailing dot), the same in every process.
    public var id: UInt64 {
        var hash = PatternHash()
        hash.add(description.utf8)
        return hash.value
    }
}

/// FNV-1a 64, the hash of a pattern's text that is its id.
struct PatternHash {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func add<Bytes: Sequence<UInt8>>(_ bytes: Bytes) {
        for byte in bytes {
            value ^= UInt64(byte)
            value &*= 0x0000_0100_0000_01b3
        }
    }
}

extension DomainName {
    /// Every pattern that matches this name: the name itself, and `*.` before each
    /// proper suffix (`a.b.example.com` → `*.b.example.com`, `*.example.com`, `*.com`).
    public var matchingPatterns: [DomainPattern] {
        [DomainPattern(name: self, isWildcard: false)]
            + (1..<labels.count).map { DomainPattern(name: DomainName(lowercasedLabels: Array(labels[$0...])), isWildcard: true) }
    }

    /// The ids of `matchingPatterns`, in its order, hashed from the labels without building
    /// the patterns' text (the DNS proxy asks this of every query).
    public var matchingPatternIDs: [UInt64] {
        var ids: [UInt64] = []
        ids.reserveCapacity(labels.count)
        for start in labels.indices {
            var hash = PatternHash()
            if start > 0 { hash.add("*.".utf8) }
            for index in start..<labels.count {
                if index > start { hash.add(CollectionOfOne(UInt8(ascii: "."))) }
                hash.add(labels[index].utf8)
            }
            ids.append(hash.value)
        }
        return ids
    }
}
