import BPFKit
import BPFObjects
import DatapathModel
import Glibc

/// The enforcement datapath loaded into the kernel: one object serving every
/// pod. Pods are registered by interface; a pod's policy is replaced by
/// building tries aside and flipping the pod's live slot in one map update.
public final class Datapath {
    /// On the host veth's tc egress hook: what the pod receives.
    public let toPod: BPFProgram
    /// On the host veth's tc ingress hook: what the pod sends.
    public let fromPod: BPFProgram
    public let pods: BPFMap
    /// Each pod's current revision by pod id, for the conntrack fast path.
    public let revisions: BPFMap
    public let policies: BPFMap
    public let conntrack: BPFMap
    public let fragments: BPFMap
    public let settings: BPFMap
    public let counters: BPFMap
    public let stats: BPFMap
    public let events: BPFMap

    /// Loads the embedded datapath object (the verifier runs here, once).
    public init() throws {
        let object = try BPFObjectFile(bytes: EmbeddedBPFObject.datapath.bytes, name: "datapath")
        toPod = try object.program(named: "nf_to_pod")
        fromPod = try object.program(named: "nf_from_pod")
        pods = try object.map(named: "pods")
        revisions = try object.map(named: "revisions")
        policies = try object.map(named: "policies")
        conntrack = try object.map(named: "conntrack")
        fragments = try object.map(named: "fragments")
        settings = try object.map(named: "settings")
        counters = try object.map(named: "counters")
        stats = try object.map(named: "stats")
        events = try object.map(named: "events")
    }

    /// The program for traffic in `direction` (pod's view).
    public func program(for direction: Direction) -> BPFProgram { direction == .ingress ? toPod : fromPod }

    /// The pod registered on `ifindex`, if any.
    public func pod(ifindex: UInt32) throws -> PodRecord? {
        try pods.lookup(key: key(ifindex)).flatMap(PodRecord.decode)
    }

    /// Replaces the policy of the pod on `ifindex` atomically: new tries go into
    /// the slot no packet reads, then one update of the pod record flips the
    /// slot, the states and the revision together; then the fast path's
    /// revision follows (a packet in between is judged by the old policy or
    /// re-evaluated under the new one), and the old slot is cleared. A
    /// direction without a policy gets no trie. Registers the pod the first time.
    public func apply(ifindex: UInt32, podID: UInt32, states: [Direction: PodState],
                      policies compiled: [Direction: CompiledPolicy]) throws {
        let current = try pod(ifindex: ifindex)
        let slot: UInt8 = current.map { $0.slot ^ 1 } ?? 0
        for direction in Direction.allCases {
            let slotKey = key(policyIndex(podID: podID, direction: direction, slot: slot))
            if let policy = compiled[direction] {
                try policies.setInner(key: slotKey, to: try makeTrie(policy))
            } else {
                try policies.delete(key: slotKey)
            }
        }
        let record = PodRecord(podID: podID, revision: (current?.revision ?? 0) &+ 1, slot: slot, states: states)
        try pods.update(key: key(ifindex), value: record.encode())
        try revisions.update(key: key(podID), value: key(record.revision))
        if let current {
            for direction in Direction.allCases {
                try policies.delete(key: key(policyIndex(podID: current.podID, direction: direction, slot: current.slot)))
            }
        }
    }

    /// A new trie holding `policy`, not yet visible to any packet.
    public func makeTrie(_ policy: CompiledPolicy) throws -> BPFMap {
        let trie = try BPFMap(type: .lpmTrie, name: "nf_pod_policy", keySize: UInt32(LPMKeyCodec.size),
                              valueSize: UInt32(RuleSetCodec.size), maxEntries: UInt32(DatapathLimits.prefixesPerPod),
                              flags: MapFlags.noPreallocate)
        for (prefix, rules) in policy.entries {
            try trie.update(key: LPMKeyCodec.encode(prefix), value: RuleSetCodec.encode(rules))
        }
        return trie
    }

    /// Which verdicts produce events, switched without reloading.
    public func setEventLevel(_ level: EventLevel) throws {
        try settings.update(key: key(0), value: SettingsCodec.encode(eventLevel: level))
    }

    /// Runs one frame through the program for `direction` as if it crossed the
    /// interface `ifindex` in `namespace`; returns whether it passed (TC_ACT_OK).
    public func run(_ frame: [UInt8], direction: Direction, ifindex: UInt32, in namespace: NetworkNamespace?,
                    repeat count: UInt32 = 1) throws -> BPFProgram.TestRunResult {
        try program(for: direction).testRun(packet: frame, repeat: count, ifindex: ifindex, in: namespace)
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
