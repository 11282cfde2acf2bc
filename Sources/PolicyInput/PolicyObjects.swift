import DNS
import DatapathModel

/// Which kind of object, as `kind:` spells it.
public enum PolicyKind: String, Sendable, Hashable {
    case policyEndpoint = "PolicyEndpoint"
    case clusterPolicyEndpoint = "ClusterPolicyEndpoint"
}

/// What identifies an object: re-applying the same kind, namespace and name replaces it.
public struct ObjectKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let kind: PolicyKind
    /// Empty for cluster-scoped objects.
    public let namespace: String
    public let name: String

    public init(kind: PolicyKind, namespace: String, name: String) {
        self.kind = kind
        self.namespace = namespace
        self.name = name
    }

    public var description: String { namespace.isEmpty ? "\(kind.rawValue)/\(name)" : "\(kind.rawValue) \(namespace)/\(name)" }

    public static func < (a: ObjectKey, b: ObjectKey) -> Bool {
        (a.kind.rawValue, a.namespace, a.name) < (b.kind.rawValue, b.namespace, b.name)
    }
}

/// A pod an object selects (`spec.podSelectorEndpoints[]`).
public struct SelectedPod: Hashable, Sendable {
    public let pod: PodReference
    public let podIP: IPAddress?
    public let hostIP: IPAddress?

    public init(pod: PodReference, podIP: IPAddress? = nil, hostIP: IPAddress? = nil) {
        self.pod = pod
        self.podIP = podIP
        self.hostIP = hostIP
    }
}

/// Cluster rule actions (`action:`); NetworkPolicy rules always accept.
public enum PolicyAction: String, Sendable, CaseIterable {
    case accept = "Accept", deny = "Deny", pass = "Pass"

    public var ruleAction: RuleAction {
        switch self {
        case .accept: .accept
        case .deny: .deny
        case .pass: .pass
        }
    }
}

/// Whether an object decides verdicts, or only says what it would decide (`netfence.io/mode`).
public enum PolicyMode: String, Sendable, CaseIterable {
    case enforce, audit
}

/// Cluster tiers (`spec.tier`).
public enum ClusterTier: String, Sendable, CaseIterable {
    case admin = "Admin", baseline = "Baseline"
}

/// One `ports[]` entry: protocol (default TCP), and one port, a range, or all.
public struct PortSpec: Hashable, Sendable {
    public let protocolNumber: UInt8
    public let port: UInt16?
    public let endPort: UInt16?
}

/// One `ingress[]` / `egress[]` entry: a CIDR (with the blocks it excepts) or a domain name.
public struct EndpointRule: Hashable, Sendable {
    /// nil for a rule by domain name.
    public let cidr: IPPrefix?
    /// Inside `cidr`, of its family.
    public let except: [IPPrefix]
    public let ports: [PortSpec]
    /// Egress by name: allows the addresses the pod resolved through the DNS proxy
    /// for a matching name, until their TTL runs out (docs/dns.md). As the proxy compares names.
    public let domainName: DomainPattern?
    /// Cluster rules only; NetworkPolicy rules are Accept.
    public let action: PolicyAction
}

/// A PolicyEndpoint or ClusterPolicyEndpoint, validated.
public struct PolicyObject: Hashable, Sendable {
    public let key: ObjectKey
    /// `spec.policyRef`: the policy this endpoint object was made from (`namespace/name`).
    public let policyRef: String
    /// `spec.podIsolation` (PolicyEndpoint only).
    public let isolation: Set<Direction>
    public let pods: [SelectedPod]
    public let ingress: [EndpointRule]
    public let egress: [EndpointRule]
    /// ClusterPolicyEndpoint only.
    public let tier: ClusterTier?
    public let priority: UInt16
    /// `audit`: stored and compiled like any other, never changes a verdict (events say what it would decide).
    public let mode: PolicyMode

    public init(key: ObjectKey, policyRef: String, isolation: Set<Direction>, pods: [SelectedPod], ingress: [EndpointRule],
                egress: [EndpointRule], tier: ClusterTier?, priority: UInt16, mode: PolicyMode = .enforce) {
        self.key = key
        self.policyRef = policyRef
        self.isolation = isolation
        self.pods = pods
        self.ingress = ingress
        self.egress = egress
        self.tier = tier
        self.priority = priority
        self.mode = mode
    }

    /// The same object in `mode` (`apply --audit`); refused for an audit object with domain rules
    /// (they would send the pod's DNS to the proxy: a change of verdicts, which audit never makes).
    public func with(mode: PolicyMode) throws(PolicyInputError) -> PolicyObject {
        if mode == .audit, let index = egress.firstIndex(where: { $0.domainName != nil }) {
            throw PolicyInputError("\(key) egress[\(index)].domainName",
                                   "an audit object cannot have domain rules: they would send the pod's DNS to the proxy, a change audit never makes")
        }
        return PolicyObject(key: key, policyRef: policyRef, isolation: isolation, pods: pods, ingress: ingress, egress: egress, tier: tier,
                            priority: priority, mode: mode)
    }

    /// The rules of `direction`.
    public func rules(_ direction: Direction) -> [EndpointRule] { direction == .ingress ? ingress : egress }

    /// Whether this object selects `pod`.
    public func selects(_ pod: PodReference) -> Bool {
        pods.contains { $0.pod == pod }
    }
}
