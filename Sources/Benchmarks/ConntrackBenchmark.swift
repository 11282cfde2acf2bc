import BPFKit
import DatapathModel
import Foundation
import HostKit
import Loader
import PolicyInput

/// How fast a full conntrack table reads: `netfence conntrack list -o json` and
/// `ebpf maps dump` (each run as the operator runs it, a process writing to
/// /dev/null) beside bpftool's dumps of the same map and a raw batch read that
/// formats nothing, all in the same run.
///
/// The table is filled from two flows the datapath itself tracked (IPv4 TCP and
/// IPv6 UDP, run through BPF_PROG_TEST_RUN), copied with other remote endpoints,
/// so every field is what the datapath writes. The cases take turns pass by
/// pass; each reports its median.
public struct ConntrackBenchmark {
    /// Entries the table holds while it is read (the map holds 512Ki).
    public var entries = 500_000
    public var passes = 3

    public init() {}

    /// Runs on a throwaway node. `netfence` is this program's executable.
    public func run(netfence: String, bpftool: String) throws -> [Figure] {
        try ThrowawayNode.run(interfaces: ["pod0"]) { root, sandbox in
            try run(root: root, interface: "pod0", namespace: sandbox.namespace, netfence: netfence, bpftool: bpftool)
        }
    }

    /// Loads netfence under `root` with one pod on `interface` (in `namespace`), fills the
    /// conntrack table, and times each reader.
    func run(root: PinRoot, interface: String, namespace: NetworkNamespace, netfence: String, bpftool: String) throws -> [Figure] {
        let (loader, _) = try Loader.initialize(root: root, migrate: false)
        _ = try loader.attach(PodReference(namespace: "bench", name: "pod0"), interface: interface, netns: namespace.name,
                              defaults: [.ingress: .allow, .egress: .allow])
        _ = try loader.apply(try PolicyDocumentParser.parse(Self.policy))
        let conntrack = loader.datapath.conntrack
        let ifindex = try namespace.interfaceIndex(interface)
        let flows = [
            PacketBuilder.frame(from: IPAddress("198.18.0.1")!, to: IPAddress("198.19.0.10")!, .tcp(sourcePort: 40000, destinationPort: 80)),
            PacketBuilder.frame(from: IPAddress("2001:db8::1")!, to: IPAddress("2001:db8:1::10")!, .udp(sourcePort: 40000, destinationPort: 53)),
        ]
        var tracked: [ConntrackEntry] = []
        for frame in flows {
            _ = try loader.datapath.run(frame, direction: .ingress, ifindex: ifindex, in: namespace, repeat: 1)
        }
        try conntrack.forEachBatch { batch in
            for index in 0..<batch.count {
                if let entry = ConntrackEntry.decode(key: batch.key(index), value: batch.value(index)) { tracked.append(entry) }
            }
        }
        guard let ipv4 = tracked.first(where: { $0.low.isIPv4 }),
              let ipv6 = tracked.first(where: { !$0.low.isIPv4 }) else {
            throw BenchmarkError("the datapath tracked \(tracked.count) of the 2 allowed flows; the policy did not apply as expected")
        }
        try fill(conntrack, copies: entries - tracked.count, from: ipv4, ipv6)
        let filled = try conntrack.countEntries() ?? 0
        guard filled == entries else {
            throw BenchmarkError("the conntrack table holds \(filled) entries after filling \(entries); the figures would be wrong")
        }

        let id = try conntrack.info().id
        let cases: [(name: String, run: () throws -> Void)] = [
            ("netfence conntrack list -o json > /dev/null", { try Self.spawn(netfence, ["conntrack", "list", "-o", "json", "--bpffs-root", root.path]) }),
            ("netfence ebpf maps dump conntrack > /dev/null", { try Self.spawn(netfence, ["ebpf", "maps", "dump", "\(id)", "--bpffs-root", root.path]) }),
            ("bpftool map dump id \(id) > /dev/null", { try Self.spawn(bpftool, ["map", "dump", "id", "\(id)"]) }),
            ("bpftool -j map dump id \(id) > /dev/null", { try Self.spawn(bpftool, ["-j", "map", "dump", "id", "\(id)"]) }),
            ("raw batch read (no formatting)", {
                var seen = 0
                try conntrack.forEachBatch { seen += $0.count }
                guard seen == entries else { throw BenchmarkError("the raw read saw \(seen) entries of \(entries)") }
            }),
        ]
        let clock = ContinuousClock()
        var times = Array(repeating: [Double](), count: cases.count)
        for _ in 0..<passes {
            for (index, benchmarkCase) in cases.enumerated() {
                times[index].append(try clock.measure(benchmarkCase.run).seconds)
            }
        }
        let medians = times.map(Statistics.median)
        let raw = Figure.Baseline(cases[4].name, medians[4]), bpftoolJSON = Figure.Baseline(cases[3].name, medians[3])
        func figure(_ index: Int, baseline: Figure.Baseline? = raw, comparison: Comparison = .times, goal: Goal? = nil, name: String? = nil) -> Figure {
            Figure(name ?? cases[index].name, medians[index], .seconds, baseline: baseline, comparison: comparison, goal: goal, count: entries)
        }
        return [
            figure(4, baseline: nil, name: "baseline: \(raw.name)"),
            figure(0, goal: .atMost(1.5, .times)),
            figure(0, baseline: bpftoolJSON, goal: .atLeast(15, .faster), name: "netfence conntrack list -o json, against bpftool -j"),
            figure(1), figure(2), figure(3),
        ]
    }

