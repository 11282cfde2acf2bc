/// A port range of a rule: a protocol and one port, a range, or every port.
public struct PortRange: Hashable, Sendable {
    public var protocolNumber: UInt8
    /// 0: every port.
    public var start: UInt16
    public var end: UInt16

    public init(protocolNumber: UInt8, start: UInt16 = 0, end: UInt16? = nil) {
        self.protocolNumber = protocolNumber
        self.start = start
        self.end = end ?? start
    }

    /// Every protocol, every port: a rule that names no ports.
    public static let everything = PortRange(protocolNumber: IPProtocolNumber.any)
}

/// One peer block of a rule, resolved: what the compiler takes for one pod and direction.
public struct PolicyRule: Hashable, Sendable {
    public var ruleID: UInt32
    public var tier: Tier
    public var priority: UInt16
    public var action: RuleAction
    /// The peers the rule is about.
    public var peer: IPPrefix
    /// Holes in `peer` the rule does not apply to (outside `peer` they mean nothing).
    public var except: [IPPrefix]
    /// Empty: every protocol and port.
    public var ports: [PortRange]
    /// A rule of an audit object: it says what would be decided and decides nothing.
    public var audit: Bool

    public init(ruleID: UInt32, peer: IPPrefix, except: [IPPrefix] = [], ports: [PortRange] = [],
                tier: Tier = .networkPolicy, priority: UInt16 = 0, action: RuleAction = .accept, audit: Bool = false) {
        self.ruleID = ruleID
        self.peer = peer
        self.except = except
        self.ports = ports
        self.tier = tier
        self.priority = priority
        self.action = action
        self.audit = audit
    }

    var portRules: [PortRule] { PortRule.expanding(ports, ruleID: ruleID, tier: tier, priority: priority, action: action, audit: audit) }
}

extension PortRule {
    /// One port rule per port range of a rule (`ports` empty: every protocol and port).
    public static func expanding(_ ports: [PortRange], ruleID: UInt32, tier: Tier, priority: UInt16, action: RuleAction,
                                 audit: Bool = false) -> [PortRule] {
        (ports.isEmpty ? [.everything] : ports).map {
            PortRule(ruleID: ruleID, protocolNumber: $0.protocolNumber, portStart: $0.start, portEnd: $0.end,
                     tier: tier, priority: priority, action: action, audit: audit)
        }
    }
}

/// A pod's trie for one direction: every prefix with every rule that applies to
/// peers in it, so the longest match alone decides.
public struct CompiledPolicy: Equatable, Sendable {
    public let entries: [IPPrefix: [PortRule]]
    /// What the trie holds, as a content address: pods whose policies have the same digest share one trie.
    public let digest: PolicyDigest

    public init(entries: [IPPrefix: [PortRule]] = [:]) {
        self.entries = entries
        digest = PolicyDigest(of: entries)
    }

    /// Equal digests are equal entries (SHA-256): one comparison instead of a walk.
    public static func == (lhs: CompiledPolicy, rhs: CompiledPolicy) -> Bool { lhs.digest == rhs.digest }

    /// The rules for `address` of `family`: those of the longest prefix of that
    /// family containing it (the LPM lookup). Without a family, the address's own.
    public func rules(for address: IPAddress, family: AddressFamily? = nil) -> [PortRule]? {
        let family = family ?? address.family
        let lengths = Set(entries.keys.filter { $0.family == family }.map(\.length)).sorted(by: >)
        for length in lengths {
            if let rules = entries[IPPrefix(address: address, length: length, family: family)] { return rules }
        }
        return nil
    }
}

/// SHA-256 of a trie's entries in canonical order: each prefix by `IPPrefix` order, as its
/// trie key (`nf_lpm_key`), then its rule count (32 bits, little-endian) and each rule as
/// `nf_port_rule`. Cryptographic because a pod's own objects decide its entries: a pod must
/// not be able to make its policy collide with another pod's and be given that pod's trie.
public struct PolicyDigest: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        self.bytes = bytes
    }

    public init(of entries: [IPPrefix: [PortRule]]) {
        var hasher = SHA256()
        var buffer: [UInt8] = []
        buffer.reserveCapacity(64 * 1024)
        for prefix in entries.keys.sorted() {
            let rules = entries[prefix] ?? []
            buffer += LPMKeyCodec.encode(prefix)
            withUnsafeBytes(of: UInt32(rules.count).littleEndian) { buffer += $0 }
            for rule in rules { withUnsafeBytes(of: rule.abi) { buffer += $0 } }
            if buffer.count >= 60 * 1024 {
                hasher.update(buffer)
                buffer.removeAll(keepingCapacity: true)
            }
        }
        hasher.update(buffer)
        bytes = hasher.finish()
    }

    /// In hex, as `sha256sum` prints it.
    public var description: String { bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() }
}

