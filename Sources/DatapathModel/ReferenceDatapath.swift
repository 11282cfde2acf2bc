/// The reference for `enforce()` in bpf/datapath.bpf.c: pods, their policies,
/// conntrack and fragments as Swift values, and the same steps in the same
/// order. Tests feed it every packet they feed the kernel and compare.
public struct ReferenceDatapath: Sendable {
    /// A pod as the reference knows it: record plus compiled policy per direction
    /// (a direction without an entry has no trie).
    public struct Pod: Sendable {
        public var record: PodRecord
        public var policies: [Direction: CompiledPolicy]
        /// The port rules of each domain pattern of the pod's egress, by pattern id.
        public var domainRules: [UInt64: [PortRule]]
        public init(record: PodRecord, policies: [Direction: CompiledPolicy], domainRules: [UInt64: [PortRule]] = [:]) {
            self.record = record
            self.policies = policies
            self.domainRules = domainRules
        }
    }

    struct GrantKey: Hashable {
        let podID: UInt32
        let address: IPAddress
    }

    struct ConntrackKey: Hashable {
        let ifindex: UInt32
        let family: AddressFamily
        let flow: FlowTuple
    }

    struct ConntrackEntry {
        /// The pod whose flow it is: an entry a pod detached from the interface left is no other pod's.
        let podID: UInt32
        var revision: UInt32
        var decision: Decision
        let direction: Direction
    }

    struct FragmentKey: Hashable {
        let ifindex: UInt32
        let id: UInt32
        let family: AddressFamily
        let protocolNumber: UInt8
        let source: IPAddress
        let destination: IPAddress
    }

    struct FragmentEntry {
        let decision: Decision
        let sourcePort: UInt16
        let destinationPort: UInt16
    }

    /// What the datapath did with one packet.
    public struct Outcome: Equatable, Sendable, CustomStringConvertible {
        /// Whether the packet went through (TC_ACT_OK) or was dropped (TC_ACT_SHOT).
        public let passed: Bool
        /// The decision and why, for packets that produce an event; nil on the
        /// fast path (conntrack hit) and for packets not judged at all.
        public let decision: Decision?
        public let reason: Reason?
        /// What audit objects would have decided, when it differs from `decision`: the audit event.
        public let audit: Decision?

        public init(passed: Bool, decision: Decision?, reason: Reason?, audit: Decision? = nil) {
            self.passed = passed
            self.decision = decision
            self.reason = reason
            self.audit = audit
        }

        public var description: String {
            let action = passed ? "pass" : "drop"
            guard let decision, let reason else { return action }
            return "\(action) (\(decision), \(reason))" + (audit.map { "; with audit objects: \($0)" } ?? "")
        }

        static let untouched = Outcome(passed: true, decision: nil, reason: nil)
    }

    public var pods: [UInt32: Pod] = [:]
    var grants: [GrantKey: [DomainGrant.Pattern]] = [:]
    /// Addresses DNS proxies serve.
    public var dnsProxies: Set<IPAddress> = []
    /// CLOCK_MONOTONIC of a DNS proxy's last heartbeat.
    public var dnsHeartbeat: UInt64 = 0
    /// CLOCK_MONOTONIC as the datapath reads it when it compares a grant's expiry.
    public var now: UInt64 = 0
    var conntrack: [ConntrackKey: ConntrackEntry] = [:]
    var fragments: [FragmentKey: FragmentEntry] = [:]

    public init() {}

    /// What the DNS proxy writes: `grant` replaces the pod's grant for its address.
    public mutating func write(_ grant: DomainGrant) {
        grants[GrantKey(podID: grant.podID, address: grant.address)] = grant.patterns
    }

    /// One packet on the host veth `ifindex` in `direction` (pod's view).
    /// What `conntrack flush` does on the interface `ifindex`: forgets its flows.
    public mutating func flushConntrack(ifindex: UInt32) {
        conntrack = conntrack.filter { $0.key.ifindex != ifindex }
    }