    /// Three in four copies of the IPv4 TCP flow, the rest of the IPv6 UDP one, each from
    /// another remote endpoint (lower than the pod's, as in the tracked ones; never theirs).
    private func fill(_ conntrack: BPFMap, copies: Int, from ipv4: ConntrackEntry, _ ipv6: ConntrackEntry) throws {
        let v4Count = copies * 3 / 4
        for index in 0..<copies {
            let flow = index < v4Count ? index : index - v4Count
            let port = UInt16(1024 + flow / 65_536)
            let host = [UInt8(flow >> 8 & 0xff), UInt8(flow & 0xff)]
            let lastSeen = ipv4.lastSeenNanoseconds &- UInt64(index % 600) * 1_000_000_000
            let entry = index < v4Count
                ? ipv4.withLowEndpoint(IPAddress(ipv4: [198, 18] + host), port: port, lastSeenNanoseconds: lastSeen)
                : ipv6.withLowEndpoint(IPAddress(bytes: [0x20, 0x01, 0x0d, 0xb8] + Array(repeating: 0, count: 10) + host), port: port,
                                       lastSeenNanoseconds: lastSeen)
            let (key, value) = entry.encode()
            try conntrack.update(key: key, value: value)
        }
    }

    /// Runs `executable` with standard output to /dev/null, as `… > /dev/null` does; throws with
    /// its standard error when it fails.
    static func spawn(_ executable: String, _ arguments: [String]) throws {
        let result = try ChildProcess.run(executable, arguments, output: .discarded)
        guard result.status == 0 else {
            throw BenchmarkError("'\(([executable] + arguments).joined(separator: " "))' exited \(result.status): "
                                 + result.output.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    static let policy = """
        {"apiVersion": "networking.k8s.aws/v1alpha1", "kind": "PolicyEndpoint",
         "metadata": {"name": "bench-abcde", "namespace": "bench"},
         "spec": {"policyRef": {"name": "web", "namespace": "bench"}, "podIsolation": ["Ingress"],
                  "podSelectorEndpoints": [{"name": "pod0", "namespace": "bench", "podIP": "198.19.0.10"}],
                  "ingress": [{"cidr": "198.18.0.0/16", "ports": [{"protocol": "TCP", "port": 80}]},
                              {"cidr": "2001:db8::/64", "ports": [{"protocol": "UDP", "port": 53}]}]}}
        """
}
