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
/// as JSON Lines (what `ebpf events -o json` does), beside a raw drain that
/// only takes the records out of the ring, in the same run.
///
/// The datapath fills the ring with BPF_PROG_TEST_RUN (repeat) on a pod's
/// interface, a batch that fits the ring, then the reader empties it; only
/// the reader's time counts. The two readers take turns batch by batch, so
/// both see the same machine.
public struct EventsBenchmark {
    /// Events each reader takes (the datapath produces twice this many).
    public var events = 5_000_000

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
    /// allowing TCP 80 from 198.18.0.0/16, and reads half allowed, half denied events.
    /// `output` is how the CLI writes a drain's lines.
    func run(root: PinRoot, interface: String, namespace: NetworkNamespace, output: (UnsafeRawBufferPointer) -> Void) throws -> [Figure] {
        let (loader, _) = try Loader.initialize(root: root, migrate: false)
        _ = try loader.attach(PodReference(namespace: "bench", name: "pod0"), interface: interface, netns: namespace.name,
                              defaults: [.ingress: .allow, .egress: .allow])
        _ = try loader.apply(try PolicyDocumentParser.parse(Self.policy))
        try loader.datapath.setEventLevel(.all)
        let ifindex = try namespace.interfaceIndex(interface)
        let pod = IPAddress("198.19.0.10")!
        let allowed = PacketBuilder.frame(from: IPAddress("198.18.0.1")!, to: pod, .tcp(sourcePort: 40000, destinationPort: 80))
        let denied = PacketBuilder.frame(from: IPAddress("2001:db8::1")!, to: IPAddress("2001:db8::10")!,
                                         .udp(sourcePort: 40001, destinationPort: 53))
        // A batch fills most of the ring: the records of one drain stay in the reader's buffer.
        let batch = UInt32(DatapathLimits.eventRingBytes / (8 + VerdictEvent.size) * 4 / 5 / 2)
        let produce = {
            _ = try loader.datapath.run(allowed, direction: .ingress, ifindex: ifindex, in: namespace, repeat: batch)
            _ = try loader.datapath.run(denied, direction: .ingress, ifindex: ifindex, in: namespace, repeat: batch)
        }

        let raw = try loader.datapath.eventReader()
        let stream = try EventStream(loader: loader)
        let writer = EventJSONWriter()
        let clock = ContinuousClock()
        var rawTime = Duration.zero, decodedTime = Duration.zero
        var rawEvents = 0, decodedEvents = 0
        let lostBefore = try loader.datapath.stat(.eventsLost)
        while rawEvents < events || decodedEvents < events {
            try produce()
            rawTime += try clock.measure { rawEvents += try raw.drain { _ in } }
            try produce()
            decodedTime += try clock.measure {
                try stream.drain { item in
                    switch item {
                    case .event(let event):
                        writer.append(event)
                        decodedEvents += 1
                    case .lost(let count):
                        writer.appendLost(count)
                    case .suppressed(let report):
                        writer.appendSuppressed(report)
                    }
                }
                // As the CLI writes it: one write per drain.
                writer.flush(to: output)
            }
        }
        let lost = try loader.datapath.stat(.eventsLost) - lostBefore
        guard lost == 0 else {
            throw BenchmarkError("the ring overflowed during the benchmark (\(lost) events lost); the figures would be wrong")
        }
        let rawDrain = Figure.Baseline("raw drain (no decoding)", Double(rawEvents) / rawTime.seconds)
        return [
            Figure("baseline: \(rawDrain.name)", rawDrain.value, .perSecond, count: rawEvents),
            Figure("decoded + attributed + JSON Lines to /dev/null", Double(decodedEvents) / decodedTime.seconds, .perSecond, baseline: rawDrain,
                   goal: .atLeast(1_000_000), count: decodedEvents),
        ]
    }

    static let policy = """
        {"apiVersion": "networking.k8s.aws/v1alpha1", "kind": "PolicyEndpoint",
         "metadata": {"name": "bench-abcde", "namespace": "bench"},
         "spec": {"policyRef": {"name": "web", "namespace": "bench"}, "podIsolation": ["Ingress"],
                  "podSelectorEndpoints": [{"name": "pod0", "namespace": "bench", "podIP": "198.19.0.10"}],
                  "ingress": [{"cidr": "198.18.0.0/16", "ports": [{"protocol": "TCP", "port": 80}]}]}}
        """
}
