import CNetfenceABI

/// `struct nf_domain_rule_key`: one domain pattern of a pod's policy in one slot.
/// The value is a rule set (`RuleSetCodec`), like a trie entry's.
public struct DomainRuleKey: Hashable, Sendable {
    public var podID: UInt32
    public var slot: UInt8
    /// The pattern's id (FNV-1a 64 of its text; `DomainPattern.id`).
    public var pattern: UInt64

    public init(podID: UInt32, slot: UInt8, pattern: UInt64) {
        self.podID = podID
        self.slot = slot
        self.pattern = pattern
    }

    public static let size = MemoryLayout<nf_domain_rule_key>.size

    public func encode() -> [UInt8] {
        var writer = ByteWriter()
        writer.append(podID)
        writer.append(UInt32(slot))
        writer.append(pattern)
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) -> DomainRuleKey? {
        let reader = ByteReader(bytes)
        guard bytes.count == size, let pod = reader.integer(UInt32.self, at: 0), let slot = reader.integer(UInt32.self, at: 4), slot <= 1,
              let pattern = reader.integer(UInt64.self, at: 8) else { return nil }
        return DomainRuleKey(podID: pod, slot: UInt8(slot), pattern: pattern)
    }
}

/// `struct nf_domain_grant_key` + `struct nf_domain_grant`: an address a pod resolved
/// through the DNS proxy, with each pattern that allowed the name and until when.
public struct DomainGrant: Equatable, Sendable {
    public struct Pattern: Equatable, Sendable {
        public var pattern: UInt64
        /// CLOCK_MONOTONIC nanoseconds.
        public var expiresNanoseconds: UInt64

        public init(pattern: UInt64, expiresNanoseconds: UInt64) {
            self.pattern = pattern
            self.expiresNanoseconds = expiresNanoseconds
        }
    }

    public var podID: UInt32
    public var address: IPAddress
    /// At most `DatapathLimits.patternsPerGrant`.
    public var patterns: [Pattern]

    public init(podID: UInt32, address: IPAddress, patterns: [Pattern]) {
        self.podID = podID
        self.address = address
        self.patterns = patterns
    }

    public static let keySize = MemoryLayout<nf_domain_grant_key>.size
    public static let valueSize = MemoryLayout<nf_domain_grant>.size
    static let patternsOffset = MemoryLayout<nf_domain_grant>.offset(of: \.patterns)!
    static let patternSize = MemoryLayout<nf_domain_grant_pattern>.size

    public static func key(podID: UInt32, address: IPAddress) -> [UInt8] {
        var writer = ByteWriter()
        writer.append(podID)
        writer.append(address.bytes)
        return writer.bytes
    }

    public var key: [UInt8] { Self.key(podID: podID, address: address) }

    /// The value; the caller keeps `patterns.count <= patternsPerGrant`.
    public func encodeValue() -> [UInt8] {
        var writer = ByteWriter()
        writer.append(UInt32(patterns.count))
        writer.pad(toSize: Self.patternsOffset)
        for entry in patterns.prefix(DatapathLimits.patternsPerGrant) {
            writer.append(entry.pattern)
            writer.append(entry.expiresNanoseconds)
        }
        writer.pad(toSize: Self.valueSize)
        return writer.bytes
    }

    /// Decodes one entry; nil for bytes of another layout.
    public static func decode(key: [UInt8], value: [UInt8]) -> DomainGrant? {
        let keys = ByteReader(key), values = ByteReader(value)
        guard key.count == keySize, value.count == valueSize, let pod = keys.integer(UInt32.self, at: 0),
              let address = keys.slice(at: 4, count: 16), let count = values.integer(UInt32.self, at: 0),
              count <= DatapathLimits.patternsPerGrant else { return nil }
        let patterns = (0..<Int(count)).compactMap { index -> Pattern? in
            let offset = patternsOffset + index * patternSize
            guard let pattern = values.integer(UInt64.self, at: offset), let expires = values.integer(UInt64.self, at: offset + 8) else { return nil }
            return Pattern(pattern: pattern, expiresNanoseconds: expires)
        }
        return DomainGrant(podID: pod, address: IPAddress(bytes: address), patterns: patterns)
    }
}

/// `struct nf_dns_proxy`: a DNS proxy serving an address (the key: 16 bytes).
public struct DNSProxyRecord: Equatable, Sendable {
    /// The serving process; 0 once it stopped.
    public var pid: UInt32
    public var port: UInt16
    /// CLOCK_REALTIME nanoseconds.
    public var startedNanoseconds: UInt64

    public init(pid: UInt32, port: UInt16, startedNanoseconds: UInt64) {
        self.pid = pid
        self.port = port
        self.startedNanoseconds = startedNanoseconds
    }

    public static let size = MemoryLayout<nf_dns_proxy>.size

    public func encode() -> [UInt8] {
        var writer = ByteWriter()
        writer.append(pid)
        writer.append(port)
        writer.pad(2)
        writer.append(startedNanoseconds)
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) -> DNSProxyRecord? {
        let reader = ByteReader(bytes)
        guard bytes.count == size, let pid = reader.integer(UInt32.self, at: 0), let port = reader.integer(UInt16.self, at: 4),
              let started = reader.integer(UInt64.self, at: 8) else { return nil }
        return DNSProxyRecord(pid: pid, port: port, startedNanoseconds: started)
    }
}