/// Why a policy does not fit the datapath. Never truncated silently.
public enum CapacityError: Error, Equatable, CustomStringConvertible {
    case tooManyRules(prefix: IPPrefix, count: Int)
    case tooManyPrefixes(count: Int)

    public var description: String {
        switch self {
        case .tooManyRules(let prefix, let count):
            "\(count) port rules apply to \(prefix), more than the \(DatapathLimits.rulesPerPrefix) one prefix can hold"
        case .tooManyPrefixes(let count):
            "\(count) prefixes, more than the \(DatapathLimits.prefixesPerPod) one pod can hold per direction"
        }
    }
}

/// Turns rules into trie entries. Longest-prefix match returns one entry, so
/// each prefix carries the rules of every prefix that encloses it, minus the
/// rules whose except holes enclose it. Prefixes nest or are disjoint, so the
/// longest prefix holding an address has exactly the rules that apply to it.
public enum PolicyCompiler {
    public static func compile(_ rules: [PolicyRule]) throws(CapacityError) -> CompiledPolicy {
        var starts: [IPPrefix: [Int]] = [:]
        var holes: [IPPrefix: [Int]] = [:]
        for (index, rule) in rules.enumerated() {
            starts[rule.peer, default: []].append(index)
            for hole in rule.except where rule.peer.contains(hole) && hole != rule.peer {
                holes[hole, default: []].append(index)
            }
        }
        let prefixes = Set(starts.keys).union(holes.keys)
        if prefixes.count > DatapathLimits.prefixesPerPod { throw .tooManyPrefixes(count: prefixes.count) }
        let lengths = Set(prefixes.map(\.length)).sorted()

        var entries: [IPPrefix: [PortRule]] = [:]
        for prefix in prefixes {
            var active = Set<Int>()
            for length in lengths where length <= prefix.length {
                let enclosing = prefix.truncated(to: length)
                active.formUnion(starts[enclosing] ?? [])
                active.subtract(holes[enclosing] ?? [])
            }
            let portRules = ruleSet(active.flatMap { rules[$0].portRules })
            if portRules.count > DatapathLimits.rulesPerPrefix {
                throw .tooManyRules(prefix: prefix, count: portRules.count)
            }
            entries[prefix] = portRules
        }
        return CompiledPolicy(entries: entries)
    }

    /// Port rules as one trie or domain entry holds them: each once, in `ruleOrder`.
    public static func ruleSet(_ rules: [PortRule]) -> [PortRule] { Set(rules).sorted(by: ruleOrder) }

    /// A stable order: tier, priority, action, rule, protocol, ports.
    static func ruleOrder(_ a: PortRule, _ b: PortRule) -> Bool {
        let left = [UInt64(a.tier.rawValue), UInt64(a.priority), UInt64(a.action.rawValue), UInt64(a.ruleID),
                    UInt64(a.protocolNumber), UInt64(a.portStart), UInt64(a.portEnd)]
        let right = [UInt64(b.tier.rawValue), UInt64(b.priority), UInt64(b.action.rawValue), UInt64(b.ruleID),
                     UInt64(b.protocolNumber), UInt64(b.portStart), UInt64(b.portEnd)]
        return left.lexicographicallyPrecedes(right)
    }
}

/// What decided a flow.
public struct Decision: Equatable, Sendable, CustomStringConvertible {
    public var verdict: Verdict
    public var tier: Tier
    public var ruleID: UInt32

    public init(verdict: Verdict, tier: Tier, ruleID: UInt32) {
        self.verdict = verdict
        self.tier = tier
        self.ruleID = ruleID
    }

    public var description: String { "\(verdict) by \(tier) rule \(ruleID)" }
}

/// The rules one domain pattern of a pod brings to a decision: its grant for the
/// peer is unexpired (or the flow established), or only names the rule a deny is
/// attributed to.
public struct DomainRuleMatch: Sendable {
    public var rules: [PortRule]
    public var live: Bool

