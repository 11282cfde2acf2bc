import BPFKit
import BPFObjects
import DatapathModel
import Foundation
import Glibc
import HostKit

/// The enforcement datapath loaded into the kernel: one object serving every
/// pod. Pods are registered by interface; a pod's policy is replaced by
/// building tries aside (shared with pods whose policy is identical) and
/// flipping the pod's record to them in one map update.
public final class Datapath {
    /// On the host veth's tc egress hook: what the pod receives.
    let toPod: BPFProgram
    /// On the host veth's tc ingress hook: what the pod sends.
    let fromPod: BPFProgram
    let pods: BPFMap
    /// Each pod's current revision by pod id, for the conntrack fast path.
    let revisions: BPFMap
    /// The tries records name, by `TrieIndex`.
    let policies: BPFMap
    /// What each trie in `policies` holds, so identical policies share one.
    let policyDigests: BPFMap
    /// Every tracked flow: read in batches by conntrack listings and dumps, and
    /// flushed by them, so the one map callers reach directly.
    public let conntrack: BPFMap
    let fragments: BPFMap
    let settings: BPFMap
    let counters: BPFMap
    let stats: BPFMap
    /// Each CPU's ring of events, and the ring buffer that wakes their reader.
    let eventRings: BPFMap
    let eventDoorbell: BPFMap
    /// The port rules of each pod's domain patterns, per slot.
    let domainRules: BPFMap
    /// Addresses pods resolved through the DNS proxy (written by the proxy).
    let domainGrants: BPFMap
    /// Addresses DNS proxies serve.
    let dnsProxies: BPFMap
    /// When a DNS proxy last said it is alive; grants allow new flows only while it is recent.
    let dnsHeartbeat: BPFMap
    /// How often this netfence changed `pods` and `domain_grants` (`generations`, mapped): a process
    /// that keeps records of theirs reads them again only when the count moved.
    public let generations: MappedCounters
    /// New flows each rule decided, per pod.
    let ruleHits: BPFMap
    /// Pods' own event levels, by pod id.
    let podEventLevels: BPFMap
    /// The event rate limiters and what they suppressed, per pod and direction and for the node.
    let eventLimits: BPFMap
    /// What a change does with the tries it lets go (docs/loader.md).
    public var recycling = TrieRecycling.delete
    /// Tries with a role kept, by a keeper or by commands recycling on their next wait: a burst of
    /// this many changes of policy waits no grace period. A keeper's round refills at most what was
    /// taken before it began, and waits a grace period (15-20 ms here) to do so: with 8, an agent
    /// applying as fast as processes run (a change every 3-4 ms) emptied them within a round and
    /// then waited two grace periods per change. An empty trie charges no memory (memlock 0 B).
    public static let sparesKept = 64
    /// Of those, the cooling tries commands keep while no keeper runs: unlike a spare, a cooling
    /// trie holds its entries until a grace period lets it be emptied.
    public static let coolingKept = 8

    /// Every map of the datapath object, by name, with the key and value sizes the
    /// ABI header gives it (nil: a size the header does not define).
    public static let mapLayouts: [String: (key: Int?, value: Int?)] = [
        "pods": (4, PodRecord.size), "revisions": (4, 4), "policies": (4, 4), "policy_digests": (4, TrieDigestRecord.size),
        "conntrack": (ABISizes.conntrackKey, ABISizes.conntrackValue), "fragments": (ABISizes.fragmentKey, ABISizes.fragmentValue),
        "settings": (4, ABISizes.settings), "counters": (4, ABISizes.packetCounter), "stats": (4, 8),
        "event_rings": (4, ABISizes.eventRing), "event_doorbell": (nil, nil), "scratch": (4, nil), "coarse_clock": (4, nil), "flow_cache": (4, nil),
        "domain_rules": (ABISizes.domainRuleKey, RuleSetCodec.size), "domain_grants": (ABISizes.domainGrantKey, ABISizes.domainGrant),
        "dns_proxies": (16, ABISizes.dnsProxy), "dns_heartbeat": (4, 8), "generations": (4, 8),
        "rule_hits": (RuleHit.keySize, RuleHit.valueSize),
        "pod_event_levels": (4, ABISizes.podEventLevel), "event_limits": (4, ABISizes.eventLimit),
    ]
    public static let programNames = ["nf_to_pod", "nf_from_pod"]
    /// Maps earlier netfence versions pinned and nothing reads now (the one event ring buffer and
    /// its per-CPU scratch, before each CPU had a ring): `load` removes their pins.
    static let retiredMapNames = ["events", "event_scratch"]
    /// Maps a load replaces without `migrate` when their layout changed: the settings (their knobs
    /// carried over), what holds nothing a later packet needs (the scratch, the clock's last reading,
    /// the flow cache's copies), and the event rings (events not read yet are lost with them, and
    /// counted nowhere: a reader reads them before an upgrade, or not at all).
    static let transientMaps = ["settings", "scratch", "coarse_clock", "flow_cache", "event_rings", "event_doorbell"]
    /// One event ring per CPU the kernel may run a program on.
    static let eventRingCount = UInt32(BPFMap.possibleCPUs)

