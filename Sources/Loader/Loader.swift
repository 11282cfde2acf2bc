import BPFKit
import Datapath
import DatapathModel
import Foundation
import Glibc
import PolicyInput

/// Why a loader operation was refused; nothing was changed.
public enum LoaderError: Error, Equatable, CustomStringConvertible {
    case notInitialized(root: String)
    case corruptState(String)
    case full(String)
    case invalidPod(String)
    case unknownPod(String)
    case policy(String)

    public var description: String {
        switch self {
        case .notInitialized(let root): "netfence is not loaded under \(root); run 'netfence loader init' first"
        case .corruptState(let what): "the loader state is damaged (\(what)); 'netfence loader reset' starts over"
        case .full(let what): "no room: \(what)"
        case .invalidPod(let what): what
        case .unknownPod(let pod): "pod \(pod) is not attached on this node; see 'netfence loader status'"
        case .policy(let what): what
        }
    }
}

/// How the node agent drives the datapath: init, attach, apply, delete,
/// detach, status, reset. Every operation checks its input fully before it
/// changes anything, and orders its writes so that a kill at any point leaves
/// each pod enforcing its old or its new policy; re-running converges.
public final class Loader {
    /// The tc filter netfence owns on each hook: REPLACE on these makes attach idempotent.
    public static let filterHandle: UInt32 = 0x4e46
    public static let filterPriority: UInt32 = 1

    public let root: String
    public let datapath: Datapath
    public let state: LoaderState

    /// Opens what `initialize` loaded under `root`.
    public init(root: String) throws {
        self.root = root
        do {
            datapath = try Datapath.open(pinnedUnder: root)
        } catch DatapathError.notInitialized {
            throw LoaderError.notInitialized(root: root)
        }
        state = try LoaderState.open(pinnedUnder: root)
    }

    private init(root: String, datapath: Datapath, state: LoaderState) {
        self.root = root
        self.datapath = datapath
        self.state = state
    }

    /// What `initialize` did.
    public struct InitReport: Sendable {
        public var maps = PinReport()
        /// Pods whose interfaces got the new programs (atomic replace).
        public var reattached: [String] = []
    }

    /// Loads (or reloads) the datapath and the state maps under `root`, then
    /// replaces the programs on every attached pod's interface atomically.
    public static func initialize(root: String, migrate: Bool) throws -> (Loader, InitReport) {
        var report = InitReport()
        let (datapath, datapathMaps) = try Datapath.load(pinningUnder: root, migrate: migrate)
        let (state, stateMaps) = try LoaderState.load(pinningUnder: root, migrate: migrate)
        report.maps.reused = datapathMaps.reused + stateMaps.reused
        report.maps.created = datapathMaps.created + stateMaps.created
        report.maps.migrated = datapathMaps.migrated + stateMaps.migrated
        let loader = Loader(root: root, datapath: datapath, state: state)
        // A new node reports denies; a reused settings map keeps the operator's choice.
        if datapathMaps.created.contains("settings") || datapathMaps.migrated.contains("settings") {
            try datapath.setEventLevel(.deny)
        }
        for (_, pod) in try state.pods().sorted(by: { $0.key < $1.key }) {
            try loader.attachPrograms(pod)
            report.reattached.append("\(pod.namespace)/\(pod.name)")
        }
        return (loader, report)
    }

    // MARK: pods

    /// What `attach` did.
    public struct AttachReport: Sendable {
        public let podID: UInt32
        public let ifindex: UInt32
        public let revision: UInt32
        public let objects: [ObjectKey]
        /// The pod was attached before on another interface or namespace.
        public let moved: Bool
    }

    /// Attaches the shared programs to `interface` (in `netns`, nil: the loader's
    /// namespace) for pod `namespace/name` and enforces every applied object that
    /// selects it. Idempotent; a pod attached elsewhere before is moved.
    public func attach(namespace: String, name: String, interface: String, netns: String?,
                       defaults: [Direction: PodDefault]) throws -> AttachReport {
        let networkNamespace = try netns.map { try NetworkNamespace.named($0) } ?? .current
        var registration = PodRegistration(ifindex: 0, denyByDefault: [.ingress: defaults[.ingress] == .deny, .egress: defaults[.egress] == .deny],
                                           namespace: namespace, name: name, interface: interface, netns: netns ?? "")
        guard registration.fitsTheABI else { throw LoaderError.invalidPod("pod \(namespace)/\(name): a name is longer than netfence stores") }
        registration.ifindex = try networkNamespace.interfaceIndex(interface)

        let pods = try state.pods()
        let existing = pods.first { $0.value.namespace == namespace && $0.value.name == name }
        let podID: UInt32
        if let existing {
            podID = existing.key
        } else {
            guard let free = (0..<UInt32(DatapathLimits.pods)).first(where: { pods[$0] == nil }) else {
                throw LoaderError.full("\(DatapathLimits.pods) pods are attached already")
            }
            podID = free
        }
        if let clash = pods.first(where: { $0.value.ifindex == registration.ifindex && $0.key != podID }) {
            throw LoaderError.invalidPod("interface index \(registration.ifindex) is already pod \(clash.value.namespace)/\(clash.value.name)'s; "
                + "netfence keys pods by interface index, so all host veths must live in one network namespace")
        }
        let moved = existing.map { $0.value.ifindex != registration.ifindex || $0.value.netns != registration.netns
            || $0.value.interface != registration.interface } ?? false
        let policy = try policy(for: registration, objects: state.objects())

        // A moved pod leaves its old interface first. Then the registry (a kill
        // leaves a pod that status reports as drift), the pod's record and
        // tries, and last the filters.
        if moved, let old = existing?.value { try removeFromInterface(old, podID: podID) }
        // A new pod's id may be a detached pod's whose grants a killed detach left.
        if existing == nil { try datapath.removeGrants(podID: podID) }
        try state.register(registration, podID: podID)
        try datapath.apply(ifindex: registration.ifindex, podID: podID, states: policy.states, policies: policy.policies,
                           domainRules: policy.domainRules)
        try attachPrograms(registration)
        let record = try datapath.pod(ifindex: registration.ifindex)
        return AttachReport(podID: podID, ifindex: registration.ifindex, revision: record?.revision ?? 0, objects: policy.objects, moved: moved)
    }

