import BPFKit
import Datapath
import DatapathModel
import Foundation
import Glibc
import HostKit
import NodeNetwork
import Testing
import TestSupport

@Suite(.serialized) struct EventsEndToEndTests {
    func events(_ bench: LoaderCluster, _ filters: [String] = []) throws -> [[String: Any]] {
        try bench.cli(["ebpf", "events", "-o", "json"] + filters).standardOutput.split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    @Test func eventsNameThePodTheFlowAndThePolicyThatDecided() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 3)
        try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"],
                                                               ingress: rule("\(bench.ip(1))/32", ports: [("TCP", 8080, nil)])))
        try bench.cli(["ebpf", "events", "level", "all"])
        _ = try events(bench)  // drain what attaching produced
        #expect(try bench.reaches(1, 0, .tcp))
        #expect(try !bench.reaches(2, 0, .udp))
        let all = try events(bench)
        let allowed = try #require(all.first { $0["pod"] as? String == "shop/pod0" && $0["verdict"] as? String == "allow" })
        #expect(allowed["direction"] as? String == "ingress" && allowed["proto"] as? String == "tcp")
        #expect(allowed["source"] as? String == bench.ip(1) && allowed["destination"] as? String == bench.ip(0))
        #expect(allowed["destinationPort"] as? Int == 8080)
        #expect(allowed["tier"] as? String == "network-policy" && allowed["policy"] as? String == "shop/web" && allowed["rule"] as? Int == 0)
        #expect(allowed["interface"] as? String == bench.cluster.pods[0].hostInterface)
        #expect((allowed["bytes"] as? Int ?? 0) > 0 && allowed["family"] as? String == "ipv4")
        let time = try #require(allowed["time"] as? String)
        let stamp = try #require(try? Date(time, strategy: .iso8601))
        #expect(abs(stamp.timeIntervalSinceNow) < 30, "wall-clock time from the monotonic stamp: \(time)")
        let denied = try #require(all.first { $0["pod"] as? String == "shop/pod0" && $0["verdict"] as? String == "deny" })
        #expect(denied["source"] as? String == bench.ip(2) && denied["proto"] as? String == "udp" && denied["policy"] as? String == "isolation by shop/web", "names what isolates the pod: \(denied)")
        let egress = try #require(all.first { $0["pod"] as? String == "shop/pod1" && $0["direction"] as? String == "egress" })
        #expect(egress["tier"] as? String == "default" && egress["policy"] as? String == "default")
    }

    @Test func filtersSelectExactlyTheMatchingEvents() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 3)
        try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"],
                                                               ingress: rule("\(bench.ip(1))/32", ports: [("TCP", 8080, nil)])))
        try bench.cli(["ebpf", "events", "level", "all"])
        _ = try events(bench)
        for (from, probe) in [(1, Probe.tcp), (1, .udp), (2, .tcp), (2, .icmp)] { _ = try bench.reaches(from, 0, probe) }
        // The IPv4 flows this test made.
        let all = try events(bench).filter { $0["family"] as? String == "ipv4" }
        let denies = all.filter { $0["verdict"] as? String == "deny" && $0["pod"] as? String == "shop/pod0" }
        #expect(Set(denies.map { "\($0["source"]!) \($0["proto"]!)" })
            == ["\(bench.ip(1)) udp", "\(bench.ip(2)) tcp", "\(bench.ip(2)) icmp"])

        for (from, probe) in [(1, Probe.tcp), (1, .udp), (2, .tcp), (2, .icmp)] { _ = try bench.reaches(from, 0, probe) }
        let filtered = try events(bench, ["--verdict", "deny", "--pod", "shop/pod0", "--ip", "\(bench.ip(2))/32", "--proto", "tcp"])
        #expect(filtered.count >= 1)
        #expect(filtered.allSatisfy { $0["verdict"] as? String == "deny" && $0["source"] as? String == bench.ip(2) && $0["proto"] as? String == "tcp" })
        for (from, probe) in [(1, Probe.tcp), (2, .tcp)] { _ = try bench.reaches(from, 0, probe) }
        let byPolicy = try events(bench, ["--policy", "shop/web", "--direction", "ingress"])
        #expect(!byPolicy.isEmpty && byPolicy.allSatisfy { $0["policy"] as? String == "shop/web" && $0["source"] as? String == bench.ip(1) })
    }

    /// `ebpf events --follow | head -1`: once head has its line and goes, the reader notices the
    /// closed pipe and exits (it waits on the ring in the kernel, not in a sleep loop).
    @Test func aFollowingReaderExitsWhenItsPipeCloses() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        try bench.cli(["ebpf", "events", "level", "all"])
        _ = try events(bench)
        let folder = try TemporaryFolder("nf-follow")
        let first = "\(folder.path)/first"
        // A session of its own, so a failing test can end the whole pipeline.
        let pipeline = try ChildProcess.start("/usr/bin/setsid", ["/bin/sh", "-c", "'\(NetfenceBinary.path)' ebpf events --follow --no-headers "
                                                                  + "--bpffs-root '\(bench.root.path)' | head -1 > '\(first)'"])
        defer {
            kill(-pipeline.processID, SIGKILL)
            pipeline.stop(signal: SIGKILL)
        }
        let deadline = Date().addingTimeInterval(10)
        while pipeline.isRunning, Date() < deadline {
            _ = try bench.reaches(1, 0, .tcp)
            usleep(100_000)
        }
        #expect(!pipeline.isRunning, "the pipeline ended once head had its line")
        let line = try String(contentsOfFile: first, encoding: .utf8)
        #expect(line.split(separator: "\n").count == 1 && line.contains("shop/pod"), "\(line)")
    }

    @Test func levelDenyStopsAllowEventsAtOnce() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"],
                                                               ingress: rule("\(bench.ip(1))/32", ports: [("TCP", 8080, nil)])))
        try bench.cli(["ebpf", "events", "level", "all"])
        _ = try events(bench)
        _ = try bench.reaches(1, 0, .tcp)
        #expect(try events(bench).contains { $0["verdict"] as? String == "allow" })
        try bench.cli(["ebpf", "events", "level", "deny"])
        _ = try bench.reaches(1, 0, .tcp)
        _ = try bench.reaches(1, 0, .udp)
        let after = try events(bench)
        #expect(!after.isEmpty && after.allSatisfy { $0["verdict"] as? String == "deny" })
    }

    @Test func aBurstLargerThanTheRingIsReportedAsLostWithTheRightCount() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 1, ingressDefault: "deny")
        _ = try events(bench)
        let datapath = try Datapath.open(pinnedUnder: bench.root.path)
        let ifindex = try bench.cluster.node.interfaceIndex(bench.cluster.pods[0].hostInterface)
        let frame = PacketBuilder.frame(from: IPAddress("198.18.9.9")!, to: IPAddress(bench.ip(0))!, .tcp(sourcePort: 1, destinationPort: 80))
        let burst: UInt32 = 20_000
        _ = try datapath.run(frame, direction: .ingress, ifindex: ifindex, in: bench.cluster.node, repeat: burst)
        // A record: the event and its capture (a new node captures denied packets), 8-byte aligned; a test run
        // stays on one CPU, so the burst fills that CPU's ring.
        let record = ABISizes.eventRecord(captured: min(frame.count, DatapathSettings.initial.snaplen))
        let ringHolds = DatapathLimits.eventCPURingBytes / record
        // The rings' dump says one CPU's ring is full, and no reader sleeps on them.
        let rings = try jsonRows(bench.cli(["ebpf", "maps", "dump", "event_rings", "-o", "json"]))
        #expect(rings.count == BPFMap.possibleCPUs && rings.allSatisfy { $0["readerAsleep"] as? String == "no" })
        #expect(rings.contains { ($0["waitingBytes"] as? Int ?? 0) > DatapathLimits.eventCPURingBytes - record }, "\(rings)")
        func statusEvents() throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(bench.cli(["loader", "status", "-o", "json"]).standardOutput.utf8)) as? [String: Any])["events"]
                as? [String: Any] ?? [:]
        }
        let before = try statusEvents()
        #expect(before["lostUnreported"] as? Int == before["lost"] as? Int && (before["lost"] as? Int ?? 0) >= Int(burst) - ringHolds
                && (before["fullestPercent"] as? Double ?? 0) >= 99 && before["readerAsleep"] as? Bool == false, "loader status: \(before)")
        let lines = try bench.cli(["ebpf", "events", "-o", "json"]).standardOutput.split(separator: "\n")
        let lost = try #require(lines.first.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Int] }?["lost"],
                                "the first line reports the loss: \(lines.first ?? "")")
        let delivered = lines.dropFirst().compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let burstDelivered = delivered.filter { $0["source"] as? String == "198.18.9.9" }.count
        #expect(burstDelivered == ringHolds || (burstDelivered < ringHolds && delivered.count >= ringHolds), "the CPU's ring was full")
        // Every burst event was delivered or counted lost. (Any other event that
        // took a ring slot shows up among the delivered ones.)
        #expect(lost == Int(burst) - burstDelivered)
        let again = try bench.cli(["ebpf", "events"]).standardOutput
        #expect(!again.contains("LOST"), "a loss is reported once")
        #expect(try jsonRows(bench.cli(["ebpf", "maps", "dump", "event_rings", "-o", "json"])).allSatisfy { $0["waitingBytes"] as? Int == 0 },
                "what was read was given back")
        let after = try statusEvents()
        #expect(after["lostUnreported"] as? Int == 0 && after["waitingBytes"] as? Int == 0 && after["lost"] as? Int == before["lost"] as? Int,
                "loader status after the read: \(after)")
    }

    @Test func countAndFollowStopCleanlyOnSignals() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        try bench.cli(["ebpf", "events", "level", "all"])
        _ = try events(bench)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: NetfenceBinary.path)
        process.arguments = ["ebpf", "events", "--follow", "-o", "json", "--bpffs-root", bench.root.path]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        Thread.sleep(forTimeInterval: 0.3)
        _ = try bench.reaches(1, 0, .tcp)
        Thread.sleep(forTimeInterval: 0.3)
        #expect(process.stop(signal: SIGTERM, within: 5), "--follow stops within 5 s of SIGTERM")
        #expect(process.terminationStatus == 0, "a clean exit on SIGTERM")
        let lines = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n")
        #expect(!lines.isEmpty && lines.allSatisfy { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) != nil }, "nothing half-printed")

        _ = try bench.reaches(1, 0, .udp)
        let counted = try bench.cli(["ebpf", "events", "--count", "1", "-o", "json"]).standardOutput
        #expect(counted.split(separator: "\n").count == 1, "--count returns once N events printed")
    }

    /// The rings' consumer (a flow log; a watcher polls) says on the rings when it sleeps, so that only
    /// then a quarter of a ring rings the doorbell; killed asleep, its sleep still ends (no doorbell
    /// rings for nobody afterwards).
    @Test func aConsumerKilledAsleepLeavesNoDoorbellRinging() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 1)
        _ = try events(bench)
        func asleep() throws -> [String] {
            try jsonRows(bench.cli(["ebpf", "maps", "dump", "event_rings", "-o", "json"])).compactMap { $0["readerAsleep"] as? String }
        }
        #expect(try asleep().allSatisfy { $0 == "no" }, "no reader yet")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: NetfenceBinary.path)
        let folder = try TemporaryFolder("nf-asleep")
        process.arguments = ["ebpf", "events", "--follow", "--output-file", "\(folder.path)/flows.jsonl", "--bpffs-root", bench.root.path]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        Thread.sleep(forTimeInterval: 0.6)
        #expect(try asleep().allSatisfy { $0 == "yes" }, "a consumer with nothing to read sleeps")
        let status = try JSONSerialization.jsonObject(with: Data(bench.cli(["loader", "status", "-o", "json"]).standardOutput.utf8)) as? [String: Any]
        #expect((status?["events"] as? [String: Any])?["readerAsleep"] as? Bool == true, "loader status says so")
        #expect(process.stop(signal: SIGKILL, within: 5))
        Thread.sleep(forTimeInterval: DatapathLimits.eventReaderPollSeconds + 0.1)
        #expect(try asleep().allSatisfy { $0 == "no" }, "its sleep ended with the poll interval")
    }
}
