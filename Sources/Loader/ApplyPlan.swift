import Datapath
import DatapathModel
import PolicyInput

/// A flow to try before and after a change: `apply --dry-run --probe IP:PORT/PROTO`.
public struct ProbeFlow: Sendable, CustomStringConvertible {
    public let peer: IPAddress
    public let port: UInt16
    public let protocolNumber: UInt8

    public init(peer: IPAddress, port: UInt16, protocolNumber: UInt8) {
        self.peer = peer
        self.port = port
        self.protocolNumber = protocolNumber
    }

    /// `198.18.0.1:80/tcp`, `[2001:db8::1]:443/tcp`, `198.18.0.1/icmp`; nil for anything else.
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
        guard parts.count == 2, let number = ProtocolName.number(parts[1]) else { return nil }
        var host = parts[0], port: UInt16 = 0
        if IPProtocolNumber.carriesEchoIdentifier(number) {
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        } else {
            guard let colon = host.lastIndex(of: ":"), let parsed = UInt16(host[host.index(after: colon)...]) else { return nil }
            port = parsed
            host = String(host[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        }
        guard let peer = IPAddress(host) else { return nil }
        self.init(peer: peer, port: port, protocolNumber: number)
    }

    public var description: String {
        let host = peer.family == .ipv6 ? "[\(peer)]" : peer.description
        return IPProtocolNumber.carriesEchoIdentifier(protocolNumber) ? "\(host)/\(ProtocolName.of(protocolNumber))"
            : "\(host):\(port)/\(ProtocolName.of(protocolNumber))"
    }
}

/// What `apply` would change, pod by pod and direction by direction, computed
/// exactly as `apply` computes it and written nowhere: `apply --dry-run`. Its
/// field names are the `-o json` interface.
public struct ApplyPlan: Encodable, Sendable {
    public struct Probe: Encodable, Sendable {
        public let flow: String
        /// `allow by network-policy (shop/web ingress[0])`.
        public let before: String
        public let after: String
        public var changes: Bool { before != after }

        enum CodingKeys: String, CodingKey { case flow, before, after, changes }
        public func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(flow, forKey: .flow)
            try container.encode(before, forKey: .before)
            try container.encode(after, forKey: .after)
            try container.encode(changes, forKey: .changes)
        }
    }

    public struct Change: Encodable, Sendable {
        public let pod: PodReference
        public let direction: String
        public let stateBefore: String
        public let stateAfter: String
        public let auditStateBefore: String?
        public let auditStateAfter: String?
        public let prefixesBefore: Int
        public let prefixesAfter: Int
        public let prefixesAdded: [String]
        public let prefixesRemoved: [String]
        /// Rules as words: `198.18.0.0/16 tcp 80 accept network-policy by shop/web ingress[0]`.
        public let rulesAdded: [String]
        public let rulesRemoved: [String]
        /// The fullest prefix's rules after the change, of the `DatapathLimits.rulesPerPrefix` one holds; prefixes, of `prefixesPerPod`.
        public let largestRuleSet: Int
        public let ruleCapacity: Int
        public let prefixCapacity: Int
        public let probes: [Probe]

        public var changes: Bool {
            stateBefore != stateAfter || auditStateBefore != auditStateAfter || !prefixesAdded.isEmpty || !prefixesRemoved.isEmpty
                || !rulesAdded.isEmpty || !rulesRemoved.isEmpty
        }
    }

    public let objects: [String]
    public let changes: [Change]
    public let warnings: [String]
}

