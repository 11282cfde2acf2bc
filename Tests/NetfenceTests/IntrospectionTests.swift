import BPFKit
import BPFObjects
import Foundation
import NodeNetwork
import Testing
import TestSupport

/// A pod network with the demo programs pinned under a test pin root and
/// attached to both hooks of the host veth: what `ebpf progs|maps` must show.
final class AttachedDemo {
    let root: TestPinRoot
    let network: PodNetwork
    let object: BPFObjectFile
    let programIDs: [TCDirection: UInt32]
    let mapID: UInt32

    init() throws {
        root = try TestPinRoot()
        let name = UniqueNames.make("nfc")
        let subnet = testSubnet()
        network = try PodNetwork(name: name, hostInterface: name, nodeAddress: subnet.node, podAddress: subnet.pod)
        object = try BPFObjectFile(bytes: EmbeddedBPFObject.demo.bytes, name: "demo")
        let map = try object.map(named: "demo_packets")
        try map.pin(at: root.path + "/demo_packets")
        mapID = try map.info().id
        var ids: [TCDirection: UInt32] = [:]
        for direction in TCDirection.allCases {
            let program = try object.program(named: "demo_\(direction.rawValue)")
            try program.pin(at: root.path + "/demo_\(direction.rawValue)")
            try TCAttachments.attach(program, interface: name, direction: direction, in: network.node)
            ids[direction] = try program.info().id
        }
        programIDs = ids
    }

    deinit { network.remove() }
}

func jsonArray(_ text: String) throws -> [[String: Any]] {
    try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]])
}

@Suite(.serialized) struct IntrospectionTests {
    @Test func progsJSONShowsPinnedProgramsWithTheirAttachments() throws {
        guard Privileges.require() else { return }
        let demo = try AttachedDemo()
        let result = try NetfenceBinary.run(["ebpf", "progs", "-o", "json", "--bpffs-root", demo.root.path])
        #expect(result.status == 0)
        #expect(result.standardError.isEmpty)
        let programs = try jsonArray(result.standardOutput)
        #expect(programs.count == 2)
        for direction in TCDirection.allCases {
            let program = try #require(programs.first { $0["name"] as? String == "demo_\(direction.rawValue)" })
            #expect(program["id"] as? Int == Int(demo.programIDs[direction]!))
            #expect(program["type"] as? String == "sched_cls")
            #expect((program["tag"] as? String)?.count == 16)
            #expect(program["mapIDs"] as? [Int] == [Int(demo.mapID)])
            #expect(program["pinned"] as? [String] == ["\(demo.root.path)/demo_\(direction.rawValue)"])
            #expect(program["loadedAt"] is String)
            #expect((program["verifiedInstructions"] as? Int ?? 0) > 0 && (program["jitedBytes"] as? Int ?? 0) > 0)
            #expect((program["translatedBytes"] as? Int ?? 0) > 0)
            let attachments = try #require(program["attachments"] as? [[String: Any]])
            #expect(attachments.count == 1)
            #expect(attachments.first?["kind"] as? String == "tc")
            #expect(attachments.first?["namespace"] as? String == demo.network.node.name)
            #expect(attachments.first?["interface"] as? String == demo.network.hostInterface)
            #expect(attachments.first?["direction"] as? String == direction.rawValue)
            #expect(program["runCount"] == nil, "run counts only with --stats")
        }
    }

    @Test func progsAllAndIdsFindTheSamePrograms() throws {
        guard Privileges.require() else { return }
        let demo = try AttachedDemo()
        let ingress = Int(demo.programIDs[.ingress]!)
        let all = try jsonArray(try NetfenceBinary.run(["ebpf", "progs", "--all", "-o", "json", "--bpffs-root", demo.root.path]).standardOutput)
        #expect(all.contains { $0["id"] as? Int == ingress && ($0["attachments"] as? [Any])?.count == 1 })
        let one = try jsonArray(try NetfenceBinary.run(["ebpf", "p", String(ingress), "-o", "json"]).standardOutput)
        #expect(one.map { $0["id"] as? Int } == [ingress])
    }