    /// Loads a fresh datapath that nothing else shares (tests, benchmarks).
    public convenience init() throws {
        let object = try BPFObjectFile(bytes: EmbeddedBPFObject.datapath.bytes, name: "datapath", resizing: ["event_rings": Self.eventRingCount]) { spec in
            try Self.checkABI(spec)
            return nil
        }
        try self.init(object: object)
    }

    private init(programs: [String: BPFProgram], maps: [String: BPFMap]) throws {
        func map(_ name: String) throws -> BPFMap {
            guard let map = maps[name] else { throw SystemError("find map", name, errno: ENOENT) }
            return map
        }
        guard let toPod = programs["nf_to_pod"], let fromPod = programs["nf_from_pod"] else {
            throw SystemError("find programs", "nf_to_pod, nf_from_pod", errno: ENOENT)
        }
        self.toPod = toPod
        self.fromPod = fromPod
        pods = try map("pods")
        revisions = try map("revisions")
        policies = try map("policies")
        policyDigests = try map("policy_digests")
        conntrack = try map("conntrack")
        fragments = try map("fragments")
        settings = try map("settings")
        counters = try map("counters")
        stats = try map("stats")
        eventRings = try map("event_rings")
        eventDoorbell = try map("event_doorbell")
        domainRules = try map("domain_rules")
        domainGrants = try map("domain_grants")
        dnsProxies = try map("dns_proxies")
        dnsHeartbeat = try map("dns_heartbeat")
        generations = try MappedCounters(try map("generations"))
        ruleHits = try map("rule_hits")
        podEventLevels = try map("pod_event_levels")
        eventLimits = try map("event_limits")
    }

    private convenience init(object: BPFObjectFile) throws {
        var programs: [String: BPFProgram] = [:]
        for name in Self.programNames { programs[name] = try object.program(named: name) }
        var maps: [String: BPFMap] = [:]
        for name in Self.mapLayouts.keys { maps[name] = try object.map(named: name) }
        try self.init(programs: programs, maps: maps)
    }

    /// Refuses an object whose maps do not have the sizes this binary's ABI
    /// gives them (a stale object is refused, never half-used).
    static func checkABI(_ spec: MapSpec) throws {
        guard let layout = mapLayouts[spec.name] else { return }
        var problems: [String] = []
        if let key = layout.key, key != Int(spec.keySize) { problems.append("key size \(spec.keySize) (ABI: \(key))") }
        if let value = layout.value, value != Int(spec.valueSize) { problems.append("value size \(spec.valueSize) (ABI: \(value))") }
        if !problems.isEmpty { throw DatapathError.staleObject(map: spec.name, differences: problems) }
    }

    /// Where a pin root keeps its maps and programs.
    public static func mapPin(_ root: String, _ name: String) -> String { "\(root)/maps/\(name)" }
    public static func programPin(_ root: String, _ name: String) -> String { "\(root)/programs/\(name)" }
    /// Where a new program is pinned before it replaces the pin (bpffs refuses names with dots).
    public static func stagedProgramName(_ name: String) -> String { "\(name)_next" }

    /// Loads the embedded datapath for the node with its maps pinned under
    /// `root`/maps (matching pins reused with their entries, an incompatible
    /// one refused unless `migrate`) and its programs pinned under
    /// `root`/programs, each pin replaced by an atomic rename.
    /// The settings map is replaced without `migrate` when its layout changed, its
    /// knobs carried over (a settings map made now starts as `DatapathSettings.initial`);
    /// so are the per-CPU scratch maps, which hold nothing between packets.
    ///
    /// `conntrack` holds `conntrackEntries` flows; nil keeps a pinned table's size (else
    /// `DatapathLimits.conntrackEntries`). A pinned table of another size is replaced without
    /// `migrate` (a resize asked for): the returned table is the old one, whose flows the caller
    /// carries over (`carryOverConntrack`). Another layout still needs `migrate`.
    public static func load(pinningUnder root: String, migrate: Bool, sameABI: Bool = false, conntrackEntries: Int? = nil) throws
        -> (datapath: Datapath, report: PinReport, replacedConntrack: BPFMap?) {
        try checkPinnedTries(mapPin(root, "policies"), migrate: migrate, emptyIsCompatible: sameABI)
        let earlierSettings = try BPFFilesystem.pinnedMap(at: mapPin(root, "settings"))?.lookup(key: withUnsafeBytes(of: UInt32(0)) { Array($0) })
        let earlierConntrack = try BPFFilesystem.pinnedMap(at: mapPin(root, "conntrack"))
        // A pinned table of this layout keeps its size unless another is asked for; one of another layout is not ours to size by.
        var earlierInfo = try earlierConntrack?.info()
        if let info = earlierInfo, info.type != .lruHash || Int(info.keySize) != ABISizes.conntrackKey
            || Int(info.valueSize) != ABISizes.conntrackValue { earlierInfo = nil }
        let entries = conntrackEntries.map(UInt32.init) ?? earlierInfo?.maxEntries ?? UInt32(DatapathLimits.conntrackEntries)
        let resizable = earlierInfo.map { $0.maxEntries != entries } ?? false
        let (object, report) = try BPFObjectFile.load(bytes: EmbeddedBPFObject.datapath.bytes, name: "datapath", pinningMapsIn: "\(root)/maps",
                                                      migrate: migrate,
                                                      replaceable: Set(Self.transientMaps + (resizable ? ["conntrack"] : [])),
                                                      resizing: ["conntrack": entries, "event_rings": Self.eventRingCount], validate: checkABI)
        let datapath = try Datapath(object: object)
        for name in retiredMapNames { unlink(mapPin(root, name)) }
        if report.created.contains("settings") {
            try datapath.write(.initial)
        } else if report.migrated.contains("settings") {
            try datapath.write(earlierSettings.map(DatapathSettings.carriedOver) ?? .initial)
        }
        try BPFFilesystem.makeDirectories("\(root)/programs")
        for name in programNames {
            let staged = programPin(root, stagedProgramName(name))
            unlink(staged)
            try object.program(named: name).pin(at: staged)
            if rename(staged, programPin(root, name)) != 0 { throw SystemError("replace program pin", programPin(root, name), errno: errno) }
        }
        return (datapath, report, resizable && report.migrated.contains("conntrack") ? earlierConntrack : nil)
    }

