import BPFKit
import Datapath
import DatapathModel
import Foundation
import HostKit
import PolicyInput

/// A flow to explain: the pod, the direction (its view), the peer, and the
/// protocol and port its rules match (the destination port of the first packet).
public struct FlowQuestion: Sendable {
    public let pod: PodReference
    public let direction: Direction
    public let peer: IPAddress
    public let protocolNumber: UInt8
    /// The port the rules match: the pod's for ingress, the peer's for egress (0 for ICMP).
    public let port: UInt16
    /// The source port of the first packet (ingress: the peer's), when known.
    public let sourcePort: UInt16?

    public init(pod: PodReference, direction: Direction, peer: IPAddress, protocolNumber: UInt8, port: UInt16, sourcePort: UInt16? = nil) {
        self.pod = pod
        self.direction = direction
        self.peer = peer
        self.protocolNumber = protocolNumber
        self.port = port
        self.sourcePort = sourcePort
    }
}

/// How the datapath decides a new flow of one pod, tier by tier, from the live
/// state; and the loaded program's own answer for the same packet. Its field
/// names are the `policy explain -o json` interface.
public struct PolicyExplanation: Encodable, Sendable {
    public struct Rule: Encodable, Sendable {
        /// The policy the rule belongs to (`namespace/name` of a PolicyEndpoint's policyRef, a cluster policy's name).
        public let policy: String?
        /// Its index in the object's ingress or egress list.
        public let rule: Int?
        public let ruleID: UInt32
        public let tier: String
        public let priority: UInt16
        public let action: String
        public let proto: String
        public let ports: String
        /// A rule of an audit object: it decides nothing.
        public let audit: Bool
        /// It matches the flow's protocol and port.
        public let matches: Bool
    }

    public struct Grant: Encodable, Sendable {
        public let pattern: String
        /// Seconds until it expires (negative: expired that long ago).
        public let expiresInSeconds: Double
        /// It counts for a new flow now (unexpired, and a DNS proxy alive).
        public let live: Bool
        public let rules: [Rule]
    }

    public struct Verdict: Encodable, Sendable, Equatable {
        public let verdict: String
        public let tier: String
        public let ruleID: UInt32
        public let reason: String
        /// The policy and rule the rule id stands for.
        public let policy: String?
        public let rule: Int?
    }

    public struct Tracked: Encodable, Sendable {
        /// `current`: an entry of this revision passes the flow before policy is consulted;
        /// `stale`: it is decided again on its next packet.
        public let state: String
        public let source: String
        public let destination: String
        public let policy: String?
    }

    public struct Kernel: Encodable, Sendable {
        public let program: String
        public let programID: UInt32
        public let decision: Verdict?
        public let auditDecision: Verdict?
        /// The program's answer is the reference's.
        public let agrees: Bool
    }

    public let pod: PodReference
    public let podID: UInt32
    public let interface: String
    public let ifindex: UInt32
    public let revision: UInt32
    public let slot: UInt8
    public let direction: String
    /// The pod's state in the direction (`policies-applied`, `default-allow`, `default-deny`).
    public let state: String
    /// With audit objects enforced, when any select the pod.
    public let auditState: String?
    /// The policies whose PolicyEndpoints isolate the pod in the direction.
    public let isolatedBy: [String]
    public let peer: String
    public let proto: String
    public let port: UInt16
    /// The longest prefix of the pod's live trie that holds the peer; nil when none does (or there is no trie).
    public let prefix: String?
    public let rules: [Rule]
    public let grants: [Grant]
    /// DNS of a pod with domain rules: whether the peer is a DNS proxy.
    public let dnsProxy: Bool?
    public let decision: Verdict
    public let why: String
    public let auditDecision: Verdict?
    public let auditWhy: String?
    /// Established flows of this peer on the pod's interface that would pass before policy.
    public let conntrack: [Tracked]
    public let kernel: Kernel?
}

