import Datapath
import Foundation
import NodeNetwork
import Testing
import TestSupport

/// Volume control through the CLI with real traffic: rate limits that count what they
/// hold back, a pod's own event level, and a reused pod id that starts clean.
@Suite(.serialized) struct EventVolumeTests {
    func eventLines(_ bench: LoaderCluster) throws -> [[String: Any]] {
        try bench.cli(["ebpf", "events", "-o", "json"]).standardOutput.split(separator: "\n").map { try jsonObject(String($0)) }
    }

    /// `netfence_packets_total` of one pod's ingress denies, from `metrics`.
    func deniedPackets(_ bench: LoaderCluster, pod: String) throws -> Int {
        try metric(bench, "netfence_packets_total{pod=\"\(pod)\",direction=\"ingress\",verdict=\"deny\"}") ?? 0
    }

    func metric(_ bench: LoaderCluster, _ sample: String) throws -> Int? {
        try bench.cli(["metrics"]).standardOutput.split(separator: "\n").first { $0.hasPrefix(sample + " ") }
            .flatMap { Int($0.split(separator: " ").last ?? "") }
    }

    @Test func aFloodIsRateLimitedWithAnExactCountWhileAnotherPodsEventsAllArrive() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 3, ingressDefault: "deny")
        try bench.cli(["ebpf", "events", "level", "deny", "--rate", "20/s"])
        _ = try eventLines(bench)
        let before = try deniedPackets(bench, pod: "shop/pod0")
        try bench.cluster.pods[1].namespace.sendDatagrams(300, to: bench.ip(0), port: 9999)
        try bench.cluster.pods[2].namespace.sendDatagrams(5, to: bench.ip(1), port: 9999)
        usleep(300_000)
        let denied = try deniedPackets(bench, pod: "shop/pod0") - before
        let lines = try eventLines(bench)
        let written = lines.filter { $0["pod"] as? String == "shop/pod0" && $0["verdict"] as? String == "deny" }.count
        let report = try #require(lines.first { $0["suppressed"] != nil && $0["pod"] as? String == "shop/pod0" }, "a SUPPRESSED line: \(lines.prefix(3))")
        let suppressed = try #require((report["suppressed"] as? [String: Int])?["deny"])
        #expect(denied >= 300 && written + suppressed == denied, "every denied packet's event is written or counted: \(written) + \(suppressed) of \(denied)")
        #expect(written <= 40 && report["direction"] as? String == "ingress", "at most the rate a window")
        #expect(lines.filter { $0["pod"] as? String == "shop/pod1" && $0["source"] as? String == bench.ip(2) }.count == 5,
                "another pod's events all arrive")
        #expect(!lines.contains { $0["suppressed"] != nil && $0["pod"] as? String == "shop/pod1" })

        // The same count in metrics and status; a report is made once.
        #expect(try metric(bench, "netfence_events_suppressed_total{pod=\"shop/pod0\",direction=\"ingress\",verdict=\"deny\"}") == suppressed)
        let status = try jsonObject(bench.cli(["loader", "status", "-o", "json"]).standardOutput)
        let pod0 = try #require((status["pods"] as? [[String: Any]])?.first { $0["pod"] as? String == "shop/pod0" })
        #expect(((pod0["suppressedEvents"] as? [String: Any])?["ingress"] as? [String: Int])?["deny"] == suppressed)
        #expect(try !eventLines(bench).contains { $0["suppressed"] != nil }, "reported once")
        let text = try bench.cli(["ebpf", "events", "level"]).standardOutput
        #expect(text.contains("Rate limits: 20 events/s per pod and direction, none for the node"), "\(text)")
        try bench.cli(["ebpf", "events", "level", "deny", "--rate", "none"])
        try bench.cluster.pods[1].namespace.sendDatagrams(60, to: bench.ip(0), port: 9999)
        usleep(200_000)
        #expect(try eventLines(bench).filter { $0["pod"] as? String == "shop/pod0" && $0["verdict"] as? String == "deny" }.count >= 60,
                "no limit: every event")
    }

    @Test func aPodsOwnLevelShowsItsAllowsWhileTheNodeStaysAtDeny() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 3)
        try bench.cli(["ebpf", "events", "level", "deny"])
        try bench.cli(["ebpf", "events", "level", "all", "--pod", "shop/pod1"])
        _ = try eventLines(bench)
        #expect(try bench.reaches(1, 2, .tcp))
        #expect(try bench.reaches(0, 2, .udp))
        let lines = try eventLines(bench)
        #expect(lines.contains { $0["pod"] as? String == "shop/pod1" && $0["verdict"] as? String == "allow" && $0["direction"] as? String == "egress" })
        #expect(!lines.contains { $0["pod"] as? String != "shop/pod1" }, "the others stay at the node's level: \(lines)")
        let shown = try jsonObject(bench.cli(["ebpf", "events", "level", "-o", "json"]).standardOutput)
        #expect(shown["eventLevel"] as? String == "deny")
        #expect((shown["pods"] as? [[String: String]]) == [["pod": "shop/pod1", "eventLevel": "all"]])
        #expect(try bench.cli(["ebpf", "events", "level"]).standardOutput.contains("shop/pod1: every verdict (level all)"))
        try bench.cli(["ebpf", "events", "level", "node", "--pod", "shop/pod1"])
        _ = try bench.reaches(1, 2, .udp)
        #expect(try eventLines(bench).isEmpty)

        let unknown = try NetfenceBinary.run(["ebpf", "events", "level", "all", "--pod", "shop/ghost", "--bpffs-root", bench.root.path])
        #expect(unknown.status == 1 && unknown.standardError.split(separator: "\n").count == 1 && unknown.standardError.contains("shop/ghost"))
        let nodeWithoutPod = try NetfenceBinary.run(["ebpf", "events", "level", "node", "--bpffs-root", bench.root.path])
        #expect(nodeWithoutPod.status == 64 && nodeWithoutPod.standardError.contains("needs --pod"))
        for bad in [["--rate", "fast"], ["--rate", "-1/s"], ["--rate", "0.5/s"]] {
            let result = try NetfenceBinary.run(["ebpf", "events", "level", "deny"] + bad + ["--bpffs-root", bench.root.path])
            #expect(result.status == 64, "\(bad): \(result.standardError)")
        }
    }

    /// A pod id given to a new pod carries nothing of the pod that had it: not its level, not its counts.
    @Test func aNewPodStartsWithTheNodesLevelAndNothingSuppressed() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2, ingressDefault: "deny")
        try bench.cli(["ebpf", "events", "level", "deny", "--rate", "5/s"])
        try bench.cli(["ebpf", "events", "level", "all", "--pod", "shop/pod0"])
        try bench.cluster.pods[1].namespace.sendDatagrams(50, to: bench.ip(0), port: 9999)
        usleep(200_000)
        let status = try jsonObject(bench.cli(["loader", "status", "-o", "json"]).standardOutput)
        let old = try #require((status["pods"] as? [[String: Any]])?.first { $0["pod"] as? String == "shop/pod0" })
        #expect(old["eventLevel"] as? String == "all" && ((old["suppressedEvents"] as? [String: Any])?["ingress"] as? [String: Int])?["deny"] ?? 0 > 0)
        try bench.cli(["loader", "detach", "--pod", "shop/pod0"])
        // Ids rotate, so the next one is not pod0's: leave in it what a pod that had it would (a level of its own).
        let datapath = try Datapath.open(pinnedUnder: bench.root.path)
        let next = UInt32(try #require((status["pods"] as? [[String: Any]])?.compactMap { $0["podID"] as? Int }.max()) + 1)
        try datapath.setEventLevel(.all, podID: next)
        try bench.cli(["loader", "attach", "--pod", "shop/fresh", "--iface", bench.cluster.pods[0].hostInterface, "--netns", bench.cluster.node.name])
        let after = try jsonObject(bench.cli(["loader", "status", "-o", "json"]).standardOutput)
        let fresh = try #require((after["pods"] as? [[String: Any]])?.first { $0["pod"] as? String == "shop/fresh" })
        #expect(fresh["podID"] as? Int == Int(next))
        #expect(fresh["eventLevel"] == nil && ((fresh["suppressedEvents"] as? [String: Any]) ?? [:]).isEmpty, "\(fresh)")
        #expect(try datapath.eventLevel(podID: next) == nil)
    }
}