    /// Copies the flows of `earlier` (a conntrack table this one replaced) into this one: the
    /// most recently seen that fit, least recent first (the LRU's order). `keepingNewer`:
    /// flows this table tracks already keep their entry (a second pass after the programs
    /// that write this table reached every pod). Returns how many were written.
    @discardableResult
    public func carryOverConntrack(from earlier: BPFMap, keepingNewer: Bool) throws -> Int {
        var flows: [(lastSeen: UInt64, key: [UInt8], value: [UInt8])] = []
        try earlier.forEachBatch { batch in
            for index in 0..<batch.count {
                guard let entry = ConntrackEntry.decode(key: batch.key(index), value: batch.value(index)) else { continue }
                flows.append((entry.lastSeenNanoseconds, Array(batch.key(index)), Array(batch.value(index))))
            }
        }
        var written = 0
        for flow in flows.sorted(by: { $0.lastSeen < $1.lastSeen }).suffix(Int(try conntrack.info().maxEntries)) {
            do {
                try conntrack.update(key: flow.key, value: flow.value, flags: keepingNewer ? UpdateFlags.noExist : UpdateFlags.any)
                written += 1
            } catch let error as SystemError where error.errno == EEXIST {
                continue  // tracked here since: newer than the copy
            }
        }
        return written
    }

    /// The sizes `policies` states reach the kernel only as its inner-map template,
    /// which map info does not show: a pinned `policies` whose tries have another
    /// key or value size cannot be reused (refused unless `migrate`); an empty one
    /// is replaced (nothing is lost) unless the last init had this ABI.
    static func checkPinnedTries(_ path: String, migrate: Bool, emptyIsCompatible: Bool) throws {
        guard let pinned = try BPFFilesystem.pinnedMap(at: path) else { return }
        for entry in try pinned.keys() {
            guard let value = try pinned.lookup(key: entry), value.count == 4,
                  case let id = value.withUnsafeBytes({ $0.loadUnaligned(as: UInt32.self) }), id != 0,
                  let trie = try? BPFMap(id: id).info() else { continue }
            var differences: [String] = []
            if trie.keySize != UInt32(LPMKeyCodec.size) { differences.append("trie key size \(LPMKeyCodec.size) (pinned: \(trie.keySize))") }
            if trie.valueSize != UInt32(RuleSetCodec.size) { differences.append("trie value size \(RuleSetCodec.size) (pinned: \(trie.valueSize))") }
            if differences.isEmpty { return }
            guard migrate else { throw IncompatiblePinError(path: path, differences: differences) }
            unlink(path)
            return
        }
        if !emptyIsCompatible { unlink(path) }  // rebuilt by the loader from the stored objects
    }

    /// The datapath `load(pinningUnder:)` pinned under `root`, for later commands.
    public static func open(pinnedUnder root: String) throws -> Datapath {
        var programs: [String: BPFProgram] = [:]
        for name in programNames {
            guard let program = try BPFFilesystem.pinnedProgram(at: programPin(root, name)) else { throw DatapathError.notInitialized(root: root) }
            programs[name] = program
        }
        var maps: [String: BPFMap] = [:]
        for name in mapLayouts.keys.sorted() {
            // Programs without this map: loaded by a netfence with other maps (an upgrade not yet initialized).
            guard let map = try BPFFilesystem.pinnedMap(at: mapPin(root, name)) else { throw DatapathError.otherVersion(root: root, missingMap: name) }
            maps[name] = map
        }
        return try Datapath(programs: programs, maps: maps)
    }

    /// The program for traffic in `direction` (pod's view).
    public func program(for direction: Direction) -> BPFProgram { direction == .ingress ? toPod : fromPod }

    /// The program on the host veth's `hook`: its ingress sees what the pod sends, its egress what it receives.
    public func program(onHook hook: TCDirection) -> BPFProgram { hook == .ingress ? fromPod : toPod }

    /// The id of the program each hook of a pod's host veth carries.
    public func programIDsByHook() throws -> [TCDirection: UInt32] {
        [.ingress: try fromPod.info().id, .egress: try toPod.info().id]
    }

