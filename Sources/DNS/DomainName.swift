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

    init(labels: [String]) { self.labels = labels.map { $0.lowercased() } }

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
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in description.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return hash
    }
}

extension DomainName {
    /// Every pattern that matches this name: the name itself, and `*.` before each
    /// proper suffix (`a.b.example.com` → `*.b.example.com`, `*.example.com`, `*.com`).
    public var matchingPatterns: [DomainPattern] {
        [DomainPattern(name: self, isWildcard: false)]
            + (1..<labels.count).map { DomainPattern(name: DomainName(labels: Array(labels[$0...])), isWildcard: true) }
    }
}
