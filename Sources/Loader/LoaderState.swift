import BPFKit
import BPFObjects
import DatapathModel
import Foundation
import Glibc
import HostKit
import PolicyInput

/// An applied object version and the index its rule ids carry.
public struct StoredObject: Sendable {
    public let index: UInt32
    public let object: PolicyObject
    public let appliedAt: Date
}

/// The loader's state in bpffs (`bpf/loader_state.bpf.c`, pinned under ROOT/state):
/// attached pods and applied objects (in `PolicyObjectCodec`'s form), so any
/// later process sees them.
public final class LoaderState {
    /// The maps of `bpf/loader_state.bpf.c`, as they are pinned under ROOT/state.
    static let mapNames: Set<String> = ["root_marker", "pending_change", "loader_counters", "pod_registry", "policy_manifests", "policy_chunks",
                                        "retired_objects", "dns_proxy_stats", "events_reported_lost",
                                        "events_reported_suppressed"]
    /// The map whose entry makes a folder a netfence root.
    static let markerName = "root_marker"

    let marker: BPFMap
    let pending: BPFMap
    let counters: BPFMap
    let registry: BPFMap
    let manifests: BPFMap
    let chunks: BPFMap
    let retired: BPFMap
    let dnsStats: BPFMap
    let reportedLost: BPFMap
    let reportedSuppressed: BPFMap

    private init(object: BPFObjectFile) throws {
        marker = try object.map(named: Self.markerName)
        pending = try object.map(named: "pending_change")
        counters = try object.map(named: "loader_counters")
        registry = try object.map(named: "pod_registry")
        manifests = try object.map(named: "policy_manifests")
        chunks = try object.map(named: "policy_chunks")
        retired = try object.map(named: "retired_objects")
        dnsStats = try object.map(named: "dns_proxy_stats")
        reportedLost = try object.map(named: "events_reported_lost")
        reportedSuppressed = try object.map(named: "events_reported_suppressed")
    }

    private init(pinnedUnder root: String) throws {
        func pinned(_ name: String) throws -> BPFMap {
            guard let map = try BPFFilesystem.pinnedMap(at: "\(root)/state/\(name)") else { throw LoaderError.notInitialized(root: root) }
            return map
        }
        marker = try pinned(Self.markerName)
        pending = try pinned("pending_change")
        counters = try pinned("loader_counters")
        registry = try pinned("pod_registry")
        manifests = try pinned("policy_manifests")
        chunks = try pinned("policy_chunks")
        retired = try pinned("retired_objects")
        dnsStats = try pinned("dns_proxy_stats")
        reportedLost = try pinned("events_reported_lost")
        reportedSuppressed = try pinned("events_reported_suppressed")
    }

    /// Creates or reuses the state maps under `root`/state.
    static func load(pinningUnder root: String, migrate: Bool) throws -> (LoaderState, PinReport) {
        let (object, report) = try BPFObjectFile.load(bytes: EmbeddedBPFObject.loader_state.bytes, name: "loader_state",
                                                      pinningMapsIn: "\(root)/state", migrate: migrate)
        return (try LoaderState(object: object), report)
    }

    static func open(pinnedUnder root: String) throws -> LoaderState {
        try LoaderState(pinnedUnder: root)
    }

    // MARK: the root

    /// The marker as the last init left it (nil: none yet).
    func rootMarker() throws -> RootMarker? {
        try marker.lookup(key: bytes(0)).flatMap(RootMarker.decode)
    }

    /// Marks the root as initialized by this binary's ABI (its creation time kept) attaching pods by
    /// `attachment` (nil: as before).
    func markRoot(attachment: Attachment?) throws {
        let previous = try rootMarker()
        let marker = RootMarker(createdNanoseconds: previous?.createdNanoseconds ?? HostClock.realtime.nanoseconds,
                                attachment: attachment ?? previous?.attachment ?? .tc)
        try self.marker.update(key: bytes(0), value: marker.encode())
    }

    /// Whether `root` holds netfence's marker: the pinned map, written or (an init
    /// killed before writing it) still empty.
    static func isMarked(_ root: String) throws -> Bool {
        guard let map = try? BPFFilesystem.pinnedMap(at: "\(root)/state/\(markerName)"),
              case let info = try map.info(), info.type == .array, info.valueSize == UInt32(RootMarker.size),
              let value = try map.lookup(key: withUnsafeBytes(of: UInt32(0)) { Array($0) }) else { return false }
        return RootMarker.decode(value) != nil || value.allSatisfy { $0 == 0 }
    }

    // MARK: changes in flight

    /// The change a process began and did not finish (it was killed), if any.
    public func pendingChange() throws -> PendingChange? {
        try pending.lookup(key: bytes(0)).flatMap(PendingChange.decode)
    }