    /// The ids of the two programs, by name (`nf_to_pod`, `nf_from_pod`).
    public func programIDs() throws -> [String: UInt32] {
        ["nf_to_pod": try toPod.info().id, "nf_from_pod": try fromPod.info().id]
    }

    /// The maps that grow with the node: what `loader status` shows the fill of.
    public static let growingMaps = ["pods", "conntrack", "fragments", "domain_grants"]

    /// Entries in one of `growingMaps`, and how many it holds at most.
    public func fill(ofMap name: String) throws -> (entries: Int, maxEntries: Int) {
        let map = switch name {
        case "pods": pods
        case "conntrack": conntrack
        case "fragments": fragments
        case "domain_grants": domainGrants
        default: throw SystemError("count entries of", name, errno: ENOENT)
        }
        return (try map.countEntries() ?? 0, Int(try map.info().maxEntries))
    }

    /// A reader of the event rings: their consumer (one at a time: two consumers split the events), or
    /// with `watching` one of any number of watchers beside it (`EventRingReader.watching`).
    public func eventReader(watching: Bool = false) throws -> EventRingReader {
        try EventRingReader(rings: eventRings, doorbell: eventDoorbell, watching: watching)
    }

    /// The pod registered on `ifindex`, if any.
    public func pod(ifindex: UInt32) throws -> PodRecord? {
        try pods.lookup(key: key(ifindex)).flatMap(PodRecord.decode)
    }

    /// Replaces the policy of the pod on `ifindex` atomically: its tries come
    /// from `tries` (shared, or built aside), its domain rules go into the slot no
    /// packet reads, then one update of the pod record flips the tries, the slot,
    /// the states and the revision together; then the fast path's revision
    /// follows (a packet in between is judged by the old policy or re-evaluated
    /// under the new one), and the old slot's domain rules are cleared (the old
    /// tries go when `tries` releases what no record names). A direction without
    /// a policy gets no trie. Registers the pod the first time. A pod whose record
    /// would not change (same tries, states and flags; no domain rules before or
    /// after) is left as it is, its revision too: its conntrack entries stay current.
    /// `revision` is the record's new revision (the loader's node-wide counter); nil: the old one plus one.
    /// `auditStates`: the states with audit objects enforced, when any select the pod.
    public func apply(ifindex: UInt32, podID: UInt32, states: [Direction: PodState],
                      policies compiled: [Direction: CompiledPolicy], domainRules: [UInt64: [PortRule]] = [:], revision: UInt32? = nil,
                      auditStates: [Direction: PodState]? = nil, tries: SharedTries) throws {
        let current = try pod(ifindex: ifindex)
        let slot: UInt8 = current.map { $0.slot ^ 1 } ?? 0
        var indexes: [Direction: TrieIndex] = [:]
        for (direction, policy) in compiled { indexes[direction] = try tries.index(for: policy) }
        // The slot may hold patterns a killed apply left: they must not go live with these. Without
        // domain rules the record's flag keeps the slot unread (and reconcile deletes what was left).
        if !domainRules.isEmpty { try removeDomainRules(podID: podID, slots: [slot]) }
        for (pattern, rules) in domainRules {
            try self.domainRules.update(key: DomainRuleKey(podID: podID, slot: slot, pattern: pattern).encode(), value: RuleSetCodec.encode(rules))
        }
        let record = PodRecord(podID: podID, revision: revision ?? (current?.revision ?? 0) &+ 1, slot: slot, states: states, tries: indexes,
                               hasDomainRules: !domainRules.isEmpty, auditStates: auditStates,
                               auditOnlyTries: Set(compiled.filter { _, policy in
                                   !policy.entries.isEmpty && policy.entries.values.allSatisfy { $0.allSatisfy(\.audit) }
                               }.keys))
        if var unchanged = current, !unchanged.hasDomainRules, domainRules.isEmpty {
            (unchanged.revision, unchanged.slot) = (record.revision, record.slot)
            if unchanged == record { return }
        }
        try pods.update(key: key(ifindex), value: record.encode())
        generations.bump(DatapathGeneration.pods.rawValue)
        try revisions.update(key: key(podID), value: key(record.revision))
        if let current, current.hasDomainRules { try removeDomainRules(podID: current.podID, slots: [current.slot]) }
    }

    /// `apply` as a change of its own: the tries it lets go are deleted or marked for recycling (`recycling`) before it returns.
    public func apply(ifindex: UInt32, podID: UInt32, states: [Direction: PodState],
                      policies compiled: [Direction: CompiledPolicy], domainRules: [UInt64: [PortRule]] = [:], revision: UInt32? = nil,
                      auditStates: [Direction: PodState]? = nil) throws {
        try withSharedTries { tries in
            try apply(ifindex: ifindex, podID: podID, states: states, policies: compiled, domainRules: domainRules, revision: revision,
                      auditStates: auditStates, tries: tries)
        }
    }

