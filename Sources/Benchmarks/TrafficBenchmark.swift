import BPFKit
import DatapathModel
import Foundation
import Glibc
import HostKit
import Loader
import NodeNetwork
import PolicyInput

/// `netfence bench traffic`: real traffic between two pods (network namespaces behind
/// host veths on a throwaway node): iperf3's TCP throughput and sockperf's TCP ping-pong
/// (transactions per second, p50 and p99 round trips), with no program on the veths,
/// then with netfence enforcing a 10,000-prefix policy on both pods, with events off,
/// at deny and at all. Cases take turns round by round, each round in another order;
/// medians are reported, and the baseline is measured a second time as a case of its
/// own: how far two identical cases of this run lie apart.
public struct TrafficBenchmark {
    public var seconds = 3
    public var rounds = 5
    public var prefixes = 10_000
    static let iperfPort = 5201, sockperfPort = 11111

    public init() {}

    enum Case: CaseIterable {
        /// `noProgramAgain` is the baseline measured as a case: what separates two identical cases in this run.
        case noProgram, noProgramAgain, eventsOff, eventsDeny, eventsAll

        var name: String {
            switch self {
            case .noProgram: "no program on the veths"
            case .noProgramAgain: "no program again (this run's spread)"
            case .eventsOff: "netfence, 10,000-prefix policy, events off"
            case .eventsDeny: "netfence, 10,000-prefix policy, events at deny"
            case .eventsAll: "netfence, 10,000-prefix policy, events at all"
            }
        }

        var eventLevel: EventLevel? {
            switch self {
            case .noProgram, .noProgramAgain: nil
            case .eventsOff: EventLevel.none
            case .eventsDeny: .deny
            case .eventsAll: .all
            }
        }
    }

    struct Sample {
        var gigabits: [Double] = [], transactions: [Double] = [], p50: [Double] = [], p99: [Double] = []
    }

    public func run() throws -> [Figure] {
        for tool in ["/usr/bin/iperf3", "/usr/bin/sockperf"] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw BenchmarkError("\(tool) is missing: install Debian's iperf3 and sockperf (scripts/install-dependencies does)")
        }
        let pid = getpid()
        try BPFFilesystem.mountIfNeeded()
        let root = try PinRoot("\(BPFFilesystem.defaultMountPoint)/netfence-bench-traffic-\(pid)")
        let cluster = try ClusterNetwork(prefix: "nfbt\(pid % 100_000)", pods: 2, subnet: 246)
        defer {
            try? Loader.reset(root: root)
            cluster.remove()
        }
        let (client, server) = (cluster.pods[0], cluster.pods[1])
        let iperf = try InNamespace.start(server.namespace.name, ["/usr/bin/iperf3", "-s", "-B", server.ipv4, "-p", "\(Self.iperfPort)"])
        defer { iperf.stop(signal: SIGKILL) }
        let sockperf = try InNamespace.start(server.namespace.name, ["/usr/bin/sockperf", "server", "-i", server.ipv4, "--tcp",
                                                                          "-p", "\(Self.sockperfPort)"])
        defer { sockperf.stop(signal: SIGKILL) }

