import DNS
import DatapathModel
import PolicyInput

/// What a pod does when nothing selects it, per direction (`loader attach --ingress-default`).
public enum PodDefault: String, Sendable, CaseIterable {
    case allow, deny

    var state: PodState { self == .allow ? .defaultAllow : .defaultDeny }
}

/// A pod's datapath policy: states and compiled tries per direction.
public struct PodPolicy: Equatable, Sendable {
    public var states: [Direction: PodState]
    public var policies: [Direction: CompiledPolicy]
    /// Egress rules by domain name: the port rules of each pattern, by pattern id.
    public var domainRules: [UInt64: [PortRule]]
    /// The objects that select the pod, for status.
    public var objects: [ObjectKey]
    /// With audit objects enforced, the states per direction; nil when no audit object selects the pod.
    public var auditStates: [Direction: PodState]?
}

/// What the objects selecting a pod compile to, for one set of applied objects:
/// pods selected by the same objects compile once (and, with identical tries,
/// share one trie in the kernel).
public final class CompiledTries {
    /// One direction's trie (nil: none) and rules by domain name (port rules by pattern id, with the pattern).
    struct Compiled {
        let trie: CompiledPolicy?
        let domainRules: [UInt64: (pattern: String, rules: [PortRule])]
    }
    struct Key: Hashable {
        let objects: [UInt32]
        let direction: Direction
    }
    var compiled: [Key: Compiled] = [:]

    public init() {}
}

/// Turns the objects applied on the node into one pod's policy: the union of
/// every object that selects it. Rules by domain name become port rules per
/// pattern; they allow the addresses the DNS proxy grants the pod.
public enum PodPolicyBuilder {
    public static func build(pod: PodReference, defaults: [Direction: PodDefault],
                             objects: [(index: UInt32, object: PolicyObject)],
                             compiled: CompiledTries = CompiledTries()) throws(PolicyInputError) -> PodPolicy {
        let selecting = objects.filter { $0.object.selects(pod) }
        let audited = selecting.contains { $0.object.mode == .audit }
        var states: [Direction: PodState] = [:], auditStates: [Direction: PodState] = [:]
        var policies: [Direction: CompiledPolicy] = [:]
        var domainRules: [UInt64: (pattern: String, rules: [PortRule])] = [:]
        for direction in Direction.allCases {
            let isolating = selecting.filter { $0.object.key.kind == .policyEndpoint && $0.object.isolation.contains(direction) }
            let isolated = isolating.contains { $0.object.mode == .enforce }
            states[direction] = isolated ? .policiesApplied : defaults[direction, default: .allow].state
            auditStates[direction] = isolating.isEmpty ? defaults[direction, default: .allow].state : .policiesApplied
            let key = CompiledTries.Key(objects: selecting.map(\.index), direction: direction)
            let result: CompiledTries.Compiled
            if let known = compiled.compiled[key] {
                result = known
            } else {
                result = try compile(pod: pod, direction: direction, selecting: selecting, isolated: isolated)
                compiled.compiled[key] = result
            }
            policies[direction] = result.trie
            domainRules.merge(result.domainRules) { mine, theirs in (mine.pattern, mine.rules + theirs.rules) }
        }
        var compiledDomainRules: [UInt64: [PortRule]] = [:]
        for (id, entry) in domainRules {
            let rules = PolicyCompiler.ruleSet(entry.rules)
            guard rules.count <= DatapathLimits.rulesPerPrefix else {
                throw PolicyInputError("pod \(pod) egress",
                                       "\(rules.count) port rules apply to domain \(entry.pattern), more than the \(DatapathLimits.rulesPerPrefix) one pattern can hold")
            }
            compiledDomainRules[id] = rules
        }
        guard compiledDomainRules.count <= DatapathLimits.domainRuleSets / 2 else {
            throw PolicyInputError("pod \(pod) egress", "\(compiledDomainRules.count) domain patterns, more than the node holds")
        }
        return PodPolicy(states: states, policies: policies, domainRules: compiledDomainRules, objects: selecting.map(\.object.key).sorted(),
                         auditStates: audited ? auditStates : nil)
    }

    /// The trie and domain rules the `selecting` objects give one direction.
    private static func compile(pod: PodReference, direction: Direction, selecting: [(index: UInt32, object: PolicyObject)],
                                isolated: Bool) throws(PolicyInputError) -> CompiledTries.Compiled {
        var rules: [PolicyRule] = []
        var domainRules: [UInt64: (pattern: String, rules: [PortRule])] = [:]
        for (index, object) in selecting {
            for (position, rule) in object.rules(direction).enumerated() {
                guard position < RuleID.rulesPerDirection else {
                    throw PolicyInputError("\(object.key)", "more than \(RuleID.rulesPerDirection) \(direction) rules")
                }
                let id = RuleID(objectIndex: index, direction: direction, rule: position).rawValue
                let tier: Tier = switch object.tier {
                case .admin: .admin
                case .baseline: .baseline
                case nil: .networkPolicy
                }
                let ports = rule.ports.map { PortRange(protocolNumber: $0.protocolNumber, start: $0.port ?? 0, end: $0.endPort ?? $0.port ?? 0) }
                if let pattern = rule.domainName {
                    let portRules = PortRule.expanding(ports, ruleID: id, tier: tier, priority: object.priority, action: rule.action.ruleAction)
                    domainRules[pattern.id, default: (pattern.description, [])].rules += portRules
                } else if let peer = rule.cidr {
                    rules.append(PolicyRule(ruleID: id, peer: peer, except: rule.except, ports: ports, tier: tier, priority: object.priority,
                                            action: rule.action.ruleAction, audit: object.mode == .audit))
                }
            }
        }
        guard isolated || !rules.isEmpty else { return CompiledTries.Compiled(trie: nil, domainRules: domainRules) }
        do {
            return CompiledTries.Compiled(trie: try PolicyCompiler.compile(rules), domainRules: domainRules)
        } catch {
            throw PolicyInputError("pod \(pod) \(direction)", error.description)
        }
    }
}