extension Loader {
    /// Explains how the pod decides `question` as a new flow, from the live state read now,
    /// and (`confirm`) has the loaded program judge the same packet with the explain marker
    /// (it changes nothing: no conntrack, counter, hit or event) to compare.
    public func explain(_ question: FlowQuestion, confirm: Bool = true) throws -> PolicyExplanation {
        guard let (podID, registration) = try state.pod(question.pod), let record = try datapath.pod(ifindex: registration.ifindex) else {
            throw LoaderError.unknownPod(question.pod)
        }
        let objects = try state.objectSummaries()
        let attribution = try attribution(objects: objects)
        let direction = question.direction
        let family = question.peer.family
        let entry = try datapath.liveTrieEntry(record, direction: direction, peer: question.peer, family: family)
        let hasTrie = try datapath.trieID(record, direction: direction) != nil
        let domainRules = direction == .egress && record.hasDomainRules ? try datapath.domainRules(podID: podID, slot: record.slot) : [:]
        let grant = direction == .egress && record.hasDomainRules ? try datapath.grant(podID: podID, address: question.peer) : nil
        let now = HostClock.monotonic.nanoseconds
        let beat = try datapath.dnsHeartbeatNanoseconds()
        let proxies = Set(try datapath.registeredDNSProxies().map(\.address))

        // The reference datapath over exactly this state decides as nf_decide does.
        var reference = ReferenceDatapath()
        var policies: [Direction: CompiledPolicy] = [:]
        if let entry { policies[direction] = CompiledPolicy(entries: [entry.prefix: entry.rules]) }
        else if hasTrie { policies[direction] = CompiledPolicy() }
        reference.pods[registration.ifindex] = ReferenceDatapath.Pod(record: record, policies: policies, domainRules: domainRules)
        if let grant { reference.write(grant) }
        reference.dnsProxies = proxies
        reference.dnsHeartbeat = beat
        reference.now = now
        guard let model = reference.decideNewFlow(ifindex: registration.ifindex, direction: direction, family: family, peer: question.peer,
                                                  protocolNumber: question.protocolNumber, port: question.port) else {
            throw LoaderError.unknownPod(question.pod)
        }

        func words(_ rule: PortRule) -> PolicyExplanation.Rule {
            let named = attribution.policy(ruleID: rule.ruleID)
            return PolicyExplanation.Rule(
                policy: named?.policy, rule: named?.rule, ruleID: rule.ruleID, tier: rule.tier.description, priority: rule.priority,
                action: rule.action.description, proto: rule.protocolNumber == IPProtocolNumber.any ? "any" : ProtocolName.of(rule.protocolNumber),
                ports: rule.portStart == 0 ? "any" : rule.portStart == rule.portEnd ? "\(rule.portStart)" : "\(rule.portStart)-\(rule.portEnd)",
                audit: rule.audit, matches: rule.matches(protocolNumber: question.protocolNumber, port: question.port))
        }
        func verdict(_ decision: Decision, _ reason: Reason) -> PolicyExplanation.Verdict {
            let named = attribution.policy(ruleID: decision.ruleID)
            return PolicyExplanation.Verdict(verdict: decision.verdict.description, tier: decision.tier.description, ruleID: decision.ruleID,
                                             reason: reason.description, policy: named?.policy, rule: named?.rule)
        }
        let proxyAlive = beat != 0 && beat &+ DatapathLimits.dnsHeartbeatTimeoutNanoseconds > now
        let withRules = grant == nil ? [] : try state.objects()  // the patterns' text is in the rules
        let grants = (grant?.patterns ?? []).map { pattern in
            PolicyExplanation.Grant(pattern: DomainGrantNames.pattern(pattern.pattern, objects: withRules),
                                    expiresInSeconds: (Double(pattern.expiresNanoseconds) - Double(now)) / 1e9,
                                    live: proxyAlive && pattern.expiresNanoseconds > now,
                                    rules: (domainRules[pattern.pattern] ?? []).map(words))
        }
        let isDNS = direction == .egress && record.hasDomainRules && question.port == DatapathLimits.dnsPort
            && [IPProtocolNumber.udp, IPProtocolNumber.tcp].contains(question.protocolNumber)
        let isolating = attribution.isolatingPolicies(podID: podID, direction: direction)
        let decision = verdict(model.decision, model.reason)
        let auditDecision = model.audit.map { verdict($0, .policy) }
        let explanation = Explanation(question: question, decision: model.decision, reason: model.reason, state: record.states[direction, default: .defaultAllow],
                                      isolating: isolating, attribution: attribution, grants: grant?.patterns ?? [], proxyAlive: proxyAlive, now: now,
                                      rules: entry?.rules ?? [], domainRules: domainRules)

        var kernel: PolicyExplanation.Kernel?
        if confirm {
            let namespace = try registration.netns.isEmpty ? nil : NetworkNamespace.named(registration.netns)
            let frame = Self.probeFrame(question, podAddress: Self.podAddress(question.pod, family: family, objects: objects))
            let judged = try datapath.explain(frame, direction: direction, ifindex: registration.ifindex, in: namespace)
            let kernelDecision = judged.map { verdict($0.decision, $0.reason) }
            let kernelAudit = judged?.audit.map { verdict($0, .policy) }
            let agrees = judged?.decision == model.decision && judged?.reason == model.reason && judged?.audit == model.audit
            let program = datapath.program(for: direction)
            kernel = PolicyExplanation.Kernel(program: direction == .ingress ? "nf_to_pod" : "nf_from_pod", programID: try program.info().id,
                                              decision: kernelDecision, auditDecision: kernelAudit, agrees: agrees)
        }

        return PolicyExplanation(
            pod: question.pod, podID: podID, interface: registration.interface, ifindex: registration.ifindex, revision: record.revision,
            slot: record.slot, direction: direction.description, state: record.states[direction, default: .defaultAllow].description,
            auditState: record.auditStates?[direction].map(\.description), isolatedBy: isolating, peer: question.peer.description,
            proto: ProtocolName.of(question.protocolNumber), port: question.port, prefix: entry?.prefix.description,
            rules: (entry?.rules ?? []).map(words), grants: grants, dnsProxy: isDNS ? proxies.contains(question.peer) : nil,
            decision: decision, why: explanation.why(), auditDecision: auditDecision,
            auditWhy: model.audit.map { explanation.auditWhy($0, auditState: record.auditStates?[direction] ?? .defaultAllow) },
            conntrack: try trackedFlows(question, ifindex: registration.ifindex, attribution: attribution), kernel: kernel)
    }