        usleep(300_000)  // the servers listen
        let samples = try measure(client: client, server: server, root: root, node: cluster.node.name)
        let baseline = samples[0], name = Case.noProgram.name
        let gigabits = Figure.Baseline("TCP throughput, \(name)", Statistics.median(baseline.gigabits))
        let transactions = Figure.Baseline("TCP transactions/s, \(name)", Statistics.median(baseline.transactions))
        let p50 = Figure.Baseline("p50 round trip, \(name)", Statistics.median(baseline.p50))
        let p99 = Figure.Baseline("p99 round trip, \(name)", Statistics.median(baseline.p99))
        var figures = [
            Figure("baseline: \(gigabits.name) (iperf3, median of \(rounds) × \(seconds) s)", gigabits.value, .gigabitsPerSecond, count: rounds),
            Figure("baseline: \(transactions.name) (sockperf ping-pong)", transactions.value, .perSecond, count: rounds),
            Figure("baseline: \(p50.name)", p50.value, .microseconds, count: rounds),
            Figure("baseline: \(p99.name)", p99.value, .microseconds, count: rounds),
        ]
        for (index, trafficCase) in Case.allCases.enumerated().dropFirst() {
            let sample = samples[index], control = trafficCase == .noProgramAgain
            figures += [
                Figure("TCP throughput, \(trafficCase.name)", Statistics.median(sample.gigabits), .gigabitsPerSecond, baseline: gigabits,
                       goal: control ? nil : .atLeast(0.97, .times), count: rounds),
                Figure("TCP transactions/s, \(trafficCase.name)", Statistics.median(sample.transactions), .perSecond, baseline: transactions,
                       goal: control ? nil : .atLeast(0.97, .times), count: rounds),
                Figure("p50 round trip, \(trafficCase.name)", Statistics.median(sample.p50), .microseconds, baseline: p50, count: rounds),
                Figure("p99 round trip, \(trafficCase.name)", Statistics.median(sample.p99), .microseconds, baseline: p99,
                       goal: control ? nil : .atMost(1.05, .times), count: rounds),
            ]
        }
        return figures
    }

    /// Every case `rounds` times in turn; the loader (and its lock) go before the caller resets the root.
    private func measure(client: ClusterNetwork.Pod, server: ClusterNetwork.Pod, root: PinRoot, node: String) throws -> [Sample] {
        let (loader, _) = try Loader.initialize(root: root, migrate: false)
        _ = try loader.apply(PolicyDocumentParser.parse(policy(client: client, server: server)))
        let pods = [("client", client), ("server", server)]
        var samples = [Sample](repeating: Sample(), count: Case.allCases.count)
        for round in 0..<rounds {
            let count = Case.allCases.count
            for index in (0..<count).map({ ($0 + round) % count }) {
                let trafficCase = Case.allCases[index]
                if let level = trafficCase.eventLevel {
                    for (name, pod) in pods where try loader.state.pod(PodReference(namespace: "bench", name: name)) == nil {
                        _ = try loader.attach(PodReference(namespace: "bench", name: name), interface: pod.hostInterface, netns: node,
                                              defaults: [:])
                    }
                    _ = try loader.changeSettings { $0.eventLevel = level }
                } else {
                    for (name, _) in pods where try loader.state.pod(PodReference(namespace: "bench", name: name)) != nil {
                        try loader.detach(PodReference(namespace: "bench", name: name))
                    }
                }
                samples[index].gigabits.append(try throughput(from: client, to: server))
                let (rate, p50, p99) = try pingPong(from: client, to: server)
                samples[index].transactions.append(rate)
                samples[index].p50.append(p50)
                samples[index].p99.append(p99)
            }
        }
        return samples
    }

    /// Each pod isolated by `prefixes` host prefixes, the other pod's among them, on the two servers' ports:
    /// the client's egress and the server's ingress.
    func policy(client: ClusterNetwork.Pod, server: ClusterNetwork.Pod) -> String {
        let ports = [Self.iperfPort, Self.sockperfPort], others = BenchPolicy.hosts(prefixes).dropFirst()
        return BenchPolicy.list([
            BenchPolicy(name: "client", pods: ["client"], direction: .egress, cidrs: ["\(server.ipv4)/32"] + others, ports: ports),
            BenchPolicy(name: "server", pods: ["server"], direction: .ingress, cidrs: ["\(client.ipv4)/32"] + others, ports: ports),
        ])
    }

    /// iperf3 from `client` to `server` for `seconds`: the receiver's Gbit/s.
    func throughput(from client: ClusterNetwork.Pod, to server: ClusterNetwork.Pod) throws -> Double {
        let result = try InNamespace.run(client.namespace.name, ["/usr/bin/iperf3",
                                                               "-c", server.ipv4, "-p", "\(Self.iperfPort)", "-t", "\(seconds)", "-J"],
                                          timeout: Double(seconds) + 30)
        guard result.status == 0, let report = try? JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any],
              let end = report["end"] as? [String: Any], let received = end["sum_received"] as? [String: Any],
              let bits = received["bits_per_second"] as? Double else {
            throw BenchmarkError("iperf3 to \(server.ipv4) failed: \(result.output.suffix(400))")
        }
        return bits / 1e9
    }

    /// sockperf's TCP ping-pong from `client` to `server` for `seconds`: round trips per second, p50 and p99 in µs.
    func pingPong(from client: ClusterNetwork.Pod, to server: ClusterNetwork.Pod) throws -> (rate: Double, p50: Double, p99: Double) {
        let result = try InNamespace.run(client.namespace.name, ["/usr/bin/sockperf",
                                                               "ping-pong", "-i", server.ipv4, "--tcp", "-p", "\(Self.sockperfPort)",
                                                               "-t", "\(seconds)", "--full-rtt"],
                                          timeout: Double(seconds) + 30)
        let lines = result.output.split(separator: "\n")
        func number(after marker: String, in line: Substring) -> Double? {
            guard let range = line.range(of: marker) else { return nil }
            return Double(line[range.upperBound...].prefix { $0 == "." || $0.isNumber })
        }
        func percentile(_ label: String) -> Double? {
            lines.first { $0.contains("---> percentile \(label) =") }.flatMap { line in
                line.split(separator: "=").last.flatMap { Double($0.trimmingCharacters(in: .whitespaces)) }
            }
        }
        guard result.status == 0, let valid = lines.first(where: { $0.contains("[Valid Duration]") }),
              let runTime = number(after: "RunTime=", in: valid), let received = number(after: "ReceivedMessages=", in: valid), runTime > 0,
              let p50 = percentile("50.000"), let p99 = percentile("99.000") else {
            throw BenchmarkError("sockperf to \(server.ipv4) failed: \(result.output.suffix(400))")
        }
        return (received / runTime, p50, p99)
    }
}