    /// Removes the filters, the pod's record, tries and conntrack entries, and forgets the pod.
    public func detach(namespace: String, name: String) throws {
        guard let (podID, pod) = try state.pod(namespace: namespace, name: name) else {
            throw LoaderError.unknownPod("\(namespace)/\(name)")
        }
        try removeFromInterface(pod, podID: podID)
        try state.unregister(podID: podID)
    }

    private func attachPrograms(_ pod: PodRegistration) throws {
        let namespace = try pod.netns.isEmpty ? nil : NetworkNamespace.named(pod.netns)
        // The host veth's ingress hook sees what the pod sends.
        try TCAttachments.attach(datapath.fromPod, interface: pod.interface, direction: .ingress, in: namespace,
                                 handle: Self.filterHandle, priority: Self.filterPriority)
        try TCAttachments.attach(datapath.toPod, interface: pod.interface, direction: .egress, in: namespace,
                                 handle: Self.filterHandle, priority: Self.filterPriority)
    }

    /// Undoes a pod's presence on an interface; an interface already gone is fine.
    private func removeFromInterface(_ pod: PodRegistration, podID: UInt32) throws {
        let namespace = pod.netns.isEmpty ? nil : try? NetworkNamespace.named(pod.netns)
        if pod.netns.isEmpty || namespace != nil {
            for direction in TCDirection.allCases {
                do {
                    try TCAttachments.detach(interface: pod.interface, direction: direction, in: namespace,
                                             handle: Self.filterHandle, priority: Self.filterPriority)
                } catch let error as BPFError where [ENOENT, ENODEV, EINVAL].contains(error.errno) {
                    continue  // the interface or its filter is gone already
                }
            }
        }
        try datapath.remove(ifindex: pod.ifindex)
        try datapath.flushConntrack(ifindex: pod.ifindex)
    }

    // MARK: objects

    /// What `apply` or `delete` did.
    public struct ApplyReport: Sendable {
        public var objects: [ObjectKey] = []
        /// Pods whose policy was replaced, with their new revision.
        public var pods: [(pod: String, revision: UInt32)] = []
        public var warnings: [String] = []
    }

    /// Applies objects: each replaces its previous version (same kind, namespace,
    /// name). The new policy of every pod the change touches is compiled first;
    /// if any does not fit, nothing is stored or changed. Then the objects are
    /// stored, each pod's policy swapped, and the replaced versions removed.
    public func apply(_ input: ParsedPolicies) throws -> ApplyReport {
        let versions = try state.allVersions()
        let current = LoaderState.live(versions)
        let replacedKeys = Set(input.objects.map(\.key))
        let indexes = try state.freeIndexes(count: input.objects.count)
        let next = current.filter { !replacedKeys.contains($0.object.key) }.map { (index: $0.index, object: $0.object) }
            + zip(indexes, input.objects).map { (index: $0.0, object: $0.1) }
        let touched = selectedPods(input.objects + current.filter { replacedKeys.contains($0.object.key) }.map(\.object))
        let policies = try compile(podsNamed: touched, objects: next)

        try state.collectGarbage()  // chunks a killed apply left behind
        for (index, object) in zip(indexes, input.objects) { try state.store(object, at: index) }
        var report = ApplyReport(objects: input.objects.map(\.key), warnings: input.warnings)
        report.pods = try swap(policies)
        // Every older version goes, also one a killed apply left beside the live one.
        try state.remove(indexes: versions.filter { replacedKeys.contains($0.object.key) }.map(\.index))
        return report
    }