    /// The pod's address of `family` as the objects selecting it give it (podSelectorEndpoints[].podIP), if any.
    static func podAddress(_ pod: PodReference, family: AddressFamily, objects: [StoredObject]) -> IPAddress? {
        objects.lazy.flatMap(\.object.pods).first { $0.pod == pod && $0.podIP?.family == family }?.podIP
    }

    /// The first packet of the flow, as the pod's host veth sees it. The decision reads only the
    /// peer's address and the port; the pod's end is its address when known (the family's
    /// unspecified address otherwise) and an ephemeral port.
    static func probeFrame(_ question: FlowQuestion, podAddress: IPAddress?) -> [UInt8] {
        let family = question.peer.family
        let pod = podAddress ?? IPAddress(family == .ipv4 ? "0.0.0.0" : "::")!
        let (source, destination) = question.direction == .ingress ? (question.peer, pod) : (pod, question.peer)
        let sourcePort = question.sourcePort ?? 40000
        let transport: PacketBuilder.Transport = switch question.protocolNumber {
        case IPProtocolNumber.tcp: .tcp(sourcePort: sourcePort, destinationPort: question.port)
        case IPProtocolNumber.udp: .udp(sourcePort: sourcePort, destinationPort: question.port)
        case IPProtocolNumber.sctp: .sctp(sourcePort: sourcePort, destinationPort: question.port)
        case IPProtocolNumber.icmp, IPProtocolNumber.icmpv6: .echo(request: true, identifier: question.port)  // the datapath keys echo by it, as a port
        default: .raw(protocolNumber: question.protocolNumber, bytes: [UInt8](repeating: 0, count: 8))
        }
        return PacketBuilder.frame(from: source, to: destination, transport)
    }

    /// Tracked flows of the pod's interface with this peer, protocol and port: they pass before policy is consulted.
    func trackedFlows(_ question: FlowQuestion, ifindex: UInt32, attribution: Attribution) throws -> [PolicyExplanation.Tracked] {
        let revisions = try liveRecords().mapValues(\.revision)
        var found: [PolicyExplanation.Tracked] = []
        try datapath.conntrack.forEachBatch { batch in
            for index in 0..<batch.count {
                guard let entry = ConntrackEntry.decode(key: batch.key(index), value: batch.value(index)), entry.ifindex == ifindex,
                      entry.protocolNumber == question.protocolNumber, entry.direction == question.direction else { continue }
                let peer = question.direction == .ingress ? entry.source : entry.destination
                guard peer.address == question.peer, entry.destination.port == question.port || IPProtocolNumber.carriesEchoIdentifier(entry.protocolNumber),
                      question.sourcePort.map({ $0 == entry.source.port }) ?? true else { continue }
                let endpoint = { (end: (address: IPAddress, port: UInt16)) in "\(end.address):\(end.port)" }
                found.append(PolicyExplanation.Tracked(state: revisions[entry.podID] == entry.revision ? "current" : "stale",
                                                       source: endpoint(entry.source), destination: endpoint(entry.destination),
                                                       policy: attribution.policy(ruleID: entry.ruleID)?.policy))
            }
        }
        return found
    }
}

