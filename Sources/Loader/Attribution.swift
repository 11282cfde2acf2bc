import DatapathModel
import PolicyInput

/// What the loader knows that turns the datapath's ids into names, read once
/// so that naming an event or a conntrack row copies no registration and
/// builds no string: pods by id, the policy each object index stands for
/// (live, or replaced and still carried by old rule ids), and the objects
/// that isolate each pod.
public final class Attribution: Sendable {
    /// What a row shows of the pod that owns its interface.
    public final class PodLabel: Sendable {
        public let ifindex: UInt32
        /// `namespace/name`.
        public let pod: String
        public let namespace: String
        public let interface: String

        init(_ registration: PodRegistration) {
            ifindex = registration.ifindex
            pod = registration.pod.description
            namespace = registration.namespace
            interface = registration.interface
        }
    }

    private let pods: [UInt32: PodLabel]
    /// Object index → the policy it shows (policyRef, or the cluster policy's name), a version
    /// since replaced or deleted marked `(replaced)`: its rule ids still name its policy.
    private let policies: [UInt32: String]
    /// Pod id → direction → the policies of the PolicyEndpoints that isolate it there.
    private let isolating: [UInt32: [Direction: [String]]]
    /// Pod id → direction → what a deny no rule decided shows: `isolation by a/b, c/d`.
    private let isolationNames: [UInt32: [Direction: String]]

    /// Pod id → registration; object index → live object; object index → policy of a retired version.
    public init(pods: [UInt32: PodRegistration], objects: [UInt32: PolicyObject], retired: [UInt32: String] = [:]) {
        self.pods = pods.mapValues(PodLabel.init)
        policies = objects.mapValues(\.policyRef).merging(retired.mapValues { "\($0) (replaced)" }) { live, _ in live }
        isolating = pods.mapValues { pod in
            Dictionary(uniqueKeysWithValues: Direction.allCases.map { direction in
                (direction, objects.values.filter { $0.key.kind == .policyEndpoint && $0.isolation.contains(direction)
                    && $0.selects(pod.pod) }.map(\.policyRef).sorted())
            })
        }
        isolationNames = isolating.mapValues { byDirection in
            byDirection.mapValues { $0.isEmpty ? "isolation" : "isolation by " + $0.joined(separator: ", ") }
        }
    }

    /// The pod registered under `podID`.
    public func pod(_ podID: UInt32) -> PodLabel? { pods[podID] }

    /// The policy (policyRef or cluster policy name) and rule index a datapath
    /// rule id stands for; a retired version's policy is marked `(replaced)`.
    public func policy(ruleID: UInt32) -> (policy: String, rule: Int)? {
        guard let id = RuleID(rawValue: ruleID), let name = policies[id.objectIndex] else { return nil }
        return (name, id.rule)
    }

    /// Whether this view can name `ruleID` (no rule, or an object known here), without naming it.
    public func knows(ruleID: UInt32) -> Bool {
        RuleID(rawValue: ruleID).map { policies[$0.objectIndex] != nil } ?? true
    }

    /// The policies whose PolicyEndpoints isolate the pod in `direction`, sorted.
    public func isolatingPolicies(podID: UInt32, direction: Direction) -> [String] {
        isolating[podID]?[direction] ?? []
    }

    /// What shows as the policy of a deny no rule decided: `isolation by` the isolating policies.
    public func isolationName(podID: UInt32, direction: Direction) -> String {
        isolationNames[podID]?[direction] ?? "isolation"
    }

    /// The longest pod name (`namespace/name`), so a table's pod column holds every one.
    public var longestPodName: Int { pods.values.map(\.pod.count).max() ?? 0 }
    /// The longest policy name.
    public var longestPolicyName: Int { policies.values.map(\.count).max() ?? 0 }
    /// The longest name of any kind (pod, interface, policy) in UTF-8 bytes, for bounds on what a row writes.
    public var longestNameBytes: Int {
        max(pods.values.map { max($0.pod.utf8.count, $0.interface.utf8.count) }.max() ?? 0, policies.values.map(\.utf8.count).max() ?? 0)
    }
}

extension Loader {
    /// Names for what the datapath reports, as the state is now.
    public func attribution() throws -> Attribution {
        try attribution(objects: try state.objectSummaries())
    }

    /// Names as the state is now, with the stored objects (summaries suffice) already read.
    func attribution(objects: [StoredObject]) throws -> Attribution {
        Attribution(pods: try state.pods(), objects: Dictionary(uniqueKeysWithValues: objects.map { ($0.index, $0.object) }),
                    retired: try state.retiredPolicies())
    }
}