    /// Writes the pod's tries at the indexes its record names and its domain rules
    /// into its live slot, without a flip: for a `policies` or `domain_rules` map made
    /// anew under pods that are attached, before programs that read the new map reach their interfaces.
    public func restoreLivePolicy(ifindex: UInt32, policies compiled: [Direction: CompiledPolicy], domainRules: [UInt64: [PortRule]],
                                  tries: SharedTries) throws {
        guard let record = try pod(ifindex: ifindex) else { return }
        for (direction, index) in record.tries {
            if let policy = compiled[direction] { try tries.restore(policy, at: index) }
        }
        for (pattern, rules) in domainRules {
            try self.domainRules.update(key: DomainRuleKey(podID: record.podID, slot: record.slot, pattern: pattern).encode(),
                                        value: RuleSetCodec.encode(rules))
        }
    }

    /// Deletes every domain rule set outside the live slot of a pod whose record has domain rules:
    /// what a change killed half-way left (reconcile's sweep). Returns how many.
    @discardableResult
    public func releaseStrayDomainRules() throws -> Int {
        let live = Set(try registeredPods().filter(\.record.hasDomainRules).map { [$0.record.podID, UInt32($0.record.slot)] })
        let stray = try domainRules.keys { key in
            DomainRuleKey.decode(Array(key)).map { !live.contains([$0.podID, UInt32($0.slot)]) } ?? true
        }
        return try stray.filter { try domainRules.delete(key: $0) }.count
    }

    /// Deletes the pod's domain rule sets in `slots`.
    private func removeDomainRules(podID: UInt32, slots: Set<UInt8>) throws {
        let doomed = try domainRules.keys { key in
            DomainRuleKey.decode(Array(key)).map { $0.podID == podID && slots.contains($0.slot) } ?? false
        }
        for entry in doomed { _ = try domainRules.delete(key: entry) }
    }

    /// The pod's domain rule sets in `slot`, by pattern id.
    public func domainRules(podID: UInt32, slot: UInt8) throws -> [UInt64: [PortRule]] {
        var result: [UInt64: [PortRule]] = [:]
        for entry in try domainRules.keys() {
            guard let decoded = DomainRuleKey.decode(entry), decoded.podID == podID, decoded.slot == slot,
                  let value = try domainRules.lookup(key: entry), let rules = RuleSetCodec.decode(value) else { continue }
            result[decoded.pattern] = rules
        }
        return result
    }

    // MARK: domain grants

    /// The pod's grant for `address`, if the DNS proxy wrote one.
    public func grant(podID: UInt32, address: IPAddress) throws -> DomainGrant? {
        let grantKey = DomainGrant.key(podID: podID, address: address)
        return try domainGrants.lookup(key: grantKey).flatMap { DomainGrant.decode(key: grantKey, value: $0) }
    }

    /// Writes (replaces) a grant: the address is allowed for the pod under its patterns until they expire.
    public func write(_ grant: DomainGrant) throws {
        try domainGrants.update(key: grant.key, value: grant.encodeValue())
        generations.bump(DatapathGeneration.grants.rawValue)
    }

    /// Deletes the pod's grant for `address`; false when there was none.
    @discardableResult
    public func removeGrant(podID: UInt32, address: IPAddress) throws -> Bool {
        let removed = try domainGrants.delete(key: DomainGrant.key(podID: podID, address: address))
        if removed { generations.bump(DatapathGeneration.grants.rawValue) }
        return removed
    }

    /// Moves every count in `generations`: what a change killed between its write and its count
    /// wrote is read again by every process that keeps what it read (reconcile rolls such a change forward).
    public func countUnseenChanges() {
        for generation in DatapathGeneration.allCases { generations.bump(generation.rawValue) }
    }

    /// Every grant, or those of one pod.
    public func grants(podID: UInt32? = nil) throws -> [DomainGrant] {
        var result: [DomainGrant] = []
        for entry in try domainGrants.keys() {
            guard podID == nil || entry.prefix(4) == key(podID!)[...], let value = try domainGrants.lookup(key: entry),
                  let grant = DomainGrant.decode(key: entry, value: value) else { continue }
            result.append(grant)
        }
        return result
    }

    /// Registers (or updates) a DNS proxy serving `address`.
    public func registerDNSProxy(address: IPAddress, _ record: DNSProxyRecord) throws {
        try dnsProxies.update(key: address.bytes, value: record.encode())
    }

    /// A DNS proxy's heartbeat: `monotonicNanoseconds` is CLOCK_MONOTONIC now (0: stopped).
    public func beatDNSHeartbeat(monotonicNanoseconds: UInt64) throws {
        try dnsHeartbeat.update(key: key(0), value: withUnsafeBytes(of: monotonicNanoseconds) { Array($0) })
    }

    /// CLOCK_MONOTONIC of the last heartbeat of a DNS proxy (0: none).
    public func dnsHeartbeatNanoseconds() throws -> UInt64 {
        try dnsHeartbeat.lookup(key: key(0)).map { ByteReader($0).integer(UInt64.self, at: 0) ?? 0 } ?? 0
    }

    /// Every address a DNS proxy serves, with what the proxy wrote.
    public func registeredDNSProxies() throws -> [(address: IPAddress, record: DNSProxyRecord)] {
        try dnsProxies.keys().compactMap { entry in
            guard entry.count == 16, let record = try dnsProxies.lookup(key: entry).flatMap(DNSProxyRecord.decode) else { return nil }
            return (IPAddress(bytes: entry), record)
        }.sorted { $0.address < $1.address }
    }