/// Pattern ids back to their text, from the applied objects' domain rules.
enum DomainGrantNames {
    static func pattern(_ id: UInt64, objects: [StoredObject]) -> String {
        for stored in objects {
            for rule in stored.object.egress { if let pattern = rule.domainName, pattern.id == id { return pattern.description } }
        }
        return "pattern 0x" + String(id, radix: 16)
    }
}

/// The sentences of an explanation: why the tier that decided did, in words.
struct Explanation {
    let question: FlowQuestion
    let decision: Decision
    let reason: Reason
    let state: PodState
    let isolating: [String]
    let attribution: Attribution
    let grants: [DomainGrant.Pattern]
    let proxyAlive: Bool
    let now: UInt64
    let rules: [PortRule]
    let domainRules: [UInt64: [PortRule]]

    var flow: String {
        let port = IPProtocolNumber.carriesEchoIdentifier(question.protocolNumber) ? "" : ":\(question.port)"
        return "\(question.peer)\(port)/\(ProtocolName.of(question.protocolNumber))"
    }

    func named(_ ruleID: UInt32) -> String {
        attribution.policy(ruleID: ruleID).map { "\($0.policy) \(RuleID(rawValue: ruleID)?.direction.description ?? "")[\($0.rule)]" }
            ?? "rule id \(ruleID)"
    }

    func rule(_ ruleID: UInt32) -> PortRule? {
        (rules + domainRules.values.flatMap { $0 }).first { $0.ruleID == ruleID }
    }

    func why() -> String {
        let verb = decision.verdict == .allow ? "allows" : "denies"
        switch reason {
        case .dnsProxy: return "DNS of a pod with domain rules goes to a DNS proxy only: \(question.peer) is one"
        case .dnsBypass: return "DNS of a pod with domain rules goes to a DNS proxy only: \(question.peer) is not one, so it is dropped"
        case .domainExpired:
            let expired = grants.map { Double(now &- $0.expiresNanoseconds) / 1e9 }.filter { $0 > 0 }.min()
            return "\(named(decision.ruleID)) would allow \(flow), but the domain grant for it expired"
                + (expired.map { String(format: " %.0f s ago", $0) } ?? "") + "; nothing else allows it"
        case .dnsProxyDown:
            return "\(named(decision.ruleID)) would allow \(flow) by its domain grant, but no DNS proxy is alive: grants allow nothing (fail closed)"
        default: break
        }
        switch decision.tier {
        case .admin:
            let priority = rule(decision.ruleID).map { " priority \($0.priority)" } ?? ""
            let action = decision.verdict == .allow ? "Accept" : "Deny"
            var text = "Admin\(priority) \(action) by \(named(decision.ruleID)) decides before any other tier"
            if state == .policiesApplied {
                let networkPolicy = rules.first { $0.tier == .networkPolicy && !$0.audit && $0.matches(protocolNumber: question.protocolNumber, port: question.port) }
                text += networkPolicy.map { _ in decision.verdict == .deny ? " (it beats NetworkPolicy's allow)" : "" } ?? ""
            }
            return text
        case .networkPolicy:
            let by = isolating.isEmpty ? "a NetworkPolicy" : isolating.joined(separator: ", ")
            if decision.verdict == .allow { return "isolated by \(by) \(question.direction): \(named(decision.ruleID)) allows \(flow)" }
            return "isolated by \(by) \(question.direction): no rule matches \(flow)"
        case .baseline:
            let action = decision.verdict == .allow ? "Accept" : "Deny"
            return "no Admin rule decided and no NetworkPolicy isolates the pod \(question.direction): Baseline \(action) by \(named(decision.ruleID)) \(verb) it"
        case .podDefault:
            return "nothing isolates the pod \(question.direction) and no cluster rule decided: its default, \(state == .defaultDeny ? "deny (strict)" : "allow")"
        case .none:
            return "decided before the tiers (\(reason))"
        }
    }

    func auditWhy(_ audit: Decision, auditState: PodState) -> String {
        let change = audit.verdict == decision.verdict ? "the same verdict" : audit.verdict == .allow ? "allowed" : "denied"
        switch audit.tier {
        case .admin, .baseline: return "with audit objects enforced: \(change) by \(audit.tier) \(named(audit.ruleID))"
        case .networkPolicy:
            return audit.ruleID == 0 ? "with audit objects enforced: \(change) (isolated \(question.direction), no rule matches \(flow))"
                : "with audit objects enforced: \(change) by \(named(audit.ruleID))"
        default: return "with audit objects enforced: \(change) by the pod's \(auditState) default"
        }
    }
}
