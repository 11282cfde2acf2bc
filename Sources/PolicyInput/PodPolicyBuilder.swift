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
    /// The objects that select the pod, for status.
    public var objects: [ObjectKey]
}

/// Turns the objects applied on the node into one pod's policy: the union of
/// every object that selects it. Rules by domain name are kept by the objects
/// but allow nothing until the DNS proxy learns their addresses.
public enum PodPolicyBuilder {
    public static func build(namespace: String, name: String, defaults: [Direction: PodDefault],
                             objects: [(index: UInt32, object: PolicyObject)]) throws(PolicyInputError) -> PodPolicy {
        let selecting = objects.filter { $0.object.selects(namespace: namespace, name: name) }
        var states: [Direction: PodState] = [:]
        var policies: [Direction: CompiledPolicy] = [:]
        for direction in Direction.allCases {
            let isolated = selecting.contains { $0.object.key.kind == .policyEndpoint && $0.object.isolation.contains(direction) }
            states[direction] = isolated ? .policiesApplied : defaults[direction, default: .allow].state
            var rules: [PolicyRule] = []
            for (index, object) in selecting {
                for (position, rule) in object.rules(direction).enumerated() {
                    guard let cidr = rule.cidr, let peer = IPPrefix.parse(cidr)?.prefix else { continue }
                    guard position < RuleID.rulesPerDirection else {
                        throw PolicyInputError("\(object.key)", "more than \(RuleID.rulesPerDirection) \(direction) rules")
                    }
                    let id = RuleID(objectIndex: index, direction: direction, rule: position).rawValue
                    let tier: Tier = switch object.tier {
                    case .admin: .admin
                    case .baseline: .baseline
                    case nil: .networkPolicy
                    }
                    rules.append(PolicyRule(
                        ruleID: id, peer: peer, except: rule.except.compactMap { IPPrefix.parse($0)?.prefix },
                        ports: rule.ports.map { PortRange(protocolNumber: $0.protocolNumber, start: $0.port ?? 0, end: $0.endPort ?? $0.port ?? 0) },
                        tier: tier, priority: object.priority, action: rule.action.ruleAction))
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
        return PodPolicy(states: states, policies: policies, objects: selecting.map(\.object.key).sorted())
    }
}
