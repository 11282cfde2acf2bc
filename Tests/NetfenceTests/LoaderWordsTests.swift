import BPFKit
import Foundation
import NodeNetwork
import Testing
import TestSupport

/// Parses JSON text into an object or fails the test.
func jsonObject(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], sourceLocation: sourceLocation)
}

/// Issue 13, items 9 and 10: words that say what happened, and JSON from every
/// command that takes -o json, errors included.
@Suite(.serialized) struct LoaderWordsTests {
    @Test func oldRuleIdsKeepTheirPolicysNameAndLongPodNamesKeepColumnsAligned() throws {
        guard Privileges.require() else { return }
        let long = "checkout-service-7d9f8b6c5d-x2k4q"  // 38 characters with its namespace: real pod names are long
        let bench = try LoaderCluster(pods: 2, podNames: [long, "pod1"])
        func allowTCP(_ ports: [(String, Int, Int?)]) -> String {
            policyEndpoint("web", selecting: [0], isolation: ["Ingress"], ingress: rule("\(bench.ip(1))/32", ports: ports))
                .replacingOccurrences(of: "name: pod0", with: "name: \(long)")
        }
        try bench.cli(["loader", "apply"], input: allowTCP([("TCP", 8080, nil)]))
        #expect(try bench.reaches(1, 0, .tcp))
        // Re-applied: the tracked flow still carries the first version's rule id.
        try bench.cli(["loader", "apply"], input: allowTCP([("TCP", 8080, nil), ("UDP", 8080, nil)]))
        let rows = try jsonArray(bench.cli(["conntrack", "list", "-o", "json", "--pod", "shop/\(long)"]).standardOutput)
        let old = try #require(rows.first { $0["state"] as? String == "stale" }, "\(rows)")
        #expect(old["policy"] as? String == "shop/web (replaced)", "\(old)")

        let table = try bench.cli(["conntrack", "list"]).standardOutput.split(separator: "\n").map(String.init)
        let header = try #require(table.first)
        let stateColumn = try #require(header.range(of: "STATE")).lowerBound.utf16Offset(in: header)
        for line in table.dropFirst() {
            let state = line.dropFirst(stateColumn).prefix(7).trimmingCharacters(in: .whitespaces)
            #expect(["current", "stale", "orphan"].contains(state), "aligned under STATE: \(line)")
        }
    }

    @Test func arraysShowNoFillEventsTablesHaveAHeaderAndEchoIdsAreNotPorts() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        let maps = try bench.cli(["ebpf", "maps"]).standardOutput.split(separator: "\n").map(String.init)
        let header = try #require(maps.first)
        let fill = try #require(header.range(of: "FILL")).lowerBound.utf16Offset(in: header)
        let settings = try #require(maps.first { $0.contains(" settings ") })
        #expect(settings.dropFirst(fill).hasPrefix("-"), "an array is never 'full': \(settings)")
        let json = try jsonArray(bench.cli(["ebpf", "maps", "-o", "json"]).standardOutput)
        #expect(json.first { $0["name"] as? String == "settings" }.map { $0["fillPercent"] is NSNull || $0["fillPercent"] == nil } == true)