    /// Forgets the pod on `ifindex`: its record first (its packets pass untouched
    /// from then on), then its tries unless another pod shares them, its domain
    /// rules (a walk of the table, only when its record has some) and its fast-path
    /// revision. Its conntrack entries, grants and rule hits stay, read by no
    /// packet (a flow's entry counts only for the pod its id names, under that
    /// pod's current revision), until `sweep` deletes them: the caller keeps the
    /// pod id from every other pod until then.
    public func remove(ifindex: UInt32) throws {
        guard let record = try pod(ifindex: ifindex) else { return }
        try withSharedTries { _ in _ = try pods.delete(key: key(ifindex)) }
        generations.bump(DatapathGeneration.pods.rawValue)
        if record.hasDomainRules { try removeDomainRules(podID: record.podID, slots: [0, 1]) }
        try revisions.update(key: key(record.podID), value: key(0))
    }

    /// What `sweep` deleted.
    public struct Sweep: Equatable, Sendable, Encodable {
        public var flows = 0, grants = 0, ruleHits = 0
        public init() {}
    }

    /// Deletes every conntrack entry, domain grant and rule hit whose pod id `isGone`
    /// picks: one walk of each table for all the pods removed since the last sweep.
    /// (Domain rule sets go with `remove`, or `releaseStrayDomainRules` for what a
    /// killed change left: a slot is read only through a record that names it.) Keys
    /// are deleted after each walk (deleting under a batch walk can make it skip entries).
    @discardableResult
    public func sweep(podIDs isGone: (UInt32) -> Bool) throws -> Sweep {
        var swept = Sweep()
        var flows: [[UInt8]] = []
        try conntrack.forEachBatch { batch in
            for index in 0..<batch.count {
                guard let entry = ConntrackEntry.decode(key: batch.key(index), value: batch.value(index)), isGone(entry.podID) else { continue }
                flows.append(Array(batch.key(index)))
            }
        }
        swept.flows = try flows.filter { try conntrack.delete(key: $0) }.count
        swept.grants = try domainGrants.keys { DomainGrant.podID(ofKey: $0).map(isGone) ?? false }.filter { try domainGrants.delete(key: $0) }.count
        if swept.grants > 0 { generations.bump(DatapathGeneration.grants.rawValue) }
        swept.ruleHits = try removeRuleHits { isGone($0.podID) }
        return swept
    }

    // MARK: rule hits

    /// The new flows each rule decided, per pod and direction, summed over CPUs (the latest last match of any CPU).
    public func ruleHits(podID: UInt32? = nil) throws -> [RuleHit] {
        var hits: [RuleHit] = []
        try ruleHits.forEachBatch { batch in
            for index in 0..<batch.count {
                guard let hit = RuleHit.decode(key: batch.key(index), perCPUValue: batch.value(index)),
                      podID == nil || hit.podID == podID else { continue }
                hits.append(hit)
            }
        }
        return hits
    }

    /// Forgets the hits `remove` picks (rules of removed object versions, pods gone); returns how many.
    @discardableResult
    public func removeRuleHits(where remove: (RuleHit) -> Bool) throws -> Int {
        var removed = 0
        for hit in try ruleHits() where remove(hit) {
            if try ruleHits.delete(key: hit.key) { removed += 1 }
        }
        return removed
    }

    /// Deletes every conntrack entry of the interface `ifindex`; returns how many.
    @discardableResult
    public func flushConntrack(ifindex: UInt32) throws -> Int {
        var removed = 0
        for entry in try conntrack.keys(where: { $0.count >= 4 && $0.loadUnaligned(as: UInt32.self) == ifindex }) {
            if try conntrack.delete(key: entry) { removed += 1 }
        }
        return removed
    }

    /// A new trie holding `policy`, not yet visible to any packet.
    public func makeTrie(_ policy: CompiledPolicy) throws -> BPFMap {
        let trie = try Self.makeEmptyTrie()
        try fill(trie, with: policy)
        return trie
    }

    /// A new trie of a pod's policy with nothing in it yet.
    public static func makeEmptyTrie() throws -> BPFMap {
        try BPFMap(type: .lpmTrie, name: "nf_pod_policy", keySize: UInt32(LPMKeyCodec.size),
                   valueSize: UInt32(RuleSetCodec.size), maxEntries: UInt32(DatapathLimits.prefixesPerPod),
                   flags: MapFlags.noPreallocate)
    }

    /// Writes `policy`'s entries into `trie`.
    func fill(_ trie: BPFMap, with policy: CompiledPolicy) throws {
        for (prefix, rules) in policy.entries {
            try trie.update(key: LPMKeyCodec.encode(prefix), value: RuleSetCodec.encode(rules))
        }
    }

