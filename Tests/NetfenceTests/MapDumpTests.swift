import BPFKit
import DatapathModel
import Foundation
import Loader
import Testing
import TestSupport

/// Rows of `-o json` dump output.
func jsonRows(_ result: CommandResult) throws -> [[String: Any]] {
    try jsonArray(result.standardOutput)
}

/// The real datapath with pods, policies and traffic, decoded by `ebpf maps dump`
/// and `conntrack`, field by field.
@Suite(.serialized) struct MapDumpTests {
    @Test func conntrackEntriesNameTheirPodFlowPolicyAndAge() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"],
                                                               ingress: rule("\(bench.ip(1))/32", ports: [("TCP", Int(LoaderCluster.port), nil)])))
        #expect(try bench.reaches(1, 0, .tcp))
        let rows = try jsonRows(bench.cli(["conntrack", "list", "-o", "json", "--pod", "shop/pod0"]))
        let tcp = try #require(rows.first { $0["source"] as? String == bench.ip(1) }, "\(rows)")
        #expect(tcp["pod"] as? String == "shop/pod0")
        #expect(tcp["interface"] as? String == bench.cluster.pods[0].hostInterface)
        #expect(tcp["source"] as? String == bench.ip(1))
        #expect(tcp["destination"] as? String == bench.ip(0))
        #expect(tcp["destinationPort"] as? Int == Int(LoaderCluster.port))
        #expect(tcp["state"] as? String == "current")
        #expect(tcp["tier"] as? String == "network-policy")
        #expect(tcp["policy"] as? String == "shop/web" && tcp["rule"] as? Int == 0)
        #expect((tcp["ageSeconds"] as? Double ?? -1) >= 0 && (tcp["ageSeconds"] as? Double ?? 99) < 30)

        // The same entries through the generic dump, as a table, and with --numeric.
        let table = try bench.cli(["ebpf", "maps", "dump", "conntrack"]).standardOutput.split(separator: "\n")
        #expect(table.first?.hasPrefix("POD") == true && table.first?.contains("AGE") == true)
        #expect(table.contains { $0.hasPrefix("shop/pod0 ") && $0.contains(" tcp ") && $0.contains(" current ") && $0.contains("s ago") })
        let numeric = try jsonRows(bench.cli(["ebpf", "d", "conntrack", "--numeric", "-o", "json"]))
        #expect(numeric.contains { $0["proto"] as? Int == 6 && ($0["pod"] as? String)?.hasPrefix("pod-id ") == true })

        // Filters, then a policy change makes the entry stale, then flush removes exactly the selected ones.
        let selected = try jsonRows(bench.cli(["conntrack", "list", "-o", "json", "--proto", "tcp", "--ip", "\(bench.ip(1))/32"]))
        #expect(!selected.isEmpty && selected.allSatisfy { $0["proto"] as? String == "tcp" && $0["source"] as? String == bench.ip(1) })
        let none = try bench.cli(["conntrack", "list", "--port", "1"])
        #expect(none.standardError.contains("no tracked connection matches the filters"))
        try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"],
                                                               ingress: rule("\(bench.ip(1))/32", ports: [("TCP", 9, nil)])))
        #expect(try jsonRows(bench.cli(["conntrack", "list", "-o", "json", "--state", "stale", "--pod", "shop/pod0"])).count == 1)
        #expect(try jsonRows(bench.cli(["conntrack", "list", "-o", "json", "--state", "current", "--pod", "shop/pod0"])).isEmpty)
        let stats = try #require(try JSONSerialization.jsonObject(with: Data(bench.cli(["conntrack", "stats", "-o", "json"]).standardOutput.utf8))
                                 as? [String: Any])
        let before = try #require(stats["entries"] as? Int)
        #expect(stats["maximum"] as? Int == 524_288 && before >= 1)
        #expect((stats["byPod"] as? [String: Int])?["shop/pod0"] == 1)
        #expect((stats["byState"] as? [String: Int])?["stale"] == 1)
        let flushed = try bench.cli(["conntrack", "flush", "--pod", "shop/pod0", "--proto", "tcp"]).standardOutput
        let removed = try #require(Int(flushed.split(separator: " ")[1]), "\(flushed)")
        #expect(removed == 1)
        #expect(try jsonRows(bench.cli(["conntrack", "list", "-o", "json", "--pod", "shop/pod0", "--proto", "tcp"])).isEmpty)
        let after = try #require(try JSONSerialization.jsonObject(with: Data(bench.cli(["conntrack", "stats", "-o", "json"]).standardOutput.utf8))
                                 as? [String: Any])["entries"] as? Int
        #expect(after == before - removed)
    }

    /// IPv6 flows decode into the same schema as IPv4 ones: addresses as RFC 5952 text.
    @Test func ipv6FlowsDecodeInTheSameSchema() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        let port = Int(LoaderCluster.port)
        try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"],
                                                               ingress: rule("\(bench.ip6(1))/128", ports: [("TCP", port, nil), ("UDP", port, nil)])))
        #expect(try bench.reaches(1, 0, .tcp, ipv6: true))
        #expect(try bench.reaches(1, 0, .udp, ipv6: true))
        #expect(try !bench.reaches(1, 0, .tcp), "IPv4 is not allowed by the IPv6 rule")
        let rows = try jsonRows(bench.cli(["conntrack", "list", "-o", "json", "--pod", "shop/pod0", "--ip", "\(bench.ip6(1))/128"]))
        #expect(Set(rows.compactMap { $0["proto"] as? String }) == ["tcp", "udp"], "\(rows)")
        for row in rows {
            #expect(row["pod"] as? String == "shop/pod0" && row["direction"] as? String == "ingress")
            #expect(row["source"] as? String == bench.ip6(1) && row["destination"] as? String == bench.ip6(0))
            #expect(row["destinationPort"] as? Int == port && (row["sourcePort"] as? Int ?? 0) > 0)
            #expect(row["state"] as? String == "current" && row["tier"] as? String == "network-policy")
            #expect(row["policy"] as? String == "shop/web")
            #expect(Set(row.keys) == Set(["pod", "interface", "direction", "proto", "source", "sourcePort", "destination", "destinationPort",
                                          "icmpID", "state", "revision", "tier", "policy", "rule", "ageSeconds"]))
        }
        let table = try bench.cli(["conntrack", "list", "--pod", "shop/pod0", "--proto", "udp", "--ip", "\(bench.ip6(1))/128"]).standardOutput
        #expect(table.split(separator: "\n").contains { $0.contains(" udp ") && $0.contains(bench.ip6(1)) && $0.contains(bench.ip6(0)) })
    }

    @Test func policyPodsCountersAndSettingsDecode() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"],
                                                               ingress: rule("\(bench.ip(1))/32", ports: [("TCP", 9000, 9100)])
                                                                   + rule("2001:db8::/32")))
        let trie = try jsonRows(bench.cli(["ebpf", "dump-maps", "--pod", "shop/pod0", "--direction", "ingress", "-o", "json"]))
        let tcp = try #require(trie.first { $0["cidr"] as? String == "\(bench.ip(1))/32" }, "\(trie)")
        #expect(tcp["proto"] as? String == "tcp" && tcp["ports"] as? String == "9000-9100" && tcp["action"] as? String == "accept")
        #expect(tcp["tier"] as? String == "network-policy" && tcp["policy"] as? String == "shop/web" && tcp["rule"] as? Int == 0)
        let any6 = try #require(trie.first { $0["cidr"] as? String == "2001:db8::/32" }, "\(trie)")
        #expect(any6["proto"] as? String == "any" && any6["ports"] as? String == "any" && any6["rule"] as? Int == 1)
        let noTrie = try NetfenceBinary.run(["ebpf", "dcp", "--pod", "shop/pod0", "--direction", "egress", "--bpffs-root", bench.root.path])
        #expect(noTrie.status == 1 && noTrie.standardError == "error: pod shop/pod0 has no egress trie (nothing selects it in that direction)\n")

        let pods = try jsonRows(bench.cli(["ebpf", "maps", "dump", "pods", "-o", "json"]))
        let pod0 = try #require(pods.first { $0["pod"] as? String == "shop/pod0" })
        #expect(pod0["ingress"] as? String == "policies-applied" && pod0["egress"] as? String == "default-allow")
        #expect(pod0["interface"] as? String == bench.cluster.pods[0].hostInterface)
        let ingressTrie = try #require(pod0["ingressTrie"] as? Int)
        #expect(pod0["egressTrie"] is NSNull, "nothing selects pod0's egress: no trie")
        let policies = try jsonRows(bench.cli(["ebpf", "maps", "dump", "policies", "-o", "json"]))
        #expect(policies.count == 1, "one trie on the node: \(policies)")
        #expect(policies.first?["index"] as? Int == ingressTrie && policies.first?["pod"] as? String == "shop/pod0")
        #expect(policies.first?["pods"] as? Int == 1 && policies.first?["direction"] as? String == "ingress")
        let digests = try jsonRows(bench.cli(["ebpf", "maps", "dump", "policy_digests", "-o", "json"]))
        #expect(digests.count == 1 && digests.first?["index"] as? Int == ingressTrie && digests.first?["mapID"] as? Int == policies.first?["mapID"] as? Int)
        #expect((digests.first?["digest"] as? String)?.count == 64)

        _ = try bench.reaches(1, 0, .tcp)  // port 8080: denied
        let counters = try jsonRows(bench.cli(["ebpf", "maps", "dump", "counters", "--per-cpu", "-o", "json"]))
        let denied = try #require(counters.first { $0["pod"] as? String == "shop/pod0" && $0["verdict"] as? String == "deny" }, "\(counters)")
        let perCPU = try #require(denied["packetsPerCPU"] as? [Int])
        #expect(perCPU.reduce(0, +) == denied["packets"] as? Int && perCPU.count == BPFMap.possibleCPUs)
        #expect(try bench.cli(["ebpf", "maps", "dump", "settings"]).standardOutput
                == "EVENT LEVEL SNAPLEN CAPTURE POD RATE/S NODE RATE/S\ndeny        128     deny    -          -\n")
        #expect(try bench.cli(["ebpf", "maps", "dump", "settings", "--no-headers"]).standardOutput == "deny        128     deny    -          -\n")
        let stats = try jsonRows(bench.cli(["ebpf", "maps", "dump", "stats", "-o", "json"]))
        #expect(stats.map { $0["stat"] as? String } == ["events-lost", "unparseable-drops", "unknown-interface", "conntrack-full"])
    }

    @Test func badTargetsAreOneLineErrors() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 1)
        func run(_ words: [String]) throws -> CommandResult { try NetfenceBinary.run(words + ["--bpffs-root", bench.root.path]) }
        let unknown = try run(["ebpf", "maps", "dump", "no_such_map"])
        #expect(unknown.status == 1 && unknown.standardError.hasPrefix("error: no map named 'no_such_map' is pinned under"))
        let noID = try run(["ebpf", "d", "4294967295"])
        #expect(noID.status == 1 && noID.standardError == "error: no map with id 4294967295 is loaded; list ids with 'netfence ebpf maps --all'\n")
        let ring = try run(["ebpf", "d", "event_doorbell"])
        #expect(ring.status == 1 && ring.standardError.contains("is a ringbuf map: it has no entries to dump; read events with 'netfence ebpf events'"))
        let usage = try run(["ebpf", "d"])
        #expect(usage.status == 64 && usage.standardError.hasPrefix("Error: name a map (id, pin path or name) or a pod with --pod"))
        let badProto = try run(["conntrack", "list", "--proto", "gre"])
        #expect(badProto.status == 64 && badProto.standardError.contains("'gre' is not a valid value for '--proto' (expected tcp, udp, sctp, icmp, icmpv6 or a number"))
        let noPod = try run(["conntrack", "flush", "--pod", "shop/ghost"])
        #expect(noPod.status == 1 && noPod.standardError.hasPrefix("error: pod shop/ghost is not attached on this node"))

        // A map named like netfence's conntrack but of another layout is refused, not read.
        let root = try TestPinRoot()
        let impostor = try BPFMap(type: .lruHash, name: "conntrack", keySize: 24, valueSize: 16, maxEntries: 16)
        try impostor.pin(at: root.path + "/impostor")
        let refused = try NetfenceBinary.run(["ebpf", "d", root.path + "/impostor"])
        #expect(refused.status == 1)
        #expect(refused.standardError.contains("is named like netfence's conntrack but is a lru_hash map with key 24 B and value 16 B"))
        #expect(try NetfenceBinary.run(["ebpf", "d", root.path + "/impostor", "--raw"]).status == 0)
    }

    /// A dump held mid-way (its output pipe full) while half the entries are deleted and the
    /// pin is removed: it finishes, prints only whole entries, and warns that the pin went.
    @Test func entriesAndPinRemovedMidDumpNeitherAbortNorTear() throws {
        guard Privileges.require() else { return }
        let root = try TestPinRoot()
        let map = try BPFMap(type: .hash, name: "nf_test_vanish", keySize: 4, valueSize: 8, maxEntries: 100_000)
        for key in 0..<UInt32(100_000) {
            try map.update(key: withUnsafeBytes(of: key) { Array($0) }, value: withUnsafeBytes(of: UInt64(key) * 3) { Array($0) })
        }
        let pin = root.path + "/vanishing"
        try map.pin(at: pin)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: NetfenceBinary.path)
        process.arguments = ["ebpf", "maps", "dump", pin, "-o", "json"]
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        // The first bytes mean the dump is under way; it blocks once the pipe is full (~6 MB to write).
        var text = output.fileHandleForReading.availableData
        for key in stride(from: UInt32(0), to: 100_000, by: 2) { _ = try map.delete(key: withUnsafeBytes(of: key) { Array($0) }) }
        try FileManager.default.removeItem(atPath: pin)
        text += output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let warning = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)

        #expect(process.terminationStatus == 0)
        #expect(warning == "{\"warning\":\"\(pin) was removed while dumping; shown is what the map held\"}\n", "under -o json, warnings are JSON too")
        let rows = try jsonArray(String(decoding: text, as: UTF8.self))
        #expect(rows.count >= 50_000 && rows.count < 100_000, "the odd half stays; some of the even half went before it was read")
        var keys = Set<UInt32>()
        for row in rows {
            let key = ((row["key"] as? String) ?? "").split(separator: " ").compactMap { UInt8($0, radix: 16) }
            let value = ((row["value"] as? String) ?? "").split(separator: " ").compactMap { UInt8($0, radix: 16) }
            guard key.count == 4, value.count == 8 else { Issue.record("a torn row: \(row)"); continue }
            let number = key.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
            #expect(value.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } == UInt64(number) * 3)
            #expect(keys.insert(number).inserted, "key \(number) twice")
        }
        #expect((0..<UInt32(100_000)).filter { $0 % 2 == 1 }.allSatisfy(keys.contains), "every entry that stayed is shown")
    }

    /// `conntrack flush -o json` says how many it removed, as a number scripts read.
    @Test func flushReportsItsCountInJSON() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        #expect(try bench.reaches(1, 0, .tcp) && bench.reaches(1, 0, .udp))
        let before = try jsonRows(bench.cli(["conntrack", "list", "-o", "json", "--pod", "shop/pod0"])).count
        #expect(before >= 2)
        let flushed = try bench.cli(["conntrack", "flush", "--pod", "shop/pod0", "-o", "json"]).standardOutput
        let object = try #require(try JSONSerialization.jsonObject(with: Data(flushed.utf8)) as? [String: Any])
        #expect(object["removed"] as? Int == before)
        #expect(try jsonRows(bench.cli(["conntrack", "list", "-o", "json", "--pod", "shop/pod0"])).isEmpty)
        let none = try bench.cli(["conntrack", "flush", "--pod", "shop/pod0", "-o", "json"]).standardOutput
        #expect(none == "{\"removed\":0}\n")
    }

    /// `revisions` follows the pod's policy changes; `fragments` keeps a first fragment's verdict for the rest.
    @Test func revisionsAndFragmentsDecode() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        for port in [9000, 9001] {
            try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"],
                                                                   ingress: rule("\(bench.ip(1))/32", ports: [("UDP", port, nil)])))
        }
        let pods = try jsonRows(bench.cli(["ebpf", "maps", "dump", "pods", "-o", "json"]))
        let pod0 = try #require(pods.first { $0["pod"] as? String == "shop/pod0" })
        let revisions = try jsonRows(bench.cli(["ebpf", "maps", "dump", "revisions", "-o", "json"]))
        let revision = try #require(revisions.first { $0["pod"] as? String == "shop/pod0" }, "\(revisions)")
        #expect(revision["podID"] as? Int == pod0["podID"] as? Int)
        #expect(revision["revision"] as? Int == pod0["revision"] as? Int && (revision["revision"] as? Int ?? 0) >= 2)

        // A first fragment of an allowed datagram, run through pod0's ingress program.
        let loader = try Loader(root: bench.root.pinRoot)
        let frame = PacketBuilder.frame(from: try #require(IPAddress(bench.ip(1))), to: try #require(IPAddress(bench.ip(0))),
                                        .udp(sourcePort: 4321, destinationPort: 9001), fragment: .init(identification: 77, offset: 0, more: true))
        let ifindex = UInt32(try #require(pod0["ifindex"] as? Int))
        _ = try loader.datapath.run(frame, direction: .ingress, ifindex: ifindex, in: bench.cluster.node)
        let fragments = try jsonRows(bench.cli(["ebpf", "maps", "dump", "fragments", "-o", "json"]))
        let fragment = try #require(fragments.first { $0["id"] as? Int == 77 }, "\(fragments)")
        #expect(fragment["ifindex"] as? Int == Int(ifindex) && fragment["proto"] as? String == "udp")
        #expect(fragment["source"] as? String == bench.ip(1) && fragment["sourcePort"] as? Int == 4321)
        #expect(fragment["destination"] as? String == bench.ip(0) && fragment["destinationPort"] as? Int == 9001)
        #expect(fragment["verdict"] as? String == "allow" && fragment["tier"] as? String == "network-policy")
    }
}