        try bench.cli(["ebpf", "events", "level", "all"])
        try bench.cli(["loader", "apply"], input: policyEndpoint("iso", selecting: [0], isolation: ["Ingress"]))
        #expect(try !bench.reaches(1, 0, .icmp))
        let events = try bench.cli(["ebpf", "events", "--proto", "icmp"]).standardOutput.split(separator: "\n").map(String.init)
        #expect(events.first?.hasPrefix("TIME") == true && events.first?.contains("DECIDED BY") == true, "\(events.first ?? "")")
        let denied = try #require(events.first { $0.contains("DENY") }, "\(events)")
        #expect(denied.contains(" id ") && denied.contains("isolation by shop/iso"), "\(denied)")
        #expect(try !bench.reaches(1, 0, .icmp), "again: the first read drained the ring")
        let line = try #require(try bench.cli(["ebpf", "events", "--proto", "icmp", "-o", "json"]).standardOutput
            .split(separator: "\n").map { try jsonObject(String($0)) }.first { $0["verdict"] as? String == "deny" })
        #expect(line["sourcePort"] as? Int == 0 && line["destinationPort"] as? Int == 0 && (line["icmpID"] as? Int) != nil, "\(line)")
        let headerless = try bench.cli(["ebpf", "events", "--no-headers"]).standardOutput
        #expect(!headerless.hasPrefix("TIME"))
    }

    @Test func everyChangeCommandPrintsJSONAndErrorsAreJSONUnderIt() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        let file = try temporaryPolicyFile(policyEndpoint("iso", selecting: [0], isolation: ["Ingress"]))
        defer { try? FileManager.default.removeItem(at: file) }
        let applied = try jsonObject(bench.cli(["loader", "apply", "-f", file.path, "-o", "json"]).standardOutput)
        #expect(applied["objects"] as? [String] == ["PolicyEndpoint shop/iso"])
        #expect((applied["pods"] as? [[String: Any]])?.first?["pod"] as? String == "shop/pod0")
        let deleted = try jsonObject(bench.cli(["loader", "delete", "-f", file.path, "-o", "json"]).standardOutput)
        #expect(deleted["objects"] as? [String] == ["PolicyEndpoint shop/iso"])
        let detached = try jsonObject(bench.cli(["loader", "detach", "--pod", "shop/pod1", "-o", "json"]).standardOutput)
        #expect(detached["detached"] as? String == "shop/pod1")
        let attached = try jsonObject(bench.cli(["loader", "attach", "--pod", "shop/pod1", "--iface", bench.cluster.pods[1].hostInterface,
                                                 "--netns", bench.cluster.node.name, "-o", "json"]).standardOutput)
        #expect(attached["pod"] as? String == "shop/pod1" && attached["moved"] as? Bool == false
                && (attached["revision"] as? Int ?? 0) > 3, "a pod attached again never restarts at an old revision")
        let level = try jsonObject(bench.cli(["ebpf", "events", "level", "-o", "json"]).standardOutput)
        #expect(level["eventLevel"] as? String == "deny", "a new node reports denies")
        let changed = try jsonObject(bench.cli(["ebpf", "events", "level", "all", "-o", "json"]).standardOutput)
        #expect(changed["eventLevel"] as? String == "all" && changed["previous"] as? String == "deny")
        #expect(try bench.cli(["ebpf", "events", "level"]).standardOutput.contains("(level all)"))
        let metrics = try #require(try JSONSerialization.jsonObject(with: Data(bench.cli(["metrics", "-o", "json"]).standardOutput.utf8)) as? [[String: Any]])
        let pods = try #require(metrics.first { $0["name"] as? String == "netfence_pods" })
        #expect((pods["samples"] as? [[String: Any]])?.first?["value"] as? Int == 2)
        let reconciled = try jsonObject(bench.cli(["loader", "reconcile", "-o", "json"]).standardOutput)
        #expect(reconciled["repaired"] as? [Any] != nil)

        // Errors: one JSON object on standard error, the same exit codes.
        let runtime = try NetfenceBinary.run(["loader", "detach", "--pod", "shop/ghost", "-o", "json", "--bpffs-root", bench.root.path])
        #expect(runtime.status == 1)
        let runtimeError = try jsonObject(runtime.standardError)
        #expect(runtimeError["exitCode"] as? Int == 1 && (runtimeError["error"] as? String)?.contains("shop/ghost") == true)
        let usage = try NetfenceBinary.run(["loader", "attach", "-o", "json", "--iface", "x"])
        #expect(usage.status == 64)
        let usageError = try jsonObject(usage.standardError)
        #expect(usageError["exitCode"] as? Int == 64 && (usageError["usage"] as? String)?.hasPrefix("netfence loader attach") == true)
    }
}