    public mutating func process(_ frame: [UInt8], ifindex: UInt32, direction: Direction) -> Outcome {
        guard let pod = pods[ifindex] else { return .untouched }
        let packet: ParsedPacket
        switch PacketParser.parse(frame) {
        case .pass: return .untouched
        case .unparseable:
            guard enforced(pod, direction) else { return .untouched }
            return Outcome(passed: false, decision: Decision(verdict: .deny, tier: .none, ruleID: 0), reason: .unparseable)
        case .packet(let parsed): packet = parsed
        }

        if packet.laterFragment {
            if let first = fragments[fragmentKey(ifindex, packet)] {
                return finish(packet, first.decision, .fragment, ifindex: ifindex)
            }
            guard enforced(pod, direction) else { return .untouched }
            return Outcome(passed: false, decision: Decision(verdict: .deny, tier: .none, ruleID: 0), reason: .noFirstFragment)
        }

        for flow in [packet.flow, packet.flow.reversed] {
            let key = ConntrackKey(ifindex: ifindex, family: packet.family, flow: flow)
            guard var entry = conntrack[key], entry.podID == pod.record.podID else { continue }
            if entry.revision == pod.record.revision {
                if packet.firstFragment { remember(packet, .trackedFlow, ifindex: ifindex) }
                return Outcome(passed: true, decision: nil, reason: nil)
            }
            let (again, _, _) = decide(pod, entry.direction, family: packet.family, peer: key.flow.peer(entry.direction),
                                       protocolNumber: key.flow.protocolNumber, port: key.flow.destinationPort, established: true)
            guard again.verdict == .allow else {
                conntrack[key] = nil
                break
            }
            entry.revision = pod.record.revision
            entry.decision = again
            conntrack[key] = entry
            return finish(packet, again, .reevaluated, ifindex: ifindex)
        }

        if let quoted = packet.quoted,
           [quoted, quoted.reversed].contains(where: { conntrack[ConntrackKey(ifindex: ifindex, family: packet.family, flow: $0)]?.podID == pod.record.podID }) {
            return finish(packet, Decision(verdict: .allow, tier: .none, ruleID: 0), .related, ifindex: ifindex)
        }

        let (decision, reason, audit) = decide(pod, direction, family: packet.family, peer: packet.flow.peer(direction),
                                               protocolNumber: packet.flow.protocolNumber, port: packet.flow.destinationPort, established: false)
        if decision.verdict == .allow {
            conntrack[ConntrackKey(ifindex: ifindex, family: packet.family, flow: packet.flow)] =
                ConntrackEntry(podID: pod.record.podID, revision: pod.record.revision, decision: decision, direction: direction)
        }
        let outcome = finish(packet, decision, reason, ifindex: ifindex)
        guard let audit, audit.verdict != decision.verdict else { return outcome }
        return Outcome(passed: outcome.passed, decision: outcome.decision, reason: outcome.reason, audit: audit)
    }

    /// How the pod on `ifindex` would decide a new flow of `direction` to or from `peer` (a packet's
    /// first, without conntrack): the decision and why, and the one with audit objects enforced.
    public func decideNewFlow(ifindex: UInt32, direction: Direction, family: AddressFamily, peer: IPAddress, protocolNumber: UInt8,
                              port: UInt16) -> (decision: Decision, reason: Reason, audit: Decision?)? {
        pods[ifindex].map { decide($0, direction, family: family, peer: peer, protocolNumber: protocolNumber, port: port, established: false) }
    }

    /// DNS of a pod with domain rules to a proxy or elsewhere, else the tiers over the
    /// peer's trie entry and the rules of the patterns the pod's grant for the peer names.
    private func decide(_ pod: Pod, _ direction: Direction, family: AddressFamily, peer: IPAddress, protocolNumber: UInt8, port: UInt16,
                        established: Bool) -> (Decision, Reason, Decision?) {
        let domains = direction == .egress && pod.record.hasDomainRules
        if domains && port == DatapathLimits.dnsPort && [IPProtocolNumber.udp, IPProtocolNumber.tcp].contains(protocolNumber) {
            let proxy = dnsProxies.contains(peer)
            return (Decision(verdict: proxy ? .allow : .deny, tier: .none, ruleID: 0), proxy ? .dnsProxy : .dnsBypass, nil)
        }
        let granted = domains ? grants[GrantKey(podID: pod.record.podID, address: peer)] ?? [] : []
        let proxyAlive = dnsHeartbeat &+ DatapathLimits.dnsHeartbeatTimeoutNanoseconds > now
        let domainRules = granted.compactMap { grant in
            pod.domainRules[grant.pattern].map { DomainRuleMatch(rules: $0, live: established || (proxyAlive && grant.expiresNanoseconds > now)) }
        }
        let (enforced, audit) = PolicyEvaluator.decide(pod.policies[direction], state: pod.record.states[direction, default: .defaultAllow],
                                                       auditState: pod.record.auditStates?[direction, default: .defaultAllow], peer: peer,
                                                       family: family, protocolNumber: protocolNumber, port: port, domainRules: domainRules)
        return (enforced.decision, enforced.reason == .domainExpired && !proxyAlive ? .dnsProxyDown : enforced.reason, audit?.decision)
    }

    private func enforced(_ pod: Pod, _ direction: Direction) -> Bool {
        pod.record.states[direction, default: .defaultAllow] != .defaultAllow
            || (pod.policies[direction] != nil && !pod.record.auditOnlyTries.contains(direction))
    }

    private func fragmentKey(_ ifindex: UInt32, _ packet: ParsedPacket) -> FragmentKey {
        FragmentKey(ifindex: ifindex, id: packet.fragmentID, family: packet.family, protocolNumber: packet.flow.protocolNumber,
                    source: packet.flow.source, destination: packet.flow.destination)
    }

    private mutating func remember(_ packet: ParsedPacket, _ decision: Decision, ifindex: UInt32) {
        fragments[fragmentKey(ifindex, packet)] = FragmentEntry(
            decision: decision, sourcePort: packet.flow.sourcePort, destinationPort: packet.flow.destinationPort)
    }

    private mutating func finish(_ packet: ParsedPacket, _ decision: Decision, _ reason: Reason, ifindex: UInt32) -> Outcome {
        if packet.firstFragment { remember(packet, decision, ifindex: ifindex) }
        return Outcome(passed: decision.verdict == .allow, decision: decision, reason: reason)
    }
}

extension Decision {
    /// What the conntrack fast path passes on to later fragments: allowed, no tier.
    static let trackedFlow = Decision(verdict: .allow, tier: .none, ruleID: 0)
}
