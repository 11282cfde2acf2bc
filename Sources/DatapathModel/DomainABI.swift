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

    public static let size = nf_domain_rule_key.size

    public func encode() -> [UInt8] {
        var key = nf_domain_rule_key()
        key.pod_id = podID
        key.slot = UInt32(slot)
        key.pattern = pattern
        return key.bytes
    }

    public static func decode(_ bytes: [UInt8]) -> DomainRuleKey? {
        guard let key = nf_domain_rule_key.load(bytes), key.slot <= 1 else { return nil }
        return DomainRuleKey(podID: key.pod_id, slot: UInt8(key.slot), pattern: key.pattern)
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

    public static let keySize = nf_domain_grant_key.size
    public static let valueSize = nf_domain_grant.size

    public static func key(podID: UInt32, address: IPAddress) -> [UInt8] {
        var key = nf_domain_grant_key()
        key.pod_id = podID
        address.store(in: &key.address)
        return key.bytes
    }

    public var key: [UInt8] { Self.key(podID: podID, address: address) }

    /// The pod id of a grant's key where a batch read put it; nil for bytes of another layout.
    public static func podID(ofKey key: UnsafeRawBufferPointer) -> UInt32? {
        nf_domain_grant_key.load(key)?.pod_id
    }

    /// The value; the caller keeps `patterns.count <= patternsPerGrant`.
    public func encodeValue() -> [UInt8] {
        var grant = nf_domain_grant()
        let kept = patterns.prefix(DatapathLimits.patternsPerGrant)
        grant.count = UInt32(kept.count)
        ABIArray.set(&grant.patterns, to: kept.map { entry in
            var raw = nf_domain_grant_pattern()
            raw.pattern = entry.pattern
            raw.expires_ns = entry.expiresNanoseconds
            return raw
        })
        return grant.bytes
    }

    /// Decodes one entry; nil for bytes of another layout.
    public static func decode(key: [UInt8], value: [UInt8]) -> DomainGrant? {
        guard let key = nf_domain_grant_key.load(key), let grant = nf_domain_grant.load(value),
              grant.count <= DatapathLimits.patternsPerGrant else { return nil }
        let patterns = ABIArray.elements(grant.patterns, of: nf_domain_grant_pattern.self).prefix(Int(grant.count))
            .map { Pattern(pattern: $0.pattern, expiresNanoseconds: $0.expires_ns) }
        return DomainGrant(podID: key.pod_id, address: IPAddress(field: key.address), patterns: patterns)
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

    public static let size = nf_dns_proxy.size

    public func encode() -> [UInt8] {
        var proxy = nf_dns_proxy()
        proxy.pid = pid
        proxy.port = port
        proxy.started_ns = startedNanoseconds
        return proxy.bytes
    }

    public static func decode(_ bytes: [UInt8]) -> DNSProxyRecord? {
        nf_dns_proxy.load(bytes).map { DNSProxyRecord(pid: $0.pid, port: $0.port, startedNanoseconds: $0.started_ns) }
    }
}