    func beginChange(_ operation: PendingChange.Operation) throws {
        let change = PendingChange(operation: operation, processID: UInt32(getpid()), startedNanoseconds: HostClock.realtime.nanoseconds)
        try pending.update(key: bytes(0), value: change.encode())
    }

    func finishChange() throws {
        try pending.update(key: bytes(0), value: PendingChange.none)
    }

    // MARK: what only grows

    /// The counters as stored: what a watcher compares to see that a change took a revision or a pod id.
    func countersRecord() throws -> [UInt8]? {
        try counters.lookup(key: bytes(0))
    }

    private func readCounters() throws -> (revision: UInt32, podID: UInt32) {
        let read = LoaderCounters.decode(try counters.lookup(key: bytes(0)) ?? [])
        return (read.lastRevision, read.nextPodID)
    }

    private func writeCounters(revision: UInt32, podID: UInt32) throws {
        try counters.update(key: bytes(0), value: LoaderCounters(lastRevision: revision, nextPodID: podID).encode())
    }

    /// The next revision of the node: above every one issued before. A counter
    /// still at 0 (a node from before it existed) starts above `liveMaximum`, the
    /// highest revision a record holds. Taken under the writer lock.
    func nextRevision(liveMaximum: () throws -> UInt32) throws -> UInt32 {
        let current = try readCounters()
        let next = (current.revision == 0 ? try liveMaximum() : current.revision) &+ 1
        try writeCounters(revision: next, podID: current.podID)
        return next
    }

    /// A free pod id, the first from the one after the id handed out last (round-robin; 0 on a new node).
    func nextPodID(free: (UInt32) -> Bool) throws -> UInt32? {
        let current = try readCounters()
        let count = UInt32(DatapathLimits.pods)
        for step in 0..<count {
            let candidate = (current.podID &+ step) % count
            if free(candidate) {
                try writeCounters(revision: current.revision, podID: (candidate &+ 1) % count)
                return candidate
            }
        }
        return nil
    }

    // MARK: pods

    /// Every attached pod by pod id.
    public func pods() throws -> [UInt32: PodRegistration] {
        try registrations(detached: false)
    }

    /// Every registration by pod id; `detached` false: attached pods only, true: detached ones too
    /// (their ids stay taken until a sweep).
    public func registrations(detached: Bool = true) throws -> [UInt32: PodRegistration] {
        var result: [UInt32: PodRegistration] = [:]
        for (key, value) in try registry.entries() {
            guard let registration = PodRegistration.decode(value), detached || !registration.detached else { continue }
            result[uint32(key)] = registration
        }
        return result
    }

    /// The id and registration of the attached pod `namespace/name`, if it is attached.
    public func pod(_ pod: PodReference) throws -> (podID: UInt32, registration: PodRegistration)? {
        try pods().first { $0.value.pod == pod }.map { ($0.key, $0.value) }
    }

    func register(_ registration: PodRegistration, podID: UInt32) throws {
        try registry.update(key: bytes(podID), value: registration.encode())
    }

    func unregister(podID: UInt32) throws {
        try registry.delete(key: bytes(podID))
    }

    // MARK: DNS proxies

    /// Publishes what the DNS proxy serving `address` counted.
    public func publishDNSProxyStats(_ stats: DNSProxyStats, address: IPAddress) throws {
        try dnsStats.update(key: address.bytes, value: stats.encode())
    }

    /// What the DNS proxy serving `address` last published.
    public func dnsProxyStats(address: IPAddress) throws -> DNSProxyStats? {
        try dnsStats.lookup(key: address.bytes).flatMap(DNSProxyStats.decode)
    }

    // MARK: events

