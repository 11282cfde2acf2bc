import Datapath
import DatapathModel
import Foundation
import HostKit
import PolicyInput

/// The rules one pod enforces (and those audit objects add), grouped by the
/// object that brings them, each with the new flows it decided: what
/// `policy show` prints. Its field names are the `-o json` interface.
public struct PodRulesView: Encodable, Sendable {
    public struct Hits: Encodable, Sendable, Equatable {
        public var allowed: UInt64 = 0
        public var denied: UInt64 = 0
        /// Seconds since the last new flow it decided; nil when none did.
        public var lastSecondsAgo: Double?

        public init() {}

        mutating func add(_ hit: RuleHit, now: UInt64) {
            allowed &+= hit.allowed
            denied &+= hit.denied
            let ago = Double(now > hit.lastNanoseconds ? now - hit.lastNanoseconds : 0) / 1e9
            lastSecondsAgo = min(lastSecondsAgo ?? ago, ago)
        }
    }

    public struct Rule: Encodable, Sendable {
        /// Index in the object's ingress or egress list.
        public let rule: Int
        public let ruleID: UInt32
        /// `198.18.0.0/16 except 198.18.9.0/24`, or a domain pattern.
        public let peer: String
        public let ports: String
        public let tier: String
        public let priority: UInt16
        public let action: String
        /// New flows it decided (enforced objects), or would have decided otherwise (audit objects).
        public let hits: Hits
    }

    public struct Object: Encodable, Sendable {
        public let object: String
        public let policy: String
        public let mode: String
        public let rules: [Rule]
    }

    public struct DirectionView: Encodable, Sendable {
        public let direction: String
        public let state: String
        public let auditState: String?
        public let objects: [Object]
        /// New flows the pod's isolation denied (no rule matched), and its default decided.
        public let isolation: Hits
        public let podDefault: Hits
    }

    public let pod: PodReference
    public let podID: UInt32
    public let revision: UInt32
    public let directions: [DirectionView]
}

extension Loader {
    /// The rules `pod` enforces, by direction and object, with their hits.
    public func podRules(_ pod: PodReference) throws -> PodRulesView {
        guard let (podID, registration) = try state.pod(pod), let record = try datapath.pod(ifindex: registration.ifindex) else {
            throw LoaderError.unknownPod(pod)
        }
        let now = HostClock.monotonic.nanoseconds
        let hits = try datapath.ruleHits(podID: podID)
        func total(_ select: (RuleHit) -> Bool) -> PodRulesView.Hits {
            var sum = PodRulesView.Hits()
            for hit in hits where select(hit) { sum.add(hit, now: now) }
            return sum
        }
        let selecting = try state.objects().filter { $0.object.selects(pod) }.sorted { $0.object.key < $1.object.key }
        let directions = Direction.allCases.map { direction in
            let objects = selecting.compactMap { stored -> PodRulesView.Object? in
                let object = stored.object
                let rules = object.rules(direction).enumerated().map { position, rule in
                    let id = RuleID(objectIndex: stored.index, direction: direction, rule: position).rawValue
                    let peer = rule.domainName?.description
                        ?? (rule.cidr.map(\.description) ?? "-") + (rule.except.isEmpty ? "" : " except " + rule.except.map(\.description).joined(separator: ", "))
                    let ports = rule.ports.isEmpty ? "any" : rule.ports.map { port in
                        let name = ProtocolName.of(port.protocolNumber)
                        guard let start = port.port else { return name }
                        return "\(name)/\(start)" + (port.endPort.map { "-\($0)" } ?? "")
                    }.joined(separator: ", ")
                    let tier: Tier = object.tier == .admin ? .admin : object.tier == .baseline ? .baseline : .networkPolicy
                    return PodRulesView.Rule(rule: position, ruleID: id, peer: peer, ports: ports, tier: tier.description, priority: object.priority,
                                             action: rule.action.ruleAction.description,
                                             hits: total { $0.ruleID == id && $0.direction == direction && $0.audit == (object.mode == .audit) })
                }
                guard !rules.isEmpty || object.isolation.contains(direction) else { return nil }
                return PodRulesView.Object(object: object.key.description, policy: object.policyRef, mode: object.mode.rawValue, rules: rules)
            }
            return PodRulesView.DirectionView(
                direction: direction.description, state: record.states[direction, default: .defaultAllow].description,
                auditState: record.auditStates?[direction].map(\.description), objects: objects,
                isolation: total { $0.ruleID == 0 && $0.direction == direction && $0.tier == .networkPolicy && !$0.audit },
                podDefault: total { $0.ruleID == 0 && $0.direction == direction && $0.tier == .podDefault && !$0.audit })
        }
        return PodRulesView(pod: pod, podID: podID, revision: record.revision, directions: directions)
    }

    /// The new flows each rule decided for `pod` in `direction`, by rule id (audit counts left out).
    public func ruleHits(of pod: PodReference, direction: Direction) throws -> [UInt32: RuleHit] {
        guard let (podID, _) = try state.pod(pod) else { throw LoaderError.unknownPod(pod) }
        return Dictionary(try datapath.ruleHits(podID: podID).filter { $0.direction == direction && !$0.audit }.map { ($0.ruleID, $0) }) { $0.allowed > $1.allowed ? $0 : $1 }
    }

    /// New flows per rule summed over pods, keyed by what names them: the metrics' `netfence_rule_flows_total`.
    public func ruleFlowTotals() throws -> [(policy: String, rule: String, tier: Tier, audit: Bool, allowed: UInt64, denied: UInt64)] {
        let attribution = try attribution()
        var totals: [String: (policy: String, rule: String, tier: Tier, audit: Bool, allowed: UInt64, denied: UInt64)] = [:]
        for hit in try datapath.ruleHits() {
            let named = attribution.policy(ruleID: hit.ruleID)
            let rule = named.map { "\(hit.direction)[\($0.rule)]" } ?? (hit.tier == .podDefault ? "default" : hit.tier == .networkPolicy ? "isolation" : "none")
            let policy = named?.policy ?? ""
            let key = "\(policy)\u{0}\(rule)\u{0}\(hit.tier.rawValue)\u{0}\(hit.audit)"
            var sum = totals[key] ?? (policy, rule, hit.tier, hit.audit, 0, 0)
            sum.allowed &+= hit.allowed
            sum.denied &+= hit.denied
            totals[key] = sum
        }
        return totals.values.sorted { ($0.policy, $0.rule, $0.tier.rawValue) < ($1.policy, $1.rule, $1.tier.rawValue) }
    }
}