    public init(rules: [PortRule], live: Bool) {
        self.rules = rules
        self.live = live
    }
}

/// The reference for `nf_decide` in bpf/datapath.bpf.c: the same procedure
/// over the same entries, in Swift.
public enum PolicyEvaluator {
    /// Admin, then NetworkPolicy when the pod is selected, then Baseline, then
    /// the pod's default. Within a cluster tier the lowest priority wins and,
    /// at equal priority, Deny > Accept > Pass. The rules are the peer's trie
    /// entry's and those of `domainRules`; audit rules are left out.
    /// A prefix of one family never matches a peer of the other: `family` is the
    /// packet's (without one, the peer address's own).
    public static func decide(_ policy: CompiledPolicy?, state: PodState, peer: IPAddress, family: AddressFamily? = nil,
                              protocolNumber: UInt8, port: UInt16,
                              domainRules: [DomainRuleMatch] = []) -> (decision: Decision, reason: Reason) {
        decide(policy, state: state, auditState: nil, peer: peer, family: family, protocolNumber: protocolNumber, port: port,
               domainRules: domainRules).enforced
    }

    /// The decision, and with `auditState` (audit objects select the pod) the decision with
    /// audit objects enforced: every rule counts, and the pod is in `auditState`.
    public static func decide(_ policy: CompiledPolicy?, state: PodState, auditState: PodState?, peer: IPAddress,
                              family: AddressFamily? = nil, protocolNumber: UInt8, port: UInt16, domainRules: [DomainRuleMatch] = [])
        -> (enforced: (decision: Decision, reason: Reason), audit: (decision: Decision, reason: Reason)?) {
        var enforced = Best(), audited = Best()
        var expired: UInt32?
        let sets = [DomainRuleMatch(rules: policy?.rules(for: peer, family: family) ?? [], live: true)] + domainRules
        for set in sets {
            for rule in set.rules where rule.matches(protocolNumber: protocolNumber, port: port) {
                guard set.live else {
                    if rule.tier == .networkPolicy && expired == nil && !rule.audit { expired = rule.ruleID }
                    continue
                }
                if auditState != nil { audited.fold(rule) }
                if !rule.audit { enforced.fold(rule) }
            }
        }
        return (enforced.decide(state: state, expired: expired), auditState.map { audited.decide(state: $0, expired: expired) })
    }

    /// The best rule of each tier so far, as nf_decide's accumulators hold them.
    struct Best {
        var admin: (score: UInt32, rule: UInt32)?
        var baseline: (score: UInt32, rule: UInt32)?
        var networkPolicy: UInt32?

        mutating func fold(_ rule: PortRule) {
            let score = UInt32(rule.priority) * 4 + UInt32(rule.action.rawValue)
            switch rule.tier {
            case .admin where score < admin?.score ?? .max: admin = (score, rule.ruleID)
            case .baseline where score < baseline?.score ?? .max: baseline = (score, rule.ruleID)
            case .networkPolicy where networkPolicy == nil: networkPolicy = rule.ruleID
            default: break
            }
        }

        func decide(state: PodState, expired: UInt32?) -> (decision: Decision, reason: Reason) {
            func decided(_ best: (score: UInt32, rule: UInt32), _ tier: Tier) -> (Decision, Reason) {
                (Decision(verdict: best.score & 3 == UInt32(RuleAction.accept.rawValue) ? .allow : .deny, tier: tier, ruleID: best.rule), .policy)
            }
            if let admin, admin.score & 3 != UInt32(RuleAction.pass.rawValue) { return decided(admin, .admin) }
            if state == .policiesApplied {
                if let networkPolicy { return (Decision(verdict: .allow, tier: .networkPolicy, ruleID: networkPolicy), .policy) }
                if let expired { return (Decision(verdict: .deny, tier: .networkPolicy, ruleID: expired), .domainExpired) }
                return (Decision(verdict: .deny, tier: .networkPolicy, ruleID: 0), .policy)
            }
            if let baseline, baseline.score & 3 != UInt32(RuleAction.pass.rawValue) { return decided(baseline, .baseline) }
            return (Decision(verdict: state == .defaultDeny ? .deny : .allow, tier: .podDefault, ruleID: 0), .policy)
        }
    }
}
