import BPFKit
import Datapath
import DatapathModel
import Foundation
import Glibc
import HostKit
import PolicyInput

/// Why a loader operation was refused; nothing was changed.
public enum LoaderError: Error, Equatable, CustomStringConvertible {
    case notInitialized(root: String)
    case notARoot(root: String)
    case busy(String)
    case readOnly
    case corruptState(String)
    case full(String)
    case invalidPod(String)
    case unknownPod(PodReference)
    case policy(String)
    case unsupported(String)

    public var description: String {
        switch self {
        case .notInitialized(let root): "netfence is not loaded under \(root); run 'netfence loader init' first"
        case .notARoot(let root):
            "\(root) is not a netfence pin root (it has no state/root_marker); nothing was removed. "
                + "Give the folder 'netfence loader init' used, or run init there first if it was interrupted"
        case .busy(let what): "\(what); retry, or wait longer with --wait-timeout"
        case .readOnly: "this loader was opened for reading; open it with Loader.openForChanges to change the node"
        case .corruptState(let what): "the loader state is damaged (\(what)); 'netfence loader reset' starts over"
        case .full(let what): "no room: \(what)"
        case .invalidPod(let what): what
        case .unknownPod(let pod): "pod \(pod) is not attached on this node; see 'netfence loader status'"
        case .policy(let what): what
        case .unsupported(let what): what
        }
    }
}

/// How the node agent drives the datapath: init, attach, apply, delete,
/// detach, status, reset. Every operation checks its input fully before it
/// changes anything, and orders its writes so that a kill at any point leaves
/// each pod enforcing its old or its new policy; re-running converges.
///
/// One writer at a time per pin root: a loader that changes the node holds the
/// root folder's exclusive `flock(2)` for as long as it lives (the kernel drops
/// it when the process dies); `status()` reads under the shared lock, so it
/// never sees a change half-made.
public final class Loader {
    /// The tc filter netfence owns on each hook: REPLACE on these makes attach idempotent.
    public static let filterHandle: UInt32 = 0x4e46
    public static let filterPriority: UInt32 = 1
    /// How long a caller waits for another to finish, unless it says otherwise.
    public static let defaultLockTimeout = 10.0

    public let root: PinRoot
    public let datapath: Datapath
    public let state: LoaderState
    /// The root's exclusive lock, held by a loader opened for changes.
    private let writeLock: FileLock?

    /// Opens what `initialize` loaded under `root`, for reading.
    public convenience init(root: PinRoot) throws {
        try self.init(root: root, lock: nil)
    }

    private init(root: PinRoot, lock: FileLock?) throws {
        self.root = root
        do {
            datapath = try Datapath.open(pinnedUnder: root.path)
        } catch DatapathError.notInitialized {
            throw LoaderError.notInitialized(root: root.path)
        }
        state = try LoaderState.open(pinnedUnder: root.path)
        writeLock = lock
        if lock != nil { datapath.recycling = Self.recycling(root) }
    }

    private init(root: PinRoot, datapath: Datapath, state: LoaderState, lock: FileLock) {
        self.root = root
        self.datapath = datapath
        self.state = state
        writeLock = lock
        datapath.recycling = Self.recycling(root)
    }

    /// How a change under `root` recycles the tries it lets go: a keeper's, or its own on its next wait.
    private static func recycling(_ root: PinRoot) -> TrieRecycling {
        TrieKeeper.isKeeping(root) ? .keeper : .onNextWait
    }

    /// Opens what `initialize` loaded under `root` to change it: waits up to
    /// `timeout` seconds for another writer to finish, then holds the lock.
    public static func openForChanges(root: PinRoot, waitingUpTo timeout: Double = defaultLockTimeout) throws -> Loader {
        guard root.exists else { throw LoaderError.notInitialized(root: root.path) }
        return try Loader(root: root, lock: lock(root, .exclusive, timeout))
    }

    /// Takes the root's lock; a root removed meanwhile is "not initialized".
    static func lock(_ root: PinRoot, _ mode: FileLock.Mode, _ timeout: Double) throws -> FileLock {
        do {
            return try FileLock.acquire(directory: root.path, mode: mode, timeout: timeout)
        } catch .system(let error) where error.errno == ENOENT {
            throw LoaderError.notInitialized(root: root.path)
        } catch .timedOut(let path, let waited, let holder) {
            throw LoaderError.busy("\(holder ?? "another netfence command") is changing \(path); waited \(FileLock.Failure.seconds(waited))")
        } catch {
            throw error
        }
    }

    /// Runs `body` while holding the root's exclusive lock: a short change by another
    /// process than the loader's commands (the DNS proxy registering its addresses).
    public static func whileHoldingLock<T>(root: PinRoot, waitingUpTo timeout: Double = defaultLockTimeout, _ body: () throws -> T) throws -> T {
        let held = try lock(root, .exclusive, timeout)
        defer { withExtendedLifetime(held) {} }
        return try body()
    }

    private func requireWriter() throws {
        if writeLock == nil { throw LoaderError.readOnly }
    }

    /// What `initialize` did.
    public struct InitReport: Sendable {
        public var maps = PinReport()
        /// Pods whose interfaces got the new programs (atomic replace).
        public var reattached: [PodReference] = []
        /// How the pods' programs are attached now.
        public var attachment = Attachment.tc
        /// What init's closing reconcile repaired.
        public var reconciled = ReconcileReport()
        /// Flows the conntrack table holds at most now.
        public var conntrackEntries = 0
        /// The conntrack table was resized: from how many entries, and how many tracked flows it carried over.
        public var conntrackResize: (from: Int, carriedOver: Int)?
    }