    /// What the pod on `ifindex` enforces now: its record's states, the tries and
    /// domain rules of its live slot, read back from the kernel. nil without a record.
    /// Tries read during one look (`contents`) are read once, however many pods share them.
    public func livePolicy(ifindex: UInt32, contents: TrieContents = TrieContents())
        throws -> (record: PodRecord, policies: [Direction: CompiledPolicy], domainRules: [UInt64: [PortRule]])? {
        guard let record = try pod(ifindex: ifindex) else { return nil }
        var compiled: [Direction: CompiledPolicy] = [:]
        for (direction, index) in record.tries {
            guard let id = try trieID(at: index) else { continue }
            compiled[direction] = try contents.read(id: id)
        }
        return (record, compiled, record.hasDomainRules ? try domainRules(podID: record.podID, slot: record.slot) : [:])
    }

    /// Tries read back from the kernel, by map id: pods that share a trie cost one read.
    public final class TrieContents {
        private var read: [UInt32: CompiledPolicy] = [:]

        public init() {}

        /// Every entry of the trie with map id `id`.
        public func read(id: UInt32) throws -> CompiledPolicy {
            if let known = read[id] { return known }
            let trie = try BPFMap(id: id)
            var entries: [IPPrefix: [PortRule]] = [:]
            for entry in try trie.keys() {
                guard let prefix = LPMKeyCodec.decode(entry), let rules = try trie.lookup(key: entry).flatMap(RuleSetCodec.decode) else { continue }
                entries[prefix] = rules
            }
            let content = CompiledPolicy(entries: entries)
            read[id] = content
            return content
        }
    }

    /// The entry of the pod's live trie in `direction` that holds `peer` (of `family`): the longest
    /// prefix and its rules, as the datapath's one LPM lookup finds them; nil when no prefix holds
    /// it (or the pod has no trie there).
    ///
    /// A lookup returns the value, not the prefix: the prefix's length is found by asking again
    /// with shorter lengths (a lookup at length L finds the longest prefix no longer than L). Nested
    /// entries never hold the same rules (each exists because a rule or an except hole starts there),
    /// so the lengths that find the same entry are exactly those from its own length up: a binary
    /// search, about eight lookups, however large the trie.
    public func liveTrieEntry(_ record: PodRecord, direction: Direction, peer: IPAddress, family: AddressFamily) throws
        -> (prefix: IPPrefix, rules: [PortRule])? {
        guard let id = try trieID(record, direction: direction) else { return nil }
        let trie = try BPFMap(id: id)
        func lookup(_ length: Int) throws -> [UInt8]? {
            try trie.lookup(key: LPMKeyCodec.encode(IPPrefix(address: peer, length: length, family: family)))
        }
        let shortest = family == .ipv4 ? 96 : 0
        guard let value = try lookup(128), let rules = RuleSetCodec.decode(value) else { return nil }
        var (low, high) = (shortest, 128)  // the entry's length lies in low...high
        while low < high {
            let middle = (low + high) / 2
            if try lookup(middle) == value { high = middle } else { low = middle + 1 }
        }
        return (IPPrefix(address: peer, length: low, family: family), rules)
    }

    /// Every registered pod: host veth ifindex and record, by ifindex.
    public func registeredPods() throws -> [(ifindex: UInt32, record: PodRecord)] {
        // In batches: every change reads this twice (the tries records name before and after it).
        var result: [(ifindex: UInt32, record: PodRecord)] = []
        try pods.forEachBatch { batch in
            for index in 0..<batch.count {
                let key = batch.key(index)
                guard key.count == 4, let record = PodRecord.decode(batch.value(index)) else { continue }
                result.append((key.loadUnaligned(as: UInt32.self), record))
            }
        }
        return result.sorted { $0.ifindex < $1.ifindex }
    }

    /// The id of the trie `record` names in `direction`; nil when there is none
    /// (nothing selects the pod in that direction).
    public func trieID(_ record: PodRecord, direction: Direction) throws -> UInt32? {
        try record.tries[direction].flatMap(trieID(at:))
    }

    /// The runtime knobs now.
    public func readSettings() throws -> DatapathSettings {
        guard let bytes = try settings.lookup(key: key(0)), let value = DatapathSettings.decode(bytes) else {
            throw SystemError("read", "the datapath's settings (a value this netfence does not know)", errno: EINVAL)
        }
        return value
    }

    /// Replaces the runtime knobs (no reload: the next packet sees them).
    public func write(_ value: DatapathSettings) throws {
        try settings.update(key: key(0), value: value.encode())
    }

    /// Which verdicts produce events for pods without their own level.
    public func eventLevel() throws -> EventLevel { try readSettings().eventLevel }

    /// Switches the node's event level, the other knobs as they are.
    public func setEventLevel(_ level: EventLevel) throws {
        var value = try readSettings()
        value.eventLevel = level
        try write(value)
    }

    /// The pod's own event level; nil when it follows the node's.
    public func eventLevel(podID: UInt32) throws -> EventLevel? {
        try podEventLevels.lookup(key: key(podID)).flatMap { $0.withUnsafeBytes(PodEventLevelCodec.decode) } ?? nil
    }

    /// Gives the pod its own event level (nil: the node's again).
    public func setEventLevel(_ level: EventLevel?, podID: UInt32) throws {
        try podEventLevels.update(key: key(podID), value: PodEventLevelCodec.encode(level))
    }