    /// Removes objects by key; pods they selected fall back to what remains.
    public func delete(_ keys: [ObjectKey]) throws -> ApplyReport {
        let versions = try state.allVersions()
        let current = LoaderState.live(versions)
        let doomed = current.filter { keys.contains($0.object.key) }
        let remaining = current.filter { !keys.contains($0.object.key) }.map { (index: $0.index, object: $0.object) }
        let policies = try compile(podsNamed: selectedPods(doomed.map(\.object)), objects: remaining)
        var report = ApplyReport(objects: doomed.map(\.object.key))
        report.pods = try swap(policies)
        try state.remove(indexes: versions.filter { keys.contains($0.object.key) }.map(\.index))
        return report
    }

    private func selectedPods(_ objects: [PolicyObject]) -> Set<String> {
        Set(objects.flatMap(\.pods).map { "\($0.namespace)/\($0.name)" })
    }

    /// The policy of every attached pod in `names`, compiled against `objects`.
    private func compile(podsNamed names: Set<String>, objects: [(index: UInt32, object: PolicyObject)])
        throws -> [(podID: UInt32, pod: PodRegistration, policy: PodPolicy)] {
        try state.pods().sorted { $0.key < $1.key }.filter { names.contains("\($0.value.namespace)/\($0.value.name)") }.map {
            ($0.key, $0.value, try policy(for: $0.value, objects: objects))
        }
    }

    private func swap(_ policies: [(podID: UInt32, pod: PodRegistration, policy: PodPolicy)]) throws -> [(pod: String, revision: UInt32)] {
        try policies.map { podID, pod, policy in
            try datapath.apply(ifindex: pod.ifindex, podID: podID, states: policy.states, policies: policy.policies,
                               domainRules: policy.domainRules)
            return ("\(pod.namespace)/\(pod.name)", try datapath.pod(ifindex: pod.ifindex)?.revision ?? 0)
        }
    }

    private func policy(for pod: PodRegistration, objects: [StoredObject]) throws -> PodPolicy {
        try policy(for: pod, objects: objects.map { (index: $0.index, object: $0.object) })
    }

    private func policy(for pod: PodRegistration, objects: [(index: UInt32, object: PolicyObject)]) throws -> PodPolicy {
        do {
            return try PodPolicyBuilder.build(
                namespace: pod.namespace, name: pod.name,
                defaults: [.ingress: pod.denyByDefault[.ingress] == true ? .deny : .allow, .egress: pod.denyByDefault[.egress] == true ? .deny : .allow],
                objects: objects)
        } catch {
            throw LoaderError.policy(error.description)
        }
    }

    // MARK: status

    /// One attached pod as status reports it.
    public struct AttachedPod: Sendable {
        public let podID: UInt32
        public let registration: PodRegistration
        /// The live record, nil when the pod's record is missing (drift).
        public let record: PodRecord?
        public let objects: [ObjectKey]
        /// The hooks of its interface that do not carry netfence's current programs.
        public let missingHooks: [TCDirection]
    }

    /// Pods with their live state and drift, and interfaces carrying netfence's
    /// programs that no registered pod owns.
    public func status() throws -> (pods: [AttachedPod], objects: [StoredObject], stray: [ProgramAttachment]) {
        let objects = try state.objects()
        let programs = [TCDirection.ingress: try datapath.fromPod.info().id, .egress: try datapath.toPod.info().id]
        let pods = try state.pods().sorted { $0.key < $1.key }
        var namespaces: [String: NetworkNamespace] = [:]
        for (_, pod) in pods {
            if pod.netns.isEmpty { namespaces[""] = .current } else if let namespace = try? NetworkNamespace.named(pod.netns) { namespaces[pod.netns] = namespace }
        }
        let attachments = TCAttachments.scan(Array(namespaces.values))
        let ours = attachments.filter { programs.values.contains($0.programID) }
        var result: [AttachedPod] = []
        for (podID, pod) in pods {
            let namespaceName = pod.netns.isEmpty ? NetworkNamespace.current.name : pod.netns
            let missing = TCDirection.allCases.filter { direction in
                !ours.contains { $0.namespace == namespaceName && $0.interface == pod.interface && $0.direction == direction
                    && $0.programID == programs[direction] }
            }
            result.append(AttachedPod(podID: podID, registration: pod, record: try datapath.pod(ifindex: pod.ifindex),
                                   objects: objects.filter { $0.object.selects(namespace: pod.namespace, name: pod.name) }.map(\.object.key),
                                   missingHooks: missing))
        }
        let registered = Set(pods.map { "\($0.value.netns.isEmpty ? NetworkNamespace.current.name : $0.value.netns)/\($0.value.interface)" })
        let stray = ours.filter { !registered.contains("\($0.namespace)/\($0.interface)") }
        return (result, objects, stray)
    }

    // MARK: reset

    /// Removes everything netfence put on the node under `root`: every pod's
    /// filters, then every pin (maps and programs go with their last reference).
    public static func reset(root: String) throws {
        if let loader = try? Loader(root: root) {
            for (podID, pod) in try loader.state.pods() {
                try loader.removeFromInterface(pod, podID: podID)
            }
        }
        if FileManager.default.fileExists(atPath: root) { try FileManager.default.removeItem(atPath: root) }
    }
}