extension Loader {
    /// What applying `input` would change (nothing is written, no lock taken but the shared one):
    /// the same validation, storage indexes and compilation as `apply`, compared with what each
    /// touched pod enforces now; `probes` decided before and after.
    public func plan(_ input: ParsedPolicies, probes: [ProbeFlow] = [], waitingUpTo timeout: Double = defaultLockTimeout) throws -> ApplyPlan {
        let held = try readLock(waitingUpTo: timeout)
        defer { withExtendedLifetime(held) {} }
        let versions = try state.allVersions()
        let current = LoaderState.live(versions)
        let replacedKeys = Set(input.objects.map(\.key))
        let indexes = try state.freeIndexes(count: input.objects.count)
        let next = current.filter { !replacedKeys.contains($0.object.key) }.map { (index: $0.index, object: $0.object) }
            + zip(indexes, input.objects).map { (index: $0.0, object: $0.1) }
        let touched = Set((input.objects + current.filter { replacedKeys.contains($0.object.key) }.map(\.object)).flatMap(\.pods).map(\.pod))
        let policies = try compile(podsNamed: touched, objects: next)

        // Rule ids change with an object's version: rules are compared by what names them.
        var names: [UInt32: String] = [:]
        for stored in current { names[stored.index] = stored.object.policyRef }
        for (index, object) in zip(indexes, input.objects) { names[index] = object.policyRef }
        func words(_ prefix: IPPrefix, _ rule: PortRule) -> String {
            let id = RuleID(rawValue: rule.ruleID)
            let by = id.map { "\(names[$0.objectIndex] ?? "object \($0.objectIndex)") \($0.direction)[\($0.rule)]" } ?? "rule id \(rule.ruleID)"
            let ports = rule.portStart == 0 ? "any port" : rule.portStart == rule.portEnd ? "\(rule.portStart)" : "\(rule.portStart)-\(rule.portEnd)"
            let proto = rule.protocolNumber == IPProtocolNumber.any ? "any" : ProtocolName.of(rule.protocolNumber)
            return "\(prefix) \(proto) \(ports) \(rule.action) \(rule.tier)\(rule.priority == 0 ? "" : " priority \(rule.priority)")"
                + "\(rule.audit ? " (audit)" : "") by \(by)"
        }
        func decision(_ decided: (decision: Decision, reason: Reason, audit: Decision?)?) -> String {
            guard let (decision, reason, _) = decided else { return "-" }
            let by = RuleID(rawValue: decision.ruleID).map { "\(names[$0.objectIndex] ?? "object \($0.objectIndex)") \($0.direction)[\($0.rule)]" }
            return "\(decision.verdict) by \(decision.tier)" + (by.map { " (\($0))" } ?? "") + (reason == .policy ? "" : ", \(reason)")
        }

        var changes: [ApplyPlan.Change] = []
        for (_, pod, policy) in policies {
            let live = try datapath.livePolicy(ifindex: pod.ifindex)
            var before = ReferenceDatapath(), after = ReferenceDatapath()
            if let live { before.pods[pod.ifindex] = ReferenceDatapath.Pod(record: live.record, policies: live.policies, domainRules: live.domainRules) }
            let record = PodRecord(podID: live?.record.podID ?? 0, states: policy.states, hasDomainRules: !policy.domainRules.isEmpty,
                                   auditStates: policy.auditStates)
            after.pods[pod.ifindex] = ReferenceDatapath.Pod(record: record, policies: policy.policies, domainRules: policy.domainRules)
            for direction in Direction.allCases {
                let old: [IPPrefix: [PortRule]] = live?.policies[direction]?.entries ?? [:]
                let new: [IPPrefix: [PortRule]] = policy.policies[direction]?.entries ?? [:]
                let oldRules = Set(old.flatMap { prefix, rules in rules.map { words(prefix, $0) } })
                let newRules = Set(new.flatMap { prefix, rules in rules.map { words(prefix, $0) } })
                let probed = probes.map { probe in
                    let ask = { (reference: ReferenceDatapath) in
                        reference.decideNewFlow(ifindex: pod.ifindex, direction: direction, family: probe.peer.family, peer: probe.peer,
                                                protocolNumber: probe.protocolNumber, port: probe.port)
                    }
                    return ApplyPlan.Probe(flow: "\(direction == .ingress ? "from" : "to") \(probe)", before: decision(ask(before)), after: decision(ask(after)))
                }
                changes.append(ApplyPlan.Change(
                    pod: pod.pod, direction: direction.description,
                    stateBefore: live.map { $0.record.states[direction, default: .defaultAllow].description } ?? "not enforced yet",
                    stateAfter: policy.states[direction, default: .defaultAllow].description,
                    auditStateBefore: live?.record.auditStates?[direction].map(\.description),
                    auditStateAfter: policy.auditStates?[direction].map(\.description),
                    prefixesBefore: old.count, prefixesAfter: new.count,
                    prefixesAdded: Set(new.keys).subtracting(old.keys).sorted().map(\.description),
                    prefixesRemoved: Set(old.keys).subtracting(new.keys).sorted().map(\.description),
                    rulesAdded: newRules.subtracting(oldRules).sorted(), rulesRemoved: oldRules.subtracting(newRules).sorted(),
                    largestRuleSet: new.values.map(\.count).max() ?? 0, ruleCapacity: DatapathLimits.rulesPerPrefix,
                    prefixCapacity: DatapathLimits.prefixesPerPod, probes: probed))
            }
        }
        return ApplyPlan(objects: input.objects.map(\.key.description), changes: changes, warnings: input.warnings)
    }
}
