import DNS
import DatapathModel

/// A rule id the datapath reports in events, decodable back to the object,
/// direction and rule that decided: `object index << 12 | direction << 11 | rule`.
public struct RuleID: Hashable, Sendable, CustomStringConvertible {
    public static let rulesPerDirection = 2048

    /// The loader's index of the object (1 and up; 0 means "no rule").
    public let objectIndex: UInt32
    public let direction: Direction
    /// Index in the object's `ingress[]` or `egress[]`.
    public let rule: Int

    public init(objectIndex: UInt32, direction: Direction, rule: Int) {
        self.objectIndex = objectIndex
        self.direction = direction
        self.rule = rule
    }

    /// Decodes an id from an event; nil for 0 (no rule decided).
    public init?(rawValue: UInt32) {
        guard rawValue >> 12 != 0 else { return nil }
        objectIndex = rawValue >> 12
        direction = rawValue >> 11 & 1 == 0 ? .ingress : .egress
        rule = Int(rawValue & 0x7ff)
    }

    public var rawValue: UInt32 { objectIndex << 12 | UInt32(direction.rawValue) << 11 | UInt32(rule) }

    public var description: String { "\(direction)[\(rule)] of object \(objectIndex)" }
}

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
}

/// Turns the objects applied on the node into one pod's policy: the union of
/// every object that selects it. Rules by domain name become port rules per
/// pattern; they allow the addresses the DNS proxy grants the pod.
public enum PodPolicyBuilder {
    public static func build(namespace: String, name: String, defaults: [Direction: PodDefault],
                             objects: [(index: UInt32, object: PolicyObject)]) throws(PolicyInputError) -> PodPolicy {
        let selecting = objects.filter { $0.object.selects(namespace: namespace, name: name) }
        var states: [Direction: PodState] = [:]
        var policies: [Direction: CompiledPolicy] = [:]
        var domainRules: [UInt64: (pattern: String, rules: [PortRule])] = [:]
        for direction in Direction.allCases {
            let isolated = selecting.contains { $0.object.key.kind == .policyEndpoint && $0.object.isolation.contains(direction) }
            states[direction] = isolated ? .policiesApplied : defaults[direction, default: .allow].state
            var rules: [PolicyRule] = []
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
                    if let name = rule.domainName, let pattern = DomainPattern(name) {
                        let portRules = PortRule.expanding(ports, ruleID: id, tier: tier, priority: object.priority, action: rule.action.ruleAction)
                        domainRules[pattern.id, default: (pattern.description, [])].rules += portRules
                    } else if let cidr = rule.cidr, let peer = IPPrefix.parse(cidr)?.prefix {
                        rules.append(PolicyRule(ruleID: id, peer: peer, except: rule.except.compactMap { IPPrefix.parse($0)?.prefix },
                                                ports: ports, tier: tier, priority: object.priority, action: rule.action.ruleAction))
                    }
                }
            }
            if isolated || !rules.isEmpty {
                do {
                    policies[direction] = try PolicyCompiler.compile(rules)
                } catch {
                    throw PolicyInputError("pod \(namespace)/\(name) \(direction)", error.description)
                }
            }
        }
        var compiledDomainRules: [UInt64: [PortRule]] = [:]
        for (id, entry) in domainRules {
            let rules = PolicyCompiler.ruleSet(entry.rules)
            guard rules.count <= DatapathLimits.rulesPerPrefix else {
                throw PolicyInputError("pod \(namespace)/\(name) egress",
                                       "\(rules.count) port rules apply to domain \(entry.pattern), more than the \(DatapathLimits.rulesPerPrefix) one pattern can hold")
            }
            compiledDomainRules[id] = rules
        }
        guard compiledDomainRules.count <= DatapathLimits.domainRuleSets / 2 else {
            throw PolicyInputError("pod \(namespace)/\(name) egress", "\(compiledDomainRules.count) domain patterns, more than the node holds")
        }
        return PodPolicy(states: states, policies: policies, domainRules: compiledDomainRules, objects: selecting.map(\.object.key).sorted())
    }
}