    /// Pods with their own event level, by pod id.
    public func ownEventLevels() throws -> [UInt32: EventLevel] {
        var levels: [UInt32: EventLevel] = [:]
        try podEventLevels.forEachBatch { batch in
            for index in 0..<batch.count {
                if let level = PodEventLevelCodec.decode(batch.value(index)) ?? nil { levels[batch.key(index).loadUnaligned(as: UInt32.self)] = level }
            }
        }
        return levels
    }

    /// Events the rate limits kept out of the ring for the pod's direction, by verdict, since the pod was attached.
    public func suppressedEvents(podID: UInt32, direction: Direction) throws -> EventCounts {
        try eventLimits.lookup(key: key(EventLimitIndex.of(podID: podID, direction: direction)))
            .flatMap { $0.withUnsafeBytes(EventCounts.suppressed(inLimit:)) } ?? EventCounts()
    }

    /// Every pod direction with suppressed events, by its `event_limits` index.
    public func suppressedEvents() throws -> [(podID: UInt32, direction: Direction, counts: EventCounts)] {
        var result: [(podID: UInt32, direction: Direction, counts: EventCounts)] = []
        try eventLimits.forEachBatch { batch in
            for index in 0..<batch.count {
                guard let (podID, direction) = EventLimitIndex.podAndDirection(batch.key(index).loadUnaligned(as: UInt32.self)),
                      let counts = EventCounts.suppressed(inLimit: batch.value(index)), counts.total > 0 else { continue }
                result.append((podID, direction, counts))
            }
        }
        return result
    }

    /// Forgets the event state of pod id `podID` (its own level, its limiters' windows and
    /// counts), before the id goes to another pod or after its pod left.
    public func resetEventState(podID: UInt32) throws {
        try setEventLevel(nil, podID: podID)
        for direction in Direction.allCases {
            try eventLimits.update(key: key(EventLimitIndex.of(podID: podID, direction: direction)), value: EventCounts.emptyLimit)
        }
    }

    /// Runs one frame through the program for `direction` as if it crossed the
    /// interface `ifindex` in `namespace`; returns whether it passed (TC_ACT_OK).
    public func run(_ frame: [UInt8], direction: Direction, ifindex: UInt32, in namespace: NetworkNamespace?,
                    repeat count: UInt32 = 1) throws -> BPFProgram.TestRunResult {
        try program(for: direction).testRun(packet: frame, repeat: count, ifindex: ifindex, in: namespace)
    }

    /// How the program for `direction` judges `frame` as a new flow of the pod on `ifindex` (in
    /// `namespace`), with nothing changed (no conntrack, counters, hits or events): the explain
    /// marker makes it so. nil when it judged nothing (no pod there, not a new flow's packet).
    public func explain(_ frame: [UInt8], direction: Direction, ifindex: UInt32, in namespace: NetworkNamespace?) throws -> ExplainedDecision? {
        let run = try program(for: direction).testRun(packet: frame, ifindex: ifindex, mark: ExplainedDecision.mark,
                                                      cb: ExplainedDecision.contextIn, in: namespace)
        return ExplainedDecision.decode(cb: run.cb)
    }

    /// A node-wide counter, summed over CPUs.
    public func stat(_ stat: DatapathStat) throws -> UInt64 {
        try sumPerCPU(stats, key: key(stat.rawValue), fields: 1)[0]
    }

    /// Packets and bytes a pod's direction passed or dropped, summed over CPUs.
    public func counter(podID: UInt32, direction: Direction, verdict: Verdict) throws -> (packets: UInt64, bytes: UInt64) {
        let sums = try sumPerCPU(counters, key: key(counterIndex(podID: podID, direction: direction, verdict: verdict)), fields: 2)
        return (sums[0], sums[1])
    }

    private func sumPerCPU(_ map: BPFMap, key: [UInt8], fields: Int) throws -> [UInt64] {
        let bytes = try map.lookup(key: key) ?? []
        let stride = fields * 8
        var sums = [UInt64](repeating: 0, count: fields)
        for cpu in 0..<(bytes.count / stride) {
            for field in 0..<fields {
                sums[field] &+= bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: cpu * stride + field * 8, as: UInt64.self) }
            }
        }
        return sums
    }

    private func key(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value) { Array($0) } }
}

/// Why the datapath cannot be loaded or opened.
public enum DatapathError: Error, Equatable, CustomStringConvertible {
    case staleObject(map: String, differences: [String])
    case notInitialized(root: String)
    /// The programs are pinned but not a map this netfence has: another version loaded them.
    case otherVersion(root: String, missingMap: String)

    public var description: String {
        switch self {
        case .staleObject(let map, let differences):
            "the embedded datapath does not match this binary's ABI: map \(map) has \(differences.joined(separator: ", ")); rebuild netfence"
        case .notInitialized(let root):
            "the datapath is not loaded under \(root); run 'netfence loader init' first"
        case .otherVersion(let root, let missingMap):
            "the datapath under \(root) was loaded by another netfence version (it has no map '\(missingMap)'); "
                + "run 'netfence loader init' to load this one (pods, objects and tracked flows are kept)"
        }
    }
}