    @Test func progsTableNamesTheInterfaceAndHook() throws {
        guard Privileges.require() else { return }
        let demo = try AttachedDemo()
        let result = try NetfenceBinary.run(["ebpf", "progs", "--bpffs-root", demo.root.path])
        let lines = result.standardOutput.split(separator: "\n").map(String.init)
        #expect(lines.first?.split(separator: " ", omittingEmptySubsequences: true)
            == ["ID", "TYPE", "NAME", "TAG", "LOADED", "MAPS", "AWS", "POD", "ATTACHED"])
        let row = try #require(lines.first { $0.contains("demo_egress") })
        #expect(row.hasPrefix("\(demo.programIDs[.egress]!) "))
        #expect(row.contains(" sched_cls "))
        #expect(row.hasSuffix("\(demo.network.hostInterface)@\(demo.network.node.name) tc/egress"))
    }

    /// A program another agent attached through tcx (a BPF link, no filter) shows where it runs, beside its filter.
    @Test func progsShowProgramsAttachedThroughTCXLinks() throws {
        guard Privileges.require() else { return }
        let demo = try AttachedDemo()
        let program = try #require(try BPFFilesystem.pinnedProgram(at: demo.root.path + "/demo_ingress"))
        let link = try TCAttachments.attachLink(program, interface: demo.network.hostInterface, direction: .ingress, in: demo.network.node)
        let place = "\(demo.network.hostInterface)@\(demo.network.node.name)"
        let row = try #require(try NetfenceBinary.run(["ebpf", "progs", "--bpffs-root", demo.root.path]).standardOutput
            .split(separator: "\n").first { $0.contains("demo_ingress") })
        #expect(row.hasSuffix("\(place) tc/ingress, \(place) tcx/ingress"), "\(row)")
        let programs = try jsonArray(try NetfenceBinary.run(["ebpf", "progs", "-o", "json", "--bpffs-root", demo.root.path]).standardOutput)
        let attachments = try #require(programs.first { $0["name"] as? String == "demo_ingress" }?["attachments"] as? [[String: Any]])
        #expect(attachments.map { $0["kind"] as? String } == ["tc", "tcx"] && attachments.last?["priority"] == nil, "\(attachments)")
        withExtendedLifetime(link) {}
    }

    @Test func statsCountRunsDuringTheWindow() throws {
        guard Privileges.require() else { return }
        let demo = try AttachedDemo()
        let sender = Thread { [network = demo.network] in
            for _ in 0..<10 {
                try? network.sendUDPFromPod(count: 5)
            }
        }
        sender.start()
        let result = try NetfenceBinary.run(["ebpf", "progs", "--stats", "--stats-window", "1.5", "-o", "json",
                                             "--bpffs-root", demo.root.path])
        #expect(result.status == 0)
        let ingress = try #require(try jsonArray(result.standardOutput).first { $0["name"] as? String == "demo_ingress" })
        let runs = try #require(ingress["runCount"] as? Int)
        #expect(runs > 0)
        let average = try #require(ingress["averageNanoseconds"] as? Int)
        #expect(average > 0 && average < 1_000_000)
        let table = try NetfenceBinary.run(["ebpf", "progs", "--stats", "--stats-window", "0", "--bpffs-root", demo.root.path])
        #expect(table.standardOutput.hasPrefix("ID ") && table.standardOutput.contains("RUNS  AVG NS"))
    }

    @Test func mapsJSONCountsEntriesAndNamesTheirUsers() throws {
        guard Privileges.require() else { return }
        let demo = try AttachedDemo()
        try demo.network.sendUDPFromPod(count: 3)
        let result = try NetfenceBinary.run(["ebpf", "maps", "-o", "json"], environment: ["NETFENCE_BPFFS_ROOT": demo.root.path])
        #expect(result.status == 0)
        let maps = try jsonArray(result.standardOutput)
        #expect(maps.count == 1)
        let map = try #require(maps.first)
        #expect(map["id"] as? Int == Int(demo.mapID))
        #expect(map["name"] as? String == "demo_packets")
        #expect(map["type"] as? String == "hash")
        #expect(map["keySize"] as? Int == 8 && map["valueSize"] as? Int == 16 && map["maxEntries"] as? Int == 1024)
        #expect(map["entries"] as? Int == 2, "one row per direction of the host veth")
        #expect(map["fillPercent"] as? Double == 0.2)
        #expect(map["pinned"] as? [String] == ["\(demo.root.path)/demo_packets"])
        #expect(Set(map["programIDs"] as? [Int] ?? []) == Set(demo.programIDs.values.map(Int.init)))

        let table = try NetfenceBinary.run(["ebpf", "m", "--bpffs-root", demo.root.path]).standardOutput
        let row = try #require(table.split(separator: "\n").first { $0.contains("demo_packets") })
        #expect(row.split(separator: " ", omittingEmptySubsequences: true).prefix(8)
            == ["\(demo.mapID)", "hash", "demo_packets", "8B", "16B", "1024", "2", "0.2%"])
    }

    @Test func anEmptyPinRootSaysSoAndPointsAtAll() throws {
        guard Privileges.require() else { return }
        let root = try TestPinRoot()
        let result = try NetfenceBinary.run(["ebpf", "progs", "--bpffs-root", root.path])
        #expect(result.status == 0)
        #expect(result.standardOutput == "No programs pinned under \(root.path); 'netfence ebpf progs --all' lists every one on the host.\n")
        #expect(try NetfenceBinary.run(["ebpf", "maps", "-o", "json", "--bpffs-root", root.path]).standardOutput == "[\n\n]\n")
    }

    @Test(arguments: [
        (["ebpf", "progs", "4294967295"], "error: no program with id 4294967295 is loaded; list ids with 'netfence ebpf progs --all'\n"),
        (["ebpf", "maps", "4294967295"], "error: no map with id 4294967295 is loaded; list ids with 'netfence ebpf maps --all'\n"),
        (["ebpf", "progs", "--bpffs-root", "/tmp/netfence-not-bpffs"],
         "error: /tmp/netfence-not-bpffs is not on a mounted bpffs; choose a folder on bpffs with --bpffs-root or NETFENCE_BPFFS_ROOT\n"),
    ])
    func runtimeFailuresAreOneLineWithWhatToDo(words: [String], message: String) throws {
        guard Privileges.require() else { return }
        let result = try NetfenceBinary.run(words)
        #expect(result.status == 1)
        #expect(result.standardOutput.isEmpty)
        #expect(result.standardError == message)
    }

    @Test func withoutBPFFilesystemTheCommandSaysHowToMountIt() throws {
        guard Privileges.require() else { return }
        let result = try NetfenceBinary.runWithoutBPFFilesystem(["ebpf", "progs"])
        #expect(result.status == 1)
        #expect(result.standardOutput.isEmpty)
        #expect(result.standardError == "error: /sys/fs/bpf/netfence is not on a mounted bpffs; "
            + "mount it with 'mount -t bpf bpf /sys/fs/bpf' ('netfence loader init' does this)\n")
    }

    @Test(arguments: [
        (["ebpf", "progs"], "netfence ebpf progs"),
        (["ebpf", "maps", "--all"], "netfence ebpf maps"),
        (["demo"], "netfence demo"),
    ])
    func withoutPrivilegesTheCommandSaysToRunAsRoot(words: [String], command: String) throws {
        guard Privileges.require() else { return }
        let result = try NetfenceBinary.run(words, asUser: 65534)
        #expect(result.status == 1)
        #expect(result.standardOutput.isEmpty)
        #expect(result.standardError == "error: '\(command)' needs CAP_BPF and CAP_SYS_ADMIN; run it as root, e.g. 'sudo \(command)'\n")
    }

    @Test func theDemoRunsTheRealDatapathAndLeavesNothingBehind() throws {
        guard Privileges.require() else { return }
        let root = try TestPinRoot()
        let namespacesBefore = Set((try? FileManager.default.contentsOfDirectory(atPath: NetworkNamespace.namedFolder)) ?? [])
        let result = try NetfenceBinary.run(["demo", "--bpffs-root", root.path])
        #expect(result.status == 0, "stderr: \(result.standardError)")
        let lines = result.standardOutput.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }
        let after = try #require(lines.firstIndex { $0.hasPrefix("==> After") })
        let matrix = Array(lines[(after + 2)..<(after + 8)])
        #expect(matrix == ["pod0 pod1 ok ok ok", "pod0 pod2 ok ok ok", "pod1 pod0 ok blocked blocked",
                           "pod1 pod2 ok ok ok", "pod2 pod0 blocked blocked blocked", "pod2 pod1 ok ok ok"])
        #expect(lines.contains { $0.hasPrefix("demo/pod0 ") && $0.contains(" policies-applied default-allow 1") })
        #expect(lines.contains("No drift."))
        #expect(lines.contains { $0.contains(" sched_cls nf_to_pod ") })
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.path).isEmpty, "pins removed")
        let namespacesAfter = Set((try? FileManager.default.contentsOfDirectory(atPath: NetworkNamespace.namedFolder)) ?? [])
        #expect(namespacesAfter.subtracting(namespacesBefore).filter { $0.hasPrefix("nfdemo") }.isEmpty, "namespaces removed")
    }

    /// Stopped half-way (here once its pods are attached and probed), the demo removes its
    /// namespaces and pins, says so in one line and exits with 128 + the first signal: an impatient
    /// second Ctrl-C, and a SIGTERM, while it removes them change nothing.
    @Test func theDemoStoppedHalfWayRemovesWhatItMade() throws {
        guard Privileges.require() else { return }
        let root = try TestPinRoot()
        let demo = Process(), output = Pipe(), errors = Pipe()
        demo.executableURL = URL(fileURLWithPath: NetfenceBinary.path)
        demo.arguments = ["demo", "--bpffs-root", root.path]
        (demo.standardOutput, demo.standardError) = (output, errors)
        try demo.run()
        let prefix = "nfdemo\(demo.processIdentifier % 10_000)-"
        // Under way: the first matrix printed (pods attached, servers up, nothing applied yet).
        var printed = ""
        while !printed.contains("==> Before any policy"), let chunk = try output.fileHandleForReading.read(upToCount: 4096), !chunk.isEmpty {
            printed += String(decoding: chunk, as: UTF8.self)
        }
        let pins = try FileManager.default.contentsOfDirectory(atPath: root.path)
        #expect(pins.count == 1 && FileManager.default.fileExists(atPath: "\(NetworkNamespace.namedFolder)/\(prefix)node"), "the demo made its node: \(pins)")
        kill(demo.processIdentifier, SIGINT)
        for again in [SIGINT, SIGTERM, SIGINT] {
            usleep(3_000)
            kill(demo.processIdentifier, again)  // the process may have ended already: then nothing
        }
        demo.waitUntilExit()
        let stderr = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(demo.terminationStatus == 130)
        #expect(stderr == "error: stopped by SIGINT; removed the namespaces, pins and processes 'netfence demo' had made\n", "\(stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.path).isEmpty, "pins removed")
        let left = (try? FileManager.default.contentsOfDirectory(atPath: NetworkNamespace.namedFolder)) ?? []
        #expect(!left.contains { $0.hasPrefix(prefix) }, "namespaces removed: \(left)")
    }

    @Test func aReaderThatGoesAwayDoesNotStopTheCleanup() throws {
        guard Privileges.require() else { return }
        let root = try TestPinRoot()
        let namespacesBefore = Set((try? FileManager.default.contentsOfDirectory(atPath: NetworkNamespace.namedFolder)) ?? [])
        let shell = Process()
        shell.executableURL = URL(fileURLWithPath: "/bin/sh")
        shell.arguments = ["-c", "'\(NetfenceBinary.path)' demo --bpffs-root '\(root.path)' | head -1 > /dev/null; wait"]
        try shell.run()
        shell.waitUntilExit()
        // head exits after one line; the demo must still finish and remove what it made.
        var waited = 0.0
        while waited < 20, (try FileManager.default.contentsOfDirectory(atPath: root.path)).isEmpty == false
            || Set((try? FileManager.default.contentsOfDirectory(atPath: NetworkNamespace.namedFolder)) ?? []).subtracting(namespacesBefore).contains(where: { $0.hasPrefix("nfdemo") }) {
            Thread.sleep(forTimeInterval: 0.2)
            waited += 0.2
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.path).isEmpty, "pins removed")
        let namespacesAfter = Set((try? FileManager.default.contentsOfDirectory(atPath: NetworkNamespace.namedFolder)) ?? [])
        #expect(namespacesAfter.subtracting(namespacesBefore).filter { $0.hasPrefix("nfdemo") }.isEmpty, "namespaces removed")
    }
}
