import BPFKit
import Datapath
import DatapathModel
import Events
import Foundation
import Glibc
import HostKit
import Loader
import PolicyInput

/// How fast the verdict log is read: events decoded, attributed and written
/// as JSON Lines by the rings' consumer (what a flow log does), the same by a
/// watcher (`ebpf events -o json` beside a flow log: each record copied out and
/// checked), and decoded and written as pcapng with their 128-byte captures
/// (`ebpf events --pcap`), beside a raw drain that only takes the records out of
/// the ring, in the same run.
///
/// The datapath fills the ring with BPF_PROG_TEST_RUN (repeat) on a pod's
/// interface, a batch that fits the ring, then a reader empties it; only the
/// reader's time counts. The readers take turns batch by batch, so all see the
/// same machine. Every event carries a capture of the first 128 bytes of its packet.
public struct EventsBenchmark {
    /// Events each reader takes (the datapath produces this many per reader).
    public var events = 3_000_000
    public static let snaplen = 128
    /// Twice what this reader took before events shared their names (0.93 M/s, issue 19).
    public static let jsonLinesGoal = 1_860_000.0

    public init() {}

    /// Runs on a throwaway node; the decoded events go to /dev/null the way the CLI writes standard output.
    public func run() throws -> [Figure] {
        let devNull = try FileDescriptor(opening: "/dev/null", flags: O_WRONLY, operation: "open /dev/null")
        return try ThrowawayNode.run(interfaces: ["pod0"]) { root, sandbox in
            try run(root: root, interface: "pod0", namespace: sandbox.namespace) { bytes in
                _ = write(devNull.rawValue, bytes.baseAddress, bytes.count)
            }
        }
    }

    /// Loads netfence under `root` with one pod on `interface` (in `namespace`),
    /// allowing UDP 80 from 198.18.0.0/16, and reads half allowed, half denied events.
    /// `output` is how the CLI writes a drain's lines.
    func run(root: PinRoot, interface: String, namespace: NetworkNamespace, output: (UnsafeRawBufferPointer) -> Void) throws -> [Figure] {
        let (loader, _) = try Loader.initialize(root: root, migrate: false)
        _ = try loader.attach(PodReference(namespace: "bench", name: "pod0"), interface: interface, netns: namespace.name,
                              defaults: [.ingress: .allow, .egress: .allow])
        _ = try loader.apply(try PolicyDocumentParser.parse(Self.policy))
        try loader.datapath.write(DatapathSettings(eventLevel: .all, snaplen: Self.snaplen, captureVerdicts: .all))
        let ifindex = try namespace.interfaceIndex(interface)
        let pod = IPAddress("198.19.0.10")!
        // Packets longer than the snaplen: every capture is 128 bytes.
        let allowed = PacketBuilder.frame(from: IPAddress("198.18.0.1")!, to: pod, .udp(sourcePort: 40000, destinationPort: 80, payload: 200))
        let denied = PacketBuilder.frame(from: IPAddress("2001:db8::1")!, to: IPAddress("2001:db8::10")!,
                                         .udp(sourcePort: 40001, destinationPort: 53, payload: 200))
        // A batch fills most of a CPU's ring (a test run stays on one CPU): a record is the event and the capture.
        let record = ABISizes.eventRecord(captured: Self.snaplen)
        let batch = UInt32(DatapathLimits.eventCPURingBytes / record * 4 / 5 / 2)
        let produce = {
            _ = try loader.datapath.run(allowed, direction: .ingress, ifindex: ifindex, in: namespace, repeat: batch)
            _ = try loader.datapath.run(denied, direction: .ingress, ifindex: ifindex, in: namespace, repeat: batch)
        }

        let raw = try loader.datapath.eventReader()
        let stream = try EventStream(loader: loader, watching: false), capturing = try EventStream(loader: loader, watching: false)
        let watcher = try EventStream(loader: loader, watching: true)
        capturing.keepsPackets = true
        let writer = EventJSONWriter()
        let pcap = PcapngWriter()
        func decode(_ item: EventItem, into write: (DecodedEvent) -> Void) -> Int {
            switch item {
            case .event(let event):
                write(event)
                return 1
            case .lost(let count):
                writer.appendLost(count)
            case .skipped(let count):
                writer.appendSkipped(count)
            case .suppressed(let report):
                writer.appendSuppressed(report)
            }
            return 0
        }
        /// One drain by reader `index` (raw, JSON Lines, pcapng, a watcher's JSON Lines); returns the events it took.
        func drain(_ index: Int) throws -> Int {
            var taken = 0
            switch index {
            case 0: taken = try raw.drain { _ in }
            case 1:
                try stream.drain { taken += decode($0, into: writer.append) }
                writer.flush(to: output)  // as the CLI writes it: one write per drain
            case 3:
                try watcher.drain { taken += decode($0, into: writer.append) }  // no flow log holds the lock: it gives back
                writer.flush(to: output)
            default:
                try capturing.drain { taken += decode($0, into: pcap.append) }
                pcap.flush(to: output)
            }
            return taken
        }
        let clock = ContinuousClock()
        var times = Array(repeating: Duration.zero, count: 4), taken = Array(repeating: 0, count: 4)
        let lostBefore = try loader.datapath.stat(.eventsLost)
        while taken.contains(where: { $0 < events }) {
            for index in 0..<4 {
                try produce()
                times[index] += try clock.measure { taken[index] += try drain(index) }
            }
        }
        let lost = try loader.datapath.stat(.eventsLost) - lostBefore
        guard lost == 0, pcap.withoutPacket == 0 else {
            throw BenchmarkError("the ring overflowed during the benchmark (\(lost) events lost) or an event came without its capture; "
                                 + "the figures would be wrong")
        }
        let rates = zip(taken, times).map { Double($0) / $1.seconds }
        let rawDrain = Figure.Baseline("raw drain (no decoding)", rates[0])
        let consumerLines = Figure.Baseline("decoded + attributed + JSON Lines, the rings' consumer", rates[1])
        return [
            Figure("baseline: \(rawDrain.name)", rawDrain.value, .perSecond, count: taken[0]),
            Figure("decoded + attributed + JSON Lines to /dev/null", rates[1], .perSecond, baseline: rawDrain,
                   goal: .atLeast(Self.jsonLinesGoal), count: taken[1]),
            Figure("decoded + attributed + pcapng (128-byte captures) to /dev/null", rates[2], .perSecond, baseline: rawDrain,
                   goal: .atLeast(500_000), count: taken[2]),
            Figure("a watcher: decoded + attributed + JSON Lines (each record copied and checked)", rates[3], .perSecond,
                   baseline: consumerLines, count: taken[3]),
        ]
    }

    static let policy = """
        {"apiVersion": "networking.k8s.aws/v1alpha1", "kind": "PolicyEndpoint",
         "metadata": {"name": "bench-abcde", "namespace": "bench"},
         "spec": {"policyRef": {"name": "web", "namespace": "bench"}, "podIsolation": ["Ingress"],
                  "podSelectorEndpoints": [{"name": "pod0", "namespace": "bench", "podIP": "198.19.0.10"}],
                  "ingress": [{"cidr": "198.18.0.0/16", "ports": [{"protocol": "UDP", "port": 80}]}]}}
        """
}