    /// The lost-event total already reported to a reader.
    func reportedLostEvents() throws -> UInt64 {
        try reportedLost.lookup(key: bytes(0)).map { $0.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } } ?? 0
    }

    func setReportedLostEvents(_ total: UInt64) throws {
        try reportedLost.update(key: bytes(0), value: withUnsafeBytes(of: total) { Array($0) })
    }

    /// The suppressed events of a pod's direction already reported to a reader.
    func reportedSuppressedEvents(podID: UInt32, direction: Direction) throws -> EventCounts {
        try reportedSuppressed.lookup(key: bytes(EventLimitIndex.of(podID: podID, direction: direction)))
            .flatMap { $0.withUnsafeBytes(EventCounts.decode) } ?? EventCounts()
    }

    func setReportedSuppressedEvents(_ counts: EventCounts, podID: UInt32, direction: Direction) throws {
        try reportedSuppressed.update(key: bytes(EventLimitIndex.of(podID: podID, direction: direction)), value: counts.encode())
    }

    // MARK: objects

    /// The live version of every applied object: where a crash left two, the later one.
    public func objects() throws -> [StoredObject] {
        Self.live(try allVersions())
    }

    /// The live version of every applied object without its rules: names, selection and
    /// isolation only, for what names ids or finds a pod's objects.
    public func objectSummaries() throws -> [StoredObject] {
        Self.live(try allVersions(rules: false))
    }

    /// The later version of each object among `versions`.
    static func live(_ versions: [StoredObject]) -> [StoredObject] {
        var latest: [ObjectKey: StoredObject] = [:]
        for stored in versions where (latest[stored.object.key]?.appliedAt ?? .distantPast) <= stored.appliedAt {
            latest[stored.object.key] = stored
        }
        return latest.values.sorted { $0.index < $1.index }
    }

    /// Every stored version, complete ones only (a manifest is written after its chunks).
    func allVersions(rules: Bool = true) throws -> [StoredObject] {
        var result: [StoredObject] = []
        for (key, value) in try manifests.entries() {
            let index = uint32(key)
            guard let manifest = ObjectStoreCodec.decodeManifest(value) else { continue }
            var data: [UInt8] = []
            for chunk in 0..<manifest.chunks {
                guard let part = try chunks.lookup(key: ObjectStoreCodec.chunkKey(object: index, chunk: chunk)).flatMap(ObjectStoreCodec.chunkData) else {
                    throw LoaderError.corruptState("object \(index) misses chunk \(chunk)")
                }
                data += part
            }
            guard data.count == manifest.length, let object = PolicyObjectCodec.decode(data, rules: rules) else {
                throw LoaderError.corruptState("object \(index) does not decode")
            }
            result.append(StoredObject(index: index, object: object,
                                       appliedAt: Date(timeIntervalSince1970: Double(manifest.appliedNanoseconds) / 1e9)))
        }
        return result
    }

    /// `count` indexes no stored version uses (lowest first).
    func freeIndexes(count: Int) throws -> [UInt32] {
        let used = Set(try manifests.keys().map(uint32))
        let free = (1...UInt32(DatapathLimits.maxObjects)).lazy.filter { !used.contains($0) }.prefix(count)
        guard free.count == count else { throw LoaderError.full("\(DatapathLimits.maxObjects) objects are applied already") }
        return Array(free)
    }

    /// Stores a version under `index`: chunks first, then the manifest that makes it visible (and
    /// says how many chunks are read: a chunk beyond them that a killed apply left is never read,
    /// and the reconcile that rolls the next change forward deletes it).
    func store(_ object: PolicyObject, at index: UInt32) throws {
        let data = PolicyObjectCodec.encode(object)
        let parts = ObjectStoreCodec.chunks(data)
        for (chunk, value) in parts.enumerated() {
            try chunks.update(key: ObjectStoreCodec.chunkKey(object: index, chunk: chunk), value: value)
        }
        _ = try retired.delete(key: bytes(index))  // the index names a live version again
        let now = HostClock.realtime.nanoseconds
        try manifests.update(key: bytes(index), value: ObjectStoreCodec.manifest(length: data.count, chunks: parts.count, appliedNanoseconds: now))
    }

    /// Removes versions: their manifests first (they stop counting), then the
    /// chunks each manifest counted, by key (no walk of the table); each index
    /// keeps its policy's name among the retired, for the rule ids conntrack and
    /// events still carry.
    func remove(_ versions: [StoredObject]) throws {
        for version in versions {
            let key = bytes(version.index)
            let counted = try manifests.lookup(key: key).flatMap(ObjectStoreCodec.decodeManifest)?.chunks ?? 0
            try manifests.delete(key: key)
            try retired.update(key: key, value: RetiredObjectCodec.encode(policyRef: version.object.policyRef))
            for chunk in 0..<counted { try chunks.delete(key: ObjectStoreCodec.chunkKey(object: version.index, chunk: chunk)) }
        }
    }

    /// The policy each replaced or deleted version named, by object index (the most recent few thousand).
    public func retiredPolicies() throws -> [UInt32: String] {
        var result: [UInt32: String] = [:]
        for (key, value) in try retired.entries() where key.count == 4 {
            if let name = RetiredObjectCodec.decode(value) { result[uint32(key)] = name }
        }
        return result
    }

    /// Deletes chunks no manifest counts (left by an apply that was killed): one walk of the table.
    func collectGarbage() throws {
        var counted: [UInt32: Int] = [:]
        for (key, value) in try manifests.entries() { counted[uint32(key)] = ObjectStoreCodec.decodeManifest(value)?.chunks ?? 0 }
        for key in try chunks.keys() {
            guard let chunk = ObjectStoreCodec.decodeChunkKey(key) else { continue }
            if chunk.chunk >= counted[chunk.object, default: 0] { try chunks.delete(key: key) }
        }
    }

    private func bytes(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value) { Array($0) } }
    private func uint32(_ key: [UInt8]) -> UInt32 { key.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) } }
}