    /// Loads (or reloads) the state maps, then the datapath, under `root` (the
    /// marker that makes it a netfence root first), then replaces the programs
    /// on every attached pod's interface atomically. Creates `root` if needed;
    /// waits up to `timeout` seconds for another writer. `conntrackEntries` sizes the
    /// conntrack table (nil: as pinned, else the default); a resize carries the tracked
    /// flows over, most recently seen kept when the new table is smaller. `attachment` says how
    /// pods' programs sit on their hooks from now on (nil: as the last init chose, else filters);
    /// a change moves every attached pod, each hook never without netfence's program.
    public static func initialize(root: PinRoot, migrate: Bool, conntrackEntries: Int? = nil, attachment: Attachment? = nil,
                                  waitingUpTo timeout: Double = defaultLockTimeout) throws -> (Loader, InitReport) {
        try root.requireMounted()
        if let attachment { try requireAvailable(attachment) }
        var held: FileLock?
        for attempt in 1...3 where held == nil {
            try BPFFilesystem.makeDirectories(root.path)
            do {
                held = try lock(root, .exclusive, timeout)
            } catch LoaderError.notInitialized where attempt < 3 {
                continue  // a reset removed the folder between our mkdir and our lock
            }
        }
        guard let lock = held else { throw LoaderError.notInitialized(root: root.path) }
        var report = InitReport()
        let (state, stateMaps) = try LoaderState.load(pinningUnder: root.path, migrate: migrate)
        let previous = try state.rootMarker()
        let (datapath, datapathMaps, replacedConntrack) = try Datapath.load(pinningUnder: root.path, migrate: migrate,
                                                                            sameABI: previous?.abiVersion == RootMarker.currentABIVersion,
                                                                            conntrackEntries: conntrackEntries)
        // The flows the old table tracks go into the new one before any program writes it, and once more
        // (keeping what the new programs tracked meanwhile) when they have reached every pod.
        if let replacedConntrack { _ = try datapath.carryOverConntrack(from: replacedConntrack, keepingNewer: false) }
        try state.markRoot(attachment: attachment)
        report.maps.reused = stateMaps.reused + datapathMaps.reused
        report.maps.created = stateMaps.created + datapathMaps.created
        report.maps.migrated = stateMaps.migrated + datapathMaps.migrated
        let loader = Loader(root: root, datapath: datapath, state: state, lock: lock)
        let pods = try state.pods().sorted(by: { $0.key < $1.key })
        // Tries made anew (a first init, or a layout change): each attached pod's
        // policy goes where its record points before the programs that read it go live.
        let remade = Set(datapathMaps.created + datapathMaps.migrated)
        if !remade.isDisjoint(with: ["policies", "domain_rules"]) {
            let objects = try state.objects(), compiled = CompiledTries()
            try datapath.withSharedTries { tries in
                for (_, pod) in pods {
                    let policy = try loader.policy(for: pod, objects: objects, compiled: compiled)
                    try datapath.restoreLivePolicy(ifindex: pod.ifindex, policies: policy.policies, domainRules: policy.domainRules, tries: tries)
                }
            }
        }
        report.attachment = try loader.attachment()
        report.reattached = try loader.reattachPods(report.attachment)
        report.conntrackEntries = try datapath.fill(ofMap: "conntrack").maxEntries
        if let replacedConntrack {
            _ = try datapath.carryOverConntrack(from: replacedConntrack, keepingNewer: true)
            report.conntrackResize = (Int(try replacedConntrack.info().maxEntries), try datapath.fill(ofMap: "conntrack").entries)
        }
        report.reconciled = try loader.reconcile()
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
    /// namespace) for `pod` and enforces every applied object that selects it.
    /// Idempotent; a pod attached elsewhere before is moved.
    public func attach(_ pod: PodReference, interface: String, netns: String?, defaults: [Direction: PodDefault]) throws -> AttachReport {
        try requireWriter()
        try rollForwardIfInterrupted()
        let networkNamespace = try netns.map { try NetworkNamespace.named($0) } ?? .current
        var registration = PodRegistration(ifindex: 0, denyByDefault: [.ingress: defaults[.ingress] == .deny, .egress: defaults[.egress] == .deny],
                                           namespace: pod.namespace, name: pod.name, interface: interface, netns: netns ?? "")
        guard registration.fitsTheABI else { throw LoaderError.invalidPod("pod \(pod): a name is longer than netfence stores") }
        registration.ifindex = try networkNamespace.interfaceIndex(interface)

        var registrations = try state.registrations()
        if registrations.count >= DatapathLimits.pods, registrations.values.contains(where: \.detached) {
            try sweepDetachedPods(registrations)
            registrations = try state.registrations()
        }
        let pods = registrations.filter { !$0.value.detached }
        let existing = pods.first { $0.value.pod == pod }
        let podID: UInt32
        if let existing {
            podID = existing.key
        } else {
            guard let free = try state.nextPodID(free: { registrations[$0] == nil }) else {
                throw LoaderError.full("\(DatapathLimits.pods) pods are attached already")
            }
            podID = free
        }
        if let clash = pods.first(where: { $0.value.ifindex == registration.ifindex && $0.key != podID }) {
            throw LoaderError.invalidPod("interface index \(registration.ifindex) is already pod \(clash.value.pod)'s; "
                + "netfence keys pods by interface index, so all host veths must live in one network namespace")
        }
        let moved = existing.map { $0.value.ifindex != registration.ifindex || $0.value.netns != registration.netns
            || $0.value.interface != registration.interface } ?? false
        let policy = try policy(for: registration, objects: state.objects())

        // A moved pod leaves its old interface first. Then the registry (a kill
        // leaves a pod that status reports as drift), the pod's record and
        // tries, and last the filters.
        try state.beginChange(.attach)
        if moved, let old = existing?.value {
            // The pod keeps its id: its flows on the old interface go now (a sweep takes only ids of pods gone).
            try removeFromInterface(old, podID: podID)
            try datapath.flushConntrack(ifindex: old.ifindex)
        }
        // A new pod's id may be a swept pod's (no flows, grants or hits name it any more): its own event
        // level, its rate limiters and what they suppressed (kept after a detach until reported) go.
        if existing == nil {
            try datapath.resetEventState(podID: podID)
            for direction in Direction.allCases { try state.setReportedSuppressedEvents(EventCounts(), podID: podID, direction: direction) }
        }
        try state.register(registration, podID: podID)
        try datapath.withSharedTries { try swapPolicy(ifindex: registration.ifindex, podID: podID, policy, tries: $0) }
        try attachPrograms(registration, podID: podID)
        try state.finishChange()
        let record = try datapath.pod(ifindex: registration.ifindex)
        return AttachReport(podID: podID, ifindex: registration.ifindex, revision: record?.revision ?? 0, objects: policy.objects, moved: moved)
    }

    /// Removes the filters, the pod's record and tries, and marks the pod detached: its
    /// id stays taken (its conntrack entries, grants and rule hits read by no packet)
    /// until a sweep, one per `sweepEvery` detaches, deletes them all for many pods at once.
    public func detach(_ pod: PodReference) throws {
        try requireWriter()
        try rollForwardIfInterrupted()
        let registrations = try state.registrations()
        guard let (podID, registration) = registrations.first(where: { !$0.value.detached && $0.value.pod == pod }) else {
            throw LoaderError.unknownPod(pod)
        }
        try state.beginChange(.detach)
        try removeFromInterface(registration, podID: podID)
        var detached = registration
        detached.detached = true
        try state.register(detached, podID: podID)
        try state.finishChange()
        if registrations.values.count(where: \.detached) + 1 >= Self.sweepEvery {
            try sweepDetachedPods(try state.registrations())
        }
    }

    /// Detaches between sweeps: each sweep walks conntrack, grants and rule hits once for
    /// all of them (`loader reconcile` sweeps whatever is left).
    public static let sweepEvery = 64

    /// Deletes what every pod id no attached pod holds still names (detached pods', and
    /// any a killed change left), then frees the detached pods' ids. A kill in between
    /// leaves them detached for the next sweep.
    @discardableResult
    private func sweepDetachedPods(_ registrations: [UInt32: PodRegistration]) throws -> Datapath.Sweep {
        let attached = Set(registrations.filter { !$0.value.detached }.keys)
        let swept = try datapath.sweep { !attached.contains($0) }
        for (podID, registration) in registrations where registration.detached { try state.unregister(podID: podID) }
        return swept
    }

    // MARK: events

    /// Changes the datapath's runtime knobs (read, changed, written under the writer
    /// lock, so two callers changing different knobs both land); returns them before.
    @discardableResult
    public func changeSettings(_ change: (inout DatapathSettings) -> Void) throws -> DatapathSettings {
        try requireWriter()
        let before = try datapath.readSettings()
        var after = before
        change(&after)
        if after != before { try datapath.write(after) }
        return before
    }

    /// Gives `pod` its own event level (nil: the node's again); returns the one it had.
    @discardableResult
    public func setEventLevel(_ level: EventLevel?, for pod: PodReference) throws -> EventLevel? {
        try requireWriter()
        guard let (podID, _) = try state.pod(pod) else { throw LoaderError.unknownPod(pod) }
        let before = try datapath.eventLevel(podID: podID)
        try datapath.setEventLevel(level, podID: podID)
        return before
    }

    /// Pods with their own event level.
    public func ownEventLevels() throws -> [PodReference: EventLevel] {
        let pods = try state.pods()
        return Dictionary(uniqueKeysWithValues: try datapath.ownEventLevels().compactMap { podID, level in pods[podID].map { ($0.pod, level) } })
    }

    /// Attaches every pod's programs `attachment`'s way from now on (what `init --attach` does), each
    /// hook never without them; returns the pods moved.
    @discardableResult
    public func changeAttachment(to attachment: Attachment) throws -> [PodReference] {
        try requireWriter()
        try Self.requireAvailable(attachment)
        try state.markRoot(attachment: attachment)
        return try reattachPods(attachment)
    }

    private static func requireAvailable(_ attachment: Attachment) throws {
        if attachment != .tc, !TCAttachments.tcxAvailable {
            throw LoaderError.unsupported("this kernel has no tcx (Linux 6.6 on); attach through filters (--attach tc)")
        }
    }

    /// Puts the current programs on every attached pod's hooks `attachment`'s way (the root's).
    private func reattachPods(_ attachment: Attachment) throws -> [PodReference] {
        try state.pods().sorted(by: { $0.key < $1.key }).map { podID, pod in
            try attachPrograms(pod, podID: podID, attachment)
            return pod.pod
        }
    }

    /// How the pods' programs sit on their hooks, as the last init chose.
    public func attachment() throws -> Attachment {
        try state.rootMarker()?.attachment ?? .tc
    }

    // MARK: tc-then-tcx

    /// Attached pods with a hook still on its filter that `loader serve` is to move onto a tcx link
    /// (none unless the root attaches tc-then-tcx), by pod id.
    public func podsOnFilters() throws -> [UInt32: PodRegistration] {
        try Self.podsOnFilters(root, state)
    }

    /// As `podsOnFilters()`, read from the root's state alone (what the mover reads every second).
    static func podsOnFilters(_ root: PinRoot, _ state: LoaderState) throws -> [UInt32: PodRegistration] {
        guard try state.rootMarker()?.attachment == .tcThenTCX else { return [:] }
        let linked = Set(linkPins(root).filter { !$0.staged }.map(\.name))
        return try state.pods().filter { podID, _ in
            TCDirection.allCases.contains { !linked.contains(linkName(podID: podID, hook: $0)) }
        }
    }

    /// Attaches a tcx link to each hook of the pod's interface that has none pinned yet, running the
    /// programs its filters run (the link runs ahead of them, so nothing changes for a packet), and
    /// pins none: `adoptLinks` does, under the root's lock. Each link waits for an RCU grace period
    /// (~15–20 ms) inside the kernel; made here, without the root's lock, no other caller waits for it.
    /// Throws, having detached what it made, when the interface is another than the pod's now (made anew).
    public func makeLinks(podID: UInt32, for pod: PodRegistration) throws -> [TCXLink] {
        let namespace = try pod.netns.isEmpty ? nil : NetworkNamespace.named(pod.netns)
        var links: [TCXLink] = []
        do {
            for hook in TCDirection.allCases where try TCXLink.pinned(at: linkPin(podID: podID, hook: hook)) == nil {
                let link = try TCAttachments.attachLink(datapath.program(onHook: hook), interface: pod.interface, direction: hook, in: namespace)
                links.append(link)
                if link.ifindex != pod.ifindex {
                    throw LoaderError.invalidPod("\(pod.interface) is not pod \(pod.pod)'s interface any more (index \(link.ifindex), not \(pod.ifindex))")
                }
            }
        } catch {
            for link in links { try? link.detach() }
            throw error
        }
        return links
    }

    /// Pins links `makeLinks` made for the pod and removes the filters they run ahead of, hook by hook (a
    /// kill in between leaves a hook with both, the link running: what the next change or reconcile finishes).
    /// When the pod was detached or moved meanwhile, the root attaches another way now, or a change is
    /// unfinished, the links are detached instead and nothing changes: returns whether they were kept.
    /// Each link runs the current programs first (an init may have replaced them since it was made).
    @discardableResult
    public func adoptLinks(_ links: [TCXLink], podID: UInt32, for pod: PodRegistration) throws -> Bool {
        try requireWriter()
        var pending = links
        defer { for link in pending { try? link.detach() } }
        guard try state.pendingChange() == nil, try attachment() == .tcThenTCX, try state.registrations()[podID] == pod else { return false }
        let namespace = try pod.netns.isEmpty ? nil : NetworkNamespace.named(pod.netns)
        try BPFFilesystem.makeDirectories(root.appending(Self.linksFolder))
        while let link = pending.first {
            try link.update(datapath.program(onHook: link.direction))
            try link.pin(at: linkPin(podID: podID, hook: link.direction))
            pending.removeFirst()
            try removeFilter(pod, hook: link.direction, in: namespace)
        }
        return true
    }

    /// Moves `pod` onto tcx links now, holding the root's lock throughout (`LinkMover` makes the links
    /// without it); returns whether it moved (false: the root does not attach tc-then-tcx).
    @discardableResult
    public func moveOntoLinks(_ pod: PodReference) throws -> Bool {
        try requireWriter()
        guard let (podID, registration) = try state.pod(pod) else { throw LoaderError.unknownPod(pod) }
        guard try attachment() == .tcThenTCX else { return false }
        return try adoptLinks(try makeLinks(podID: podID, for: registration), podID: podID, for: registration)
    }

    /// Puts the shared programs on both hooks of the pod's interface `attachment`'s way (nil: the root's),
    /// replacing what is there atomically, then takes away the other way's (which ran until then, or never).
    /// Under tc-then-tcx a hook that `loader serve` moved onto a link keeps it; the others get filters.
    private func attachPrograms(_ pod: PodRegistration, podID: UInt32, _ attachment: Attachment? = nil) throws {
        let namespace = try pod.netns.isEmpty ? nil : NetworkNamespace.named(pod.netns)
        let attachment = try attachment ?? self.attachment()
        for hook in TCDirection.allCases {
            let program = datapath.program(onHook: hook)
            switch attachment {
            case .tcx:
                try attachLink(program, pod, podID: podID, hook: hook, in: namespace)
                try removeFilter(pod, hook: hook, in: namespace)  // the link runs ahead of it already
            case .tcThenTCX where try updateLink(program, pod, podID: podID, hook: hook):
                try removeFilter(pod, hook: hook, in: namespace)
            case .tc, .tcThenTCX:
                try TCAttachments.attach(program, interface: pod.interface, direction: hook, in: namespace,
                                         handle: Self.filterHandle, priority: Self.filterPriority)
                try unpinLink(podID: podID, hook: hook)  // a link ran ahead of the filter until now
            }
        }
    }

    /// Where a pod's tcx link on `hook` of its host veth is pinned (the pin keeps it attached).
    func linkPin(podID: UInt32, hook: TCDirection) -> String {
        root.appending("\(Self.linksFolder)/\(Self.linkName(podID: podID, hook: hook))")
    }

    static func linkName(podID: UInt32, hook: TCDirection) -> String { "\(podID)-\(hook.rawValue)" }

    static let linksFolder = "links"

    /// Points the pod's pinned link at `program` (atomically), or attaches and pins a new one when
    /// none is pinned for this interface (a first attach, a moved pod, an interface made anew).
    private func attachLink(_ program: BPFProgram, _ pod: PodRegistration, podID: UInt32, hook: TCDirection, in namespace: NetworkNamespace?) throws {
        if try updateLink(program, pod, podID: podID, hook: hook) { return }
        try BPFFilesystem.makeDirectories(root.appending(Self.linksFolder))
        try TCAttachments.attachLink(program, interface: pod.interface, direction: hook, in: namespace).pin(at: linkPin(podID: podID, hook: hook))
    }

    /// Points the pod's link on `hook` at `program` when one is pinned for its interface; false when none is.
    private func updateLink(_ program: BPFProgram, _ pod: PodRegistration, podID: UInt32, hook: TCDirection) throws -> Bool {
        guard let pinned = try TCXLink.pinned(at: linkPin(podID: podID, hook: hook)), pinned.ifindex == pod.ifindex, pinned.direction == hook else {
            return false
        }
        try pinned.update(program)
        return true
    }

    /// Unpins the pod's link on `hook`, which detaches it; none pinned is fine. The links folder goes with its last pin.
    private func unpinLink(podID: UInt32, hook: TCDirection) throws {
        try unpinLink(at: linkPin(podID: podID, hook: hook))
    }

    /// Unpins the link pinned at `path` (below the links folder), as `unpinLink(podID:hook:)`, having
    /// taken its program off the hook first: when the command returns, the hook runs it no more.
    private func unpinLink(at path: String) throws {
        try? TCXLink.pinned(at: path)?.detach()  // a link whose interface is gone is off its hook already
        if unlink(path) == 0 {
            _ = rmdir(root.appending(Self.linksFolder))  // ENOTEMPTY while other pods' links are pinned
        } else if errno != ENOENT {
            throw SystemError("unpin tcx link", path, errno: errno)
        }
    }

    /// Removes netfence's filter from the pod's `hook`; the interface or the filter gone already is fine.
    private func removeFilter(_ pod: PodRegistration, hook: TCDirection, in namespace: NetworkNamespace?) throws {
        do {
            try TCAttachments.detach(interface: pod.interface, direction: hook, in: namespace, handle: Self.filterHandle, priority: Self.filterPriority)
        } catch let error as SystemError where [ENOENT, ENODEV, EINVAL].contains(error.errno) {}
    }

    /// Undoes a pod's presence on an interface (filters and links); an interface already gone is fine.
    private func removeFromInterface(_ pod: PodRegistration, podID: UInt32) throws {
        let namespace = pod.netns.isEmpty ? nil : try? NetworkNamespace.named(pod.netns)
        for hook in TCDirection.allCases {
            if pod.netns.isEmpty || namespace != nil { try removeFilter(pod, hook: hook, in: namespace) }
            try unpinLink(podID: podID, hook: hook)
        }
        try datapath.remove(ifindex: pod.ifindex)
    }

    // MARK: objects

    /// What `apply` or `delete` did.
    public struct ApplyReport: Sendable {
        public var objects: [ObjectKey] = []
        /// Objects identical to their applied version: nothing was written for them.
        public var unchanged: [ObjectKey] = []
        /// Pods whose policy was replaced, with their new revision.
        public var pods: [(pod: PodReference, revision: UInt32)] = []
        public var warnings: [String] = []

        /// Nothing changed.
        public init() {}
    }

    /// Applies objects: each replaces its previous version (same kind, namespace,
    /// name). The new policy of every pod the change touches is compiled first;
    /// if any does not fit, nothing is stored or changed. Then the objects are
    /// stored, each pod's policy swapped, and the replaced versions removed.
    /// An object identical to its applied version changes nothing and is not
    /// written again (agents re-apply what they hold): it keeps its version and
    /// its rules' ids, so the pods it selects keep their tries and revisions.
    public func apply(_ input: ParsedPolicies) throws -> ApplyReport {
        try requireWriter()
        try rollForwardIfInterrupted()
        let versions = try state.allVersions()
        let current = LoaderState.live(versions)
        let applied = Dictionary(current.map { ($0.object.key, $0.object) }) { first, _ in first }
        let changed = input.objects.filter { applied[$0.key] != $0 }
        var report = ApplyReport()
        report.unchanged = input.objects.filter { applied[$0.key] == $0 }.map(\.key)
        report.warnings = input.warnings
        guard !changed.isEmpty else { return report }
        let replacedKeys = Set(changed.map(\.key))
        let indexes = try state.freeIndexes(count: changed.count)
        let next = current.filter { !replacedKeys.contains($0.object.key) }.map { (index: $0.index, object: $0.object) }
            + zip(indexes, changed).map { (index: $0.0, object: $0.1) }
        let touched = selectedPods(changed + current.filter { replacedKeys.contains($0.object.key) }.map(\.object))
        let policies = try compile(podsNamed: touched, objects: next)

        try state.beginChange(.apply)
        for (index, object) in zip(indexes, changed) { try state.store(object, at: index) }
        report.objects = changed.map(\.key)
        report.pods = try swap(policies)
        // Every older version goes, also one a killed apply left beside the live one; their rules' hits with them.
        let replaced = versions.filter { replacedKeys.contains($0.object.key) }
        try state.remove(replaced)
        try forgetHits(ofObjects: Set(replaced.map(\.index)))
        try state.finishChange()
        return report
    }

    /// Removes objects by key; pods they selected fall back to what remains.
    public func delete(_ keys: [ObjectKey]) throws -> ApplyReport {
        try requireWriter()
        try rollForwardIfInterrupted()
        let versions = try state.allVersions()
        let current = LoaderState.live(versions)
        let doomed = current.filter { keys.contains($0.object.key) }
        let remaining = current.filter { !keys.contains($0.object.key) }.map { (index: $0.index, object: $0.object) }
        let policies = try compile(podsNamed: selectedPods(doomed.map(\.object)), objects: remaining)
        var report = ApplyReport()
        report.objects = doomed.map(\.object.key)
        try state.beginChange(.delete)
        report.pods = try swap(policies)
        let removed = versions.filter { keys.contains($0.object.key) }
        try state.remove(removed)
        try forgetHits(ofObjects: Set(removed.map(\.index)))
        try state.finishChange()
        return report
    }

    /// Drops the hit counts of rules of removed object versions: their ids are never used again.
    private func forgetHits(ofObjects indexes: Set<UInt32>) throws {
        guard !indexes.isEmpty else { return }
        try datapath.removeRuleHits { hit in RuleID(rawValue: hit.ruleID).map { indexes.contains($0.objectIndex) } ?? false }
    }

    private func selectedPods(_ objects: [PolicyObject]) -> Set<PodReference> {
        Set(objects.flatMap(\.pods).map(\.pod))
    }

    /// The policy of every attached pod in `selected`, compiled against `objects`
    /// (pods selected by the same objects compile once).
    func compile(podsNamed selected: Set<PodReference>, objects: [(index: UInt32, object: PolicyObject)])
        throws -> [(podID: UInt32, pod: PodRegistration, policy: PodPolicy)] {
        let compiled = CompiledTries()
        return try state.pods().sorted { $0.key < $1.key }.filter { selected.contains($0.value.pod) }.map {
            ($0.key, $0.value, try policy(for: $0.value, objects: objects, compiled: compiled))
        }
    }

    /// Swaps a pod's policy in under the node's next revision (a value no pod had before).
    private func swapPolicy(ifindex: UInt32, podID: UInt32, _ policy: PodPolicy, tries: SharedTries) throws {
        let revision = try state.nextRevision { try datapath.registeredPods().map(\.record.revision).max() ?? 0 }
        try datapath.apply(ifindex: ifindex, podID: podID, states: policy.states, policies: policy.policies,
                           domainRules: policy.domainRules, revision: revision, auditStates: policy.auditStates, tries: tries)
    }

    /// Swaps each pod's policy in, sharing tries among pods (and with pods already enforcing an identical
    /// policy); the tries no pod reads any more go last.
    private func swap(_ policies: [(podID: UInt32, pod: PodRegistration, policy: PodPolicy)]) throws -> [(pod: PodReference, revision: UInt32)] {
        try datapath.withSharedTries { tries in
            try policies.map { podID, pod, policy in
                try swapPolicy(ifindex: pod.ifindex, podID: podID, policy, tries: tries)
                return (pod.pod, try datapath.pod(ifindex: pod.ifindex)?.revision ?? 0)
            }
        }
    }

    private func policy(for pod: PodRegistration, objects: [StoredObject], compiled: CompiledTries = CompiledTries()) throws -> PodPolicy {
        try policy(for: pod, objects: objects.map { (index: $0.index, object: $0.object) }, compiled: compiled)
    }

    private func policy(for pod: PodRegistration, objects: [(index: UInt32, object: PolicyObject)],
                        compiled: CompiledTries = CompiledTries()) throws -> PodPolicy {
        do {
            return try PodPolicyBuilder.build(
                pod: pod.pod,
                defaults: [.ingress: pod.denyByDefault[.ingress] == true ? .deny : .allow, .egress: pod.denyByDefault[.egress] == true ? .deny : .allow],
                objects: objects, compiled: compiled)
        } catch {
            throw LoaderError.policy(error.description)
        }
    }

    // MARK: agreement of what is stored and what is enforced

    /// How the pod's live policy differs from what the stored objects give it, in
    /// words (empty: they agree).
    /// Tries compiled and read for one pod are reused for the next (`check`).
    func enforcementDrift(_ pod: PodRegistration, objects: [StoredObject], check: DriftCheck = DriftCheck()) throws -> [String] {
        let expected = try policy(for: pod, objects: objects, compiled: check.compiled)
        guard let live = try datapath.livePolicy(ifindex: pod.ifindex, contents: check.contents) else { return ["no datapath record on ifindex \(pod.ifindex)"] }
        var problems: [String] = []
        for direction in Direction.allCases {
            let want = expected.states[direction, default: .defaultAllow], have = live.record.states[direction, default: .defaultAllow]
            if want != have { problems.append("\(direction) is \(have.name), the stored objects make it \(want.name)") }
            switch (expected.policies[direction], live.policies[direction]) {
            case (nil, nil): break
            case (let want?, let have?) where want == have: break
            case (let want?, let have?):
                let differing = Set(want.entries.keys).symmetricDifference(have.entries.keys).count
                    + want.entries.filter { have.entries[$0.key] != nil && have.entries[$0.key] != $0.value }.count
                problems.append("\(direction) trie: \(differing) of \(want.entries.count) prefixes differ from the stored objects")
            case (nil, _?): problems.append("\(direction) has a trie the stored objects do not give it")
            case (_?, nil): problems.append("\(direction) has no trie, the stored objects give it \(expected.policies[direction]!.entries.count) prefixes")
            }
        }
        if expected.domainRules != live.domainRules || !expected.domainRules.isEmpty != live.record.hasDomainRules {
            problems.append("egress domain rules differ from the stored objects")
        }
        if expected.auditStates != live.record.auditStates {
            problems.append("the states with audit objects enforced differ from the stored objects")
        }
        return problems
    }

    /// What a drift check of many pods compiles and reads once.
    struct DriftCheck {
        let compiled = CompiledTries()
        let contents = Datapath.TrieContents()
    }

    /// What `reconcile` repaired.
    public struct ReconcileReport: Sendable {
        /// Pods whose policy was swapped to what is stored, with what was wrong.
        public var repaired: [(pod: PodReference, problems: [String])] = []
        /// Pods whose missing filters (or links) were attached again.
        public var reattached: [PodReference] = []
        /// Interfaces that carried netfence's programs without a pod: filters removed.
        public var strayRemoved: [String] = []
        /// Links pinned for no attached pod (a detach or a move killed half-way), unpinned: their paths.
        public var strayLinksUnpinned: [String] = []
        /// Object versions a killed apply left beside the live one, removed.
        public var supersededVersions = 0
        /// Tries a killed change built and no pod reads, deleted.
        public var orphanedTries = 0
        /// Domain rule sets a killed change left outside every pod's live slot, deleted.
        public var strayDomainRules = 0
        /// Detached pods whose ids the sweep freed, and what it deleted that named ids of no attached pod.
        public var sweptPods = 0
        public var swept = Datapath.Sweep()
        /// The interrupted change that was found, if any.
        public var interrupted: PendingChange?
    }

    /// Rolls every pod forward to what the stored objects give it: a pod whose
    /// live policy differs is swapped (atomically, as apply does), missing
    /// filters are attached, netfence's filters on interfaces of no pod removed,
    /// and versions a killed apply left behind dropped. Idempotent.
    @discardableResult
    public func reconcile() throws -> ReconcileReport {
        try requireWriter()
        var report = ReconcileReport(interrupted: try state.pendingChange())
        try state.beginChange(.reconcile)
        datapath.countUnseenChanges()
        let versions = try state.allVersions()
        let live = LoaderState.live(versions)
        let liveIndexes = Set(live.map(\.index))
        let superseded = versions.filter { !liveIndexes.contains($0.index) }
        try state.remove(superseded)
        try state.collectGarbage()
        report.supersededVersions = superseded.count
        let (pods, attachment, stray) = try snapshot(objects: live)
        let check = DriftCheck()
        try datapath.withSharedTries { tries in
            for pod in pods {
                let name = pod.registration.pod
                let problems = try enforcementDrift(pod.registration, objects: live, check: check)
                if !problems.isEmpty {
                    let policy = try policy(for: pod.registration, objects: live, compiled: check.compiled)
                    try swapPolicy(ifindex: pod.registration.ifindex, podID: pod.podID, policy, tries: tries)
                    report.repaired.append((name, problems))
                }
                if !pod.missingHooks.isEmpty || !pod.shadowedFilters.isEmpty {
                    try attachPrograms(pod.registration, podID: pod.podID, attachment)
                    report.reattached.append(name)
                }
            }
        }
        try TrieKeeper.settleMarksUnlessKept(root, datapath)
        report.orphanedTries = try datapath.releaseOrphanedTries()
        report.strayDomainRules = try datapath.releaseStrayDomainRules()
        let registrations = try state.registrations()
        report.sweptPods = registrations.values.count(where: \.detached)
        report.swept = try sweepDetachedPods(registrations)
        for attachment in stray where attachment.kind == .tc {
            let namespace = attachment.namespace == NetworkNamespace.current.name ? nil : try? NetworkNamespace.named(attachment.namespace)
            try? TCAttachments.detach(interface: attachment.interface, direction: attachment.direction, in: namespace,
                                      handle: Self.filterHandle, priority: Self.filterPriority)
            report.strayRemoved.append(attachment.summary)
        }
        // Links pinned for no attached pod (a detach or a move killed before it unpinned them), and pins
        // staged for a rename a kill prevented, go with their pins.
        let attached = Set(try state.registrations().filter { !$0.value.detached }.keys)
        for pin in Self.linkPins(root) where pin.staged || !attached.contains(pin.podID) {
            let path = root.appending("\(Self.linksFolder)/\(pin.name)")
            try unpinLink(at: path)
            report.strayLinksUnpinned.append(path)
        }
        try state.finishChange()
        return report
    }

    /// The links pinned under the root as netfence names them (`<pod id>-<hook>`, and `…_next` for one
    /// staged by `TCXLink.pin`); other entries are not netfence's.
    private static func linkPins(_ root: PinRoot) -> [(name: String, podID: UInt32, staged: Bool)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.appending(linksFolder))) ?? []
        return names.compactMap { name in
            guard let match = name.wholeMatch(of: /([0-9]+)-(?:ingress|egress)(_next)?/), let podID = UInt32(match.1) else { return nil }
            return (name, podID, match.2 != nil)
        }
    }

    /// A kill left a change half-done: roll forward before the next one.
    private func rollForwardIfInterrupted() throws {
        if try state.pendingChange() != nil { try reconcile() }
    }

    // MARK: status

    /// One attached pod as status reports it.
    public struct AttachedPod: Sendable {
        public let podID: UInt32
        public let registration: PodRegistration
        /// The live record, nil when the pod's record is missing (drift).
        public let record: PodRecord?
        public let objects: [ObjectKey]
        /// The hooks of its interface that do not carry netfence's current programs the way the root attaches them.
        public let missingHooks: [TCDirection]
        /// How each hook should carry them: as the root attaches programs (under tc-then-tcx, a link once serve moved it).
        public let hookKinds: [TCDirection: ProgramAttachment.Kind]
        /// Hooks whose link runs ahead of a filter of netfence's that a kill left there (it never runs; reconcile removes it).
        let shadowedFilters: [TCDirection]
        /// How what the pod enforces differs from what the stored objects give it.
        public var enforcementDrift: [String] = []

        /// Why the pod does not enforce what is stored, as lines (none: it does): missing filters or links, then drift.
        public var problems: [String] {
            missingHooks.map { "\(registration.interface) has no netfence \($0.rawValue) \(hookKinds[$0] == .tcx ? "tcx link" : "filter")" }
                + enforcementDrift
        }
    }

    /// What `status` reports: one consistent view, read under the shared lock.
    public struct Status: Sendable {
        public var pods: [AttachedPod]
        public var objects: [StoredObject]
        /// Interfaces carrying netfence's programs that no registered pod owns.
        public var stray: [ProgramAttachment]
        /// How the root attaches pods' programs.
        public var attachment: Attachment
        /// A change a killed process began and did not finish.
        public var interrupted: PendingChange?
        /// Detached pods whose ids, flows, grants and rule hits wait for a sweep (every `sweepEvery`
        /// detaches, or reconcile); not drift: no packet reads them.
        public var awaitingSweep: Int

        /// Every disagreement, as lines: what status calls drift.
        public var drift: [String] {
            var lines: [String] = []
            if let interrupted {
                lines.append("a '\(interrupted.operation)' by pid \(interrupted.processID) did not finish; "
                    + "the next change, or 'netfence loader reconcile', rolls forward to what is stored")
            }
            for pod in pods {
                lines += pod.problems.map { "\(pod.registration.pod): \($0)" }
            }
            return lines + stray.map { "\($0.summary) carries netfence's program but no pod is attached there" }
        }
    }

    /// Pods with their live state and drift, and interfaces carrying netfence's
    /// programs that no registered pod owns; under the shared lock (unless this
    /// loader holds the exclusive one), so no change is seen half-made.
    /// The shared lock a reader takes for one consistent view; none for a loader that holds the writer's.
    func readLock(waitingUpTo timeout: Double) throws -> FileLock? {
        writeLock == nil ? try Self.lock(root, .shared, timeout) : nil
    }

    public func status(waitingUpTo timeout: Double = defaultLockTimeout) throws -> Status {
        let held = try readLock(waitingUpTo: timeout)
        defer { withExtendedLifetime(held) {} }
        let objects = try state.objects(), registrations = try state.registrations()
        var (pods, attachment, stray) = try snapshot(objects: objects, registrations: registrations)
        let check = DriftCheck()
        for index in pods.indices { pods[index].enforcementDrift = try enforcementDrift(pods[index].registration, objects: objects, check: check) }
        return Status(pods: pods, objects: objects, stray: stray, attachment: attachment, interrupted: try state.pendingChange(),
                      awaitingSweep: registrations.values.count(where: \.detached))
    }

    /// One pod's live state and drift as `status` reads it, nil when it is not attached:
    /// what a caller waiting for the pod's policy polls (only its namespace is scanned).
    public func status(of pod: PodReference, waitingUpTo timeout: Double = defaultLockTimeout) throws -> AttachedPod? {
        let held = try readLock(waitingUpTo: timeout)
        defer { withExtendedLifetime(held) {} }
        let objects = try state.objects()
        guard var attached = try snapshot(objects: objects, only: pod).pods.first else { return nil }
        attached.enforcementDrift = try enforcementDrift(attached.registration, objects: objects)
        return attached
    }

    /// Attached pods (or only `only`) with their records and filters or links, how the root attaches them, and
    /// netfence's programs on interfaces of no pod; `registrations` when the caller read them already.
    private func snapshot(objects: [StoredObject], only: PodReference? = nil, registrations: [UInt32: PodRegistration]? = nil) throws
        -> (pods: [AttachedPod], attachment: Attachment, stray: [ProgramAttachment]) {
        let programs = try datapath.programIDsByHook()
        let pods = try (registrations ?? state.registrations()).filter { !$0.value.detached && (only == nil || $0.value.pod == only) }
            .sorted { $0.key < $1.key }
        var namespaces: [String: NetworkNamespace] = [:]
        for (_, pod) in pods {
            if pod.netns.isEmpty { namespaces[""] = .current } else if let namespace = try? NetworkNamespace.named(pod.netns) { namespaces[pod.netns] = namespace }
        }
        let attachments = TCAttachments.scan(Array(namespaces.values))
        let ours = attachments.filter { programs.values.contains($0.programID) }
        let attachment = try attachment()
        let linked = attachment == .tcThenTCX ? Set(Self.linkPins(root).filter { !$0.staged }.map(\.name)) : []
        var result: [AttachedPod] = []
        for (podID, pod) in pods {
            let namespaceName = pod.netns.isEmpty ? NetworkNamespace.current.name : pod.netns
            let kinds = Dictionary(uniqueKeysWithValues: TCDirection.allCases.map { hook in
                (hook, linked.contains(Self.linkName(podID: podID, hook: hook)) ? ProgramAttachment.Kind.tcx : attachment.newPodHookKind)
            })
            // Attached the other way counts as missing: an init that changed the way was killed before it moved this pod.
            let onPod = ours.filter { $0.namespace == namespaceName && $0.interface == pod.interface }
            let missing = TCDirection.allCases.filter { direction in
                !onPod.contains { $0.direction == direction && $0.programID == programs[direction] && $0.kind == kinds[direction] }
            }
            let shadowed = TCDirection.allCases.filter { direction in
                kinds[direction] == .tcx && onPod.contains { $0.direction == direction && $0.kind == .tc }
            }
            result.append(AttachedPod(podID: podID, registration: pod, record: try datapath.pod(ifindex: pod.ifindex),
                                   objects: objects.filter { $0.object.selects(pod.pod) }.map(\.object.key),
                                   missingHooks: missing, hookKinds: kinds, shadowedFilters: shadowed))
        }
        let registered = Set(pods.map { "\($0.value.netns.isEmpty ? NetworkNamespace.current.name : $0.value.netns)/\($0.value.interface)" })
        // With one pod asked for, the others' filters are not stray: none are reported.
        let stray = only != nil ? [] : ours.filter { !registered.contains("\($0.namespace)/\($0.interface)") }
        return (result, attachment, stray)
    }

    // MARK: reset

    /// What `reset` removed, and what it left because netfence did not create it.
    public struct ResetReport: Sendable {
        public var pods: [PodReference] = []
        public var removed: [String] = []
        public var kept: [String] = []
        /// The root did not exist: nothing to do.
        public var absent = false
    }

    /// Removes what netfence put on the node under `root`: every pod's filters,
    /// then the pins netfence's layout names (maps, programs, state; maps and
    /// programs go with their last reference), the marker last, and each folder
    /// once nothing else is in it. Anything else under the root stays. Refuses a
    /// folder without netfence's marker; never follows a symlink.
    public static func reset(root: PinRoot, waitingUpTo timeout: Double = defaultLockTimeout) throws -> ResetReport {
        var report = ResetReport()
        guard root.exists else {
            report.absent = true
            return report
        }
        try root.requireMounted()
        let held = try lock(root, .exclusive, timeout)
        guard try LoaderState.isMarked(root.path) else { throw LoaderError.notARoot(root: root.path) }
        if let loader = try? Loader(root: root, lock: held) {
            for (podID, pod) in try loader.state.pods().sorted(by: { $0.key < $1.key }) {
                try loader.removeFromInterface(pod, podID: podID)
                report.pods.append(pod.pod)
            }
        }
        (report.removed, report.kept) = try removePins(of: root)
        withExtendedLifetime(held) {}
        return report
    }

    /// Removes every pin of a root this process made for itself and no one else uses, without the
    /// root's lock (this process may hold it): what a stop signal leaves of a benchmark's or the
    /// demo's root. Its pods' filters go with their namespaces.
    public static func discardThrowaway(root: PinRoot) {
        _ = try? removePins(of: root)
    }

    /// Unpins the programs, maps and state (the marker last) and removes the root's folder when nothing else is in it.
    private static func removePins(of root: PinRoot) throws -> (removed: [String], kept: [String]) {
        var (removed, kept) = ([String](), [String]())
        let layout: [(folder: String, names: Set<String>)] = [
            (linksFolder, Set(linkPins(root).map(\.name))),
            ("programs", Set(Datapath.programNames.flatMap { [$0, Datapath.stagedProgramName($0)] })),
            ("maps", Set(Datapath.mapLayouts.keys)),
            ("state", LoaderState.mapNames.subtracting([LoaderState.markerName])),
            ("state", [LoaderState.markerName]),
        ]
        for (folder, names) in layout {
            let removal = try BPFFilesystem.removePins(names, in: folder, under: root.path)
            removed += removal.removed
            if names.contains(LoaderState.markerName) || folder != "state" { kept += removal.kept }
        }
        if kept.isEmpty, rmdir(root.path) != 0, errno != ENOENT {
            kept.append(contentsOf: (try? FileManager.default.contentsOfDirectory(atPath: root.path))?.map { root.appending($0) } ?? [])
        }
        return (removed, kept)
    }
}

extension Attachment {
    /// How a pod attached now carries its programs in a scan of its hooks (tc-then-tcx: a filter, until serve moves it).
    public var newPodHookKind: ProgramAttachment.Kind { self == .tcx ? .tcx : .tc }

    /// As `loader init` and `loader status` say it.
    public var summary: String {
        switch self {
        case .tc: "tc filters (cls_bpf on clsact)"
        case .tcx: "tcx links"
        case .tcThenTCX: "tc filters, moved onto tcx links by 'loader serve' once a pod has stayed"
        }
    }
}
