import BPFKit
import DatapathModel
import Foundation
import Glibc
import HostKit
import NodeNetwork
import Testing
import TestSupport

/// Issue 15: an EKS node as the AWS agent leaves it (nameless maps and programs,
/// its pins and hooks, conntrack written by traffic), read by netfence as na-cli
/// users call it: by id, by pin and by pin name.
@Suite(.serialized) struct EKSNodeTests {
    /// Two pods behind a node, the agent's stand-in programs on both host veths, traffic between them.
    final class Node {
        let cluster: ClusterNetwork
        let agent: AWSAgentNode
        let servers: [ProbeServer]
        let client = "client-7c79c4bf97@default", db = "db_primary@data"

        init() throws {
            cluster = try ClusterNetwork(prefix: UniqueNames.make("nfk"), pods: 2, subnet: 100 + UniqueNames.next() % 100)
            servers = try cluster.pods.map { try ProbeServer(in: $0.namespace, port: 8080) }
            agent = try AWSAgentNode()
            try agent.addPod(identifier: client, interface: cluster.pods[0].hostInterface, in: cluster.node,
                             podStates: (.policiesApplied, .defaultDeny))
            try agent.addPod(identifier: db, interface: cluster.pods[1].hostInterface, in: cluster.node)
        }

        deinit {
            servers.forEach { $0.stop() }
            agent.remove()
            cluster.remove()
        }

        func id(_ map: BPFMap) throws -> String { String(try map.info().id) }
        func pin(_ pod: String, _ object: AWSAgent.Object) -> String { "\(agent.root)/maps/\(pod)_\(object.rawValue)" }
    }

    func json(_ words: [String]) throws -> [[String: Any]] {
        let result = try NetfenceBinary.run(words + ["-o", "json"])
        #expect(result.status == 0, "\(words): \(result.standardError)")
        return try jsonArray(result.standardOutput)
    }

    @Test func namelessMapsDecodeByIdPinAndPinNameWithEverySlotAndTheConntrackStatePair() throws {
        guard Privileges.require() else { return }
        let node = try Node()
        let client = node.agent.pods[0]
        #expect(try client.maps[.ingressMap]!.info().name == "", "nameless, as the agent's SDK makes them")
        #expect(try client.ingressProgram.info().name == "")
        // Slot 0 and slot 5 used, 1–4 empty (the datapath scans all 24); an except block as RESERVED.
        try client.maps[.ingressMap]!.update(key: AWSAgentNode.trieKey("198.18.0.0/16"),
                                               value: AWSAgentNode.trieValue([0: [6, 80, 0], 5: [17, 8000, 8100]], clusterPolicy: false))
        try client.maps[.ingressMap]!.update(key: AWSAgentNode.trieKey("198.18.9.0/24"), value: AWSAgentNode.trieValue([0: [255, 0, 0]], clusterPolicy: false))
        // Admin priority 10 Deny (10×10+0), Baseline priority 5 Accept ((2000+5)×10+1), both ANY protocol.
        try client.maps[.clusterIngressMap]!.update(key: AWSAgentNode.trieKey("198.18.0.0/15"),
                                                      value: AWSAgentNode.trieValue([0: [254, 100, 0, 0], 3: [6, 20051, 443, 0]], clusterPolicy: true))
        for spelling in [try node.id(client.maps[.ingressMap]!), node.pin(node.client, .ingressMap), "\(node.client)_ingress_map"] {
            let rows = try json(["ebpf", "dump-maps", spelling])
            let wide = rows.filter { $0["cidr"] as? String == "198.18.0.0/16" }
            #expect(wide.map { $0["slot"] as? Int } == [0, 5], "\(spelling): every used slot, also after empty ones: \(rows)")
            #expect(wide.map { $0["proto"] as? String } == ["tcp", "udp"] && wide.map { $0["ports"] as? String } == ["80", "8000-8100"])
            let except = rows.first { $0["cidr"] as? String == "198.18.9.0/24" }
            #expect(except?["proto"] as? String == "reserved" && except?["action"] as? String == "deny")
        }
        let cp = try json(["ebpf", "dcp", try node.id(client.maps[.clusterIngressMap]!)])
        #expect(cp.map { $0["tier"] as? String } == ["admin", "baseline"] && cp.map { $0["priority"] as? Int } == [10, 5])
        #expect(cp.map { $0["action"] as? String } == ["deny", "accept"] && cp.map { $0["proto"] as? String } == ["any", "tcp"])
        let states = try json(["ebpf", "d", try node.id(client.maps[.ingressPodStateMap]!)])
        #expect(Set(states.compactMap { $0["state"] as? String }) == ["policies-applied", "default-deny"])

        // Traffic writes conntrack; its code is one value for the (network policy, cluster policy) pair.
        #expect(try node.cluster.pods[1].namespace.probe(.tcp, to: node.cluster.pods[0].ipv4, port: 8080))
        let flows = try json(["ebpf", "d", try node.id(node.agent.conntrack)])
        // The flow is recorded twice, once at each end's veth; the client's entry is the one it owns.
        let toClient = try #require(flows.first { $0["destination"] as? String == node.cluster.pods[0].ipv4 && $0["destinationPort"] as? Int == 8080
                                        && $0["owner"] as? String == node.cluster.pods[0].ipv4 },
                                    "\(flows)")
        #expect(toClient["pod"] as? String == node.client, "the pod whose program is on the entry's ifindex")
        #expect(toClient["stateCode"] as? Int == 6 && toClient["npState"] as? String == "policies-applied"
                && toClient["cpState"] as? String == "default-deny", "\(toClient)")
        #expect(toClient["owner"] as? String == node.cluster.pods[0].ipv4)
        let table = try NetfenceBinary.run(["ebpf", "d", try node.id(node.agent.conntrack)]).standardOutput
        #expect(table.contains(node.client) && table.contains("policies-applied") && !table.contains("7,0"), "\(table)")
    }

    @Test func aMapOfTheRightNameAndTheWrongSizeIsRefusedWithWhatDiffers() throws {
        guard Privileges.require() else { return }
        let node = try Node()
        let wrong = try BPFMap(type: .lpmTrie, name: "", keySize: 8, valueSize: 100, maxEntries: 4, flags: MapFlags.noPreallocate)
        let path = "\(node.agent.root)/maps/odd-7c79c4bf97@default_ingress_map"
        try wrong.pin(at: path)
        defer { unlink(path) }
        let result = try NetfenceBinary.run(["ebpf", "dump-maps", String(try wrong.info().id)])
        #expect(result.status == 1 && result.standardError.contains("value 100 B") && result.standardError.contains("value 288 B"),
                "\(result.standardError)")
    }

    @Test func listingsNameTheAgentsObjectsByTheirPins() throws {
        guard Privileges.require() else { return }
        let node = try Node()
        let maps = try json(["ebpf", "maps", "--all"])
        let trie = try #require(maps.first { $0["id"] as? Int == Int(try node.agent.pods[0].maps[.egressMap]!.info().id) })
        #expect(trie["name"] as? String == "", "the kernel name is what it is")
        let aws = try #require(trie["aws"] as? [String: Any])
        #expect(aws["object"] as? String == "egress_map" && aws["podIdentifier"] as? String == node.client && aws["direction"] as? String == "egress")
        let table = try NetfenceBinary.run(["ebpf", "maps", "--all"]).standardOutput
        #expect(table.contains("\(node.client) egress"), "AWS POD column")
        let programs = try json(["ebpf", "progs", "--all"])
        let handler = try #require(programs.first { $0["id"] as? Int == Int(try node.agent.pods[1].ingressProgram.info().id) })
        #expect((handler["aws"] as? [String: Any])?["podIdentifier"] as? String == node.db)
        let attached = (handler["attachments"] as? [[String: Any]])?.first
        #expect(attached?["interface"] as? String == node.cluster.pods[1].hostInterface && attached?["direction"] as? String == "egress",
                "handle_ingress on the host veth's tc egress")

        let data = try json(["ebpf", "loaded-ebpfdata"])
        let client = data.filter { $0["owner"] as? String == "aws" && $0["pod"] as? String == node.client }
        #expect(Set(client.compactMap { $0["direction"] as? String }) == ["ingress", "egress"])
        let names = Set(client.flatMap { ($0["maps"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String } })
        #expect(names.isSuperset(of: ["ingress_map", "cp_ingress_map", "ingress_pod_state_map", "aws_conntrack_map", "policy_events"]), "\(names)")
    }

    @Test func theAgentsEventsAndConntrackReadAttributedWithFilters() throws {
        guard Privileges.require() else { return }
        let node = try Node()
        #expect(try node.cluster.pods[0].namespace.probe(.tcp, to: node.cluster.pods[1].ipv4, port: 8080))
        #expect(try node.cluster.pods[1].namespace.probe(.udp, to: node.cluster.pods[0].ipv4, port: 8080))

        let events = try NetfenceBinary.run(["ebpf", "events", "--aws", "-o", "json"])
        #expect(events.status == 0, "\(events.standardError)")
        let lines = try events.standardOutput.split(separator: "\n").map { try jsonObject(String($0)) }
        let sent = try #require(lines.first { $0["direction"] as? String == "egress" && $0["proto"] as? String == "tcp"
            && $0["destination"] as? String == node.cluster.pods[1].ipv4 }, "\(lines.prefix(3))")
        #expect(sent["pod"] as? String == node.client && sent["podNamespace"] as? String == "default" && sent["policy"] as? String == "aws-agent")
        #expect(sent["destinationPort"] as? Int == 8080 && sent["verdict"] as? String == "allow" && (sent["bytes"] as? Int ?? 0) > 0)
        #expect(sent["interface"] as? String == node.cluster.pods[0].hostInterface)

        #expect(try node.cluster.pods[1].namespace.probe(.udp, to: node.cluster.pods[0].ipv4, port: 8080))
        let filtered = try NetfenceBinary.run(["ebpf", "events", "--aws", "--pod", "data/db.primary-0", "--proto", "udp", "-o", "json"])
        let rows = try filtered.standardOutput.split(separator: "\n").map { try jsonObject(String($0)) }
        #expect(!rows.isEmpty && rows.allSatisfy { $0["pod"] as? String == node.db && $0["proto"] as? String == "udp" },
                "--pod NAMESPACE/NAME matches the agent's identifier: \(rows.prefix(2))")

        let flows = try json(["conntrack", "list", "--aws", "--pod", "default/client-7c79c4bf97-x9k2q"])
        #expect(!flows.isEmpty && flows.allSatisfy { $0["pod"] as? String == node.client }, "\(flows.prefix(2))")
        #expect(flows.contains { $0["npState"] as? String == "policies-applied" && $0["cpState"] as? String == "default-deny" })
        let udp = try json(["conntrack", "list", "--aws", "--proto", "udp", "--port", "8080"])
        #expect(!udp.isEmpty && udp.allSatisfy { $0["proto"] as? String == "udp" })
        let stats = try jsonObject(try NetfenceBinary.run(["conntrack", "stats", "--aws", "-o", "json"]).standardOutput)
        #expect((stats["byPod"] as? [String: Int])?[node.client] ?? 0 > 0 && (stats["entries"] as? Int ?? 0) >= 2)

        let refused = try NetfenceBinary.run(["conntrack", "flush", "--aws"])
        #expect(refused.status == 64 && refused.standardError.contains("--yes-change-the-agent"))
        let flushed = try NetfenceBinary.run(["conntrack", "flush", "--aws", "--yes-change-the-agent", "--proto", "udp", "-o", "json"])
        let removed = try jsonObject(flushed.standardOutput)["removed"] as? Int ?? 0
        #expect(flushed.status == 0 && removed >= 1, "\(flushed.standardOutput)")
        #expect(try json(["conntrack", "list", "--aws", "--proto", "udp"]).isEmpty)
        #expect(!(try json(["conntrack", "list", "--aws", "--proto", "tcp"])).isEmpty, "only the selected flows went")
    }

    /// `policy explain --aws` decides by the agent's own procedure over its maps: Admin by lowest
    /// priority first, then the network-policy slots in order (RESERVED denies), then the pod's state.
    @Test func explainOverTheAgentsMapsFollowsItsProcedure() throws {
        guard Privileges.require() else { return }
        let node = try Node()
        let client = node.agent.pods[0]
        try client.maps[.ingressMap]!.update(key: AWSAgentNode.trieKey("198.18.0.0/16"),
                                               value: AWSAgentNode.trieValue([0: [6, 80, 0], 5: [17, 8000, 8100]], clusterPolicy: false))
        try client.maps[.ingressMap]!.update(key: AWSAgentNode.trieKey("198.18.9.0/24"), value: AWSAgentNode.trieValue([0: [255, 0, 0]], clusterPolicy: false))
        // Admin priority 10 Deny of TCP 443 (10×10+0); Baseline priority 5 Accept of anything ((2000+5)×10+1).
        try client.maps[.clusterIngressMap]!.update(key: AWSAgentNode.trieKey("198.18.0.0/15"),
                                                      value: AWSAgentNode.trieValue([0: [6, 100, 443, 0], 1: [254, 20051, 0, 0]], clusterPolicy: true))
        let cases: [(peer: String, proto: String, port: Int, verdict: String, tier: String, slot: Int?, map: String?)] = [
            ("198.18.1.1", "tcp", 443, "deny", "admin", 0, "cp_ingress_map"),
            ("198.18.1.1", "tcp", 80, "allow", "network-policy", 0, "ingress_map"),
            ("198.18.1.1", "udp", 8050, "allow", "network-policy", 5, "ingress_map"),
            ("198.18.1.1", "tcp", 22, "deny", "network-policy", nil, nil),
            ("198.18.9.9", "tcp", 80, "deny", "network-policy", 0, "ingress_map"),
            ("198.19.0.1", "tcp", 80, "deny", "network-policy", nil, nil),
        ]
        for expected in cases {
            let result = try NetfenceBinary.run(["policy", "explain", "--aws", "--pod", "default/client-7c79c4bf97-x9k2q", "--direction", "ingress",
                                                 "--peer", expected.peer, "--proto", expected.proto, "--port", String(expected.port), "-o", "json"])
            #expect(result.status == 0, "\(result.standardError)")
            let answer = try jsonObject(result.standardOutput)
            #expect(answer["verdict"] as? String == expected.verdict && answer["tier"] as? String == expected.tier
                    && answer["slot"] as? Int == expected.slot && answer["map"] as? String == expected.map, "\(expected): \(answer)")
        }
        let wide = try jsonObject(try NetfenceBinary.run(["policy", "explain", "--aws", "--pod", "default/client-7c79c4bf97-x9k2q", "--direction", "ingress",
                                                          "--peer", "198.18.9.9", "--port", "80", "-o", "json"]).standardOutput)
        #expect(wide["networkPolicyPrefix"] as? String == "198.18.9.0/24" && wide["clusterPolicyPrefix"] as? String == "198.18.0.0/15")
        #expect(wide["networkPolicyState"] as? String == "policies-applied" && wide["clusterPolicyState"] as? String == "default-deny")
        let text = try NetfenceBinary.run(["policy", "explain", "--aws", "--pod", "default/client-7c79c4bf97-x9k2q", "--direction", "ingress",
                                           "--peer", "198.18.1.1", "--port", "443"]).standardOutput
        #expect(text.contains("decision: deny by admin (slot 0 of cp_ingress_map)"), "\(text)")
        let missing = try NetfenceBinary.run(["policy", "explain", "--aws", "--pod", "default/ghost-1", "--direction", "ingress", "--peer", "198.18.1.1",
                                              "--port", "80"])
        #expect(missing.status == 1 && missing.standardError.contains("no ingress_pod_state_map of pod ghost@default is pinned"))
    }

    /// `aws-eks-na-cli` as a symlink to netfence, in a folder of its own.
    func naCli(_ name: String = "aws-eks-na-cli") throws -> (path: String, folder: URL) {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("nf-nacli-\(UniqueNames.make("n"))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let path = folder.appendingPathComponent(name).path
        try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: NetfenceBinary.path)
        return (path, folder)
    }

    /// Ids, ages, interfaces and timestamps of one run written as placeholders, so the text is stable.
    func stable(_ text: String, _ replacements: [(String, String)]) -> String {
        var text = text
        for (value, placeholder) in replacements { text = text.replacingOccurrences(of: value, with: placeholder) }
        return text.replacingOccurrences(of: #"Last Seen \(ns\) -  \d+  \([^)]*\)"#, with: "Last Seen (ns) -  NS  (AGE ago)", options: .regularExpression)
    }

    @Test func invokedAsAwsEksNaCliItPrintsNaCliText() throws {
        guard Privileges.require() else { return }
        let node = try Node()
        let client = node.agent.pods[0]
        try client.maps[.ingressMap]!.update(key: AWSAgentNode.trieKey("198.18.0.0/16"),
                                               value: AWSAgentNode.trieValue([0: [6, 80, 0], 5: [17, 8000, 8100]], clusterPolicy: false))
        try client.maps[.clusterIngressMap]!.update(key: AWSAgentNode.trieKey("198.18.0.0/15"),
                                                      value: AWSAgentNode.trieValue([0: [254, 100, 0, 0]], clusterPolicy: true))
        #expect(try node.cluster.pods[1].namespace.probe(.tcp, to: node.cluster.pods[0].ipv4, port: 8080))
        let (tool, folder) = try naCli()
        defer { try? FileManager.default.removeItem(at: folder) }
        func run(_ words: [String]) throws -> String {
            let result = try ChildProcess.run(tool, words)
            #expect(result.status == 0, "\(words): \(result.output)")
            return result.output
        }
        let ids: [(String, String)] = try [
            (node.id(client.maps[.ingressMap]!), "TRIE_ID"), (node.id(client.maps[.clusterIngressMap]!), "CP_TRIE_ID"),
            (node.id(client.maps[.ingressPodStateMap]!), "STATE_ID"), (node.id(node.agent.conntrack), "CONNTRACK_ID"),
        ]
        let trie = try run(["ebpf", "dump-maps", ids[0].0])
        Snapshot.expect(stable(trie, ids), matches: "Tests/NetfenceTests/Snapshots/na-cli-dump-maps-trie.txt")
        let cluster = try run(["ebpf", "dcp", ids[1].0])
        Snapshot.expect(stable(cluster, ids), matches: "Tests/NetfenceTests/Snapshots/na-cli-dump-cp-maps.txt")
        let states = try run(["ebpf", "d", ids[2].0])
        // A hash map's order is its own (seeded per map): the blocks, not their order, are the interface.
        let blocks = Set(states.components(separatedBy: "*******************************\n").dropLast())
        #expect(blocks == ["Key :  0\nState -  0\n", "Key :  1\nState -  2\n"] && states.hasSuffix("Done reading all entries in BPF_MAP_TYPE_HASH\n"),
                "\(states)")
        let conntrack = try run(["ebpf", "d", ids[3].0])
        #expect(conntrack.contains("Conntrack Key : Source IP - \(node.cluster.pods[1].ipv4) Source port - ")
                && conntrack.contains("Dest IP - \(node.cluster.pods[0].ipv4) Dest port - 8080 Protocol - 6 Owner IP - \(node.cluster.pods[0].ipv4)"),
                "\(conntrack)")
        #expect(conntrack.contains("Conntrack Val -  6") && conntrack.hasSuffix("Done reading all entries\n"))

        let data = try run(["ebpf", "loaded-ebpfdata"])
        let block = try #require(data.components(separatedBy: String(repeating: "=", count: 88) + "\n")
            .first { $0.contains("\(node.client)_handle_ingress") })
        let lines = block.split(separator: "\n").map(String.init)
        #expect(lines.first == "PinPath:  \(node.agent.root)/programs/\(node.client)_handle_ingress")
        #expect(lines.dropFirst().first == "Pod Identifier : \(node.client)  Direction : ingress ")
        #expect(lines.contains("Associated Maps -> "))
        let names = lines.filter { $0.hasPrefix("Map Name:  ") }.map { String($0.dropFirst(11)) }
        #expect(Set(names).isSuperset(of: ["ingress_map", "cp_ingress_map", "ingress_pod_state_map", "aws_conntrack_map", "policy_events"]), "\(names)")
        // The EKS log collector's grep: every Map Name line is followed by its Map ID.
        for (index, line) in lines.enumerated() where line.hasPrefix("Map Name:") { #expect(lines[index + 1].hasPrefix("Map ID:  ")) }

        let maps = try run(["ebpf", "maps"])
        #expect(maps.hasPrefix("Maps currently loaded : \n") && maps.contains("Type : 11 ID : \(ids[0].0)\nKeysize 8 Valuesize 288 MaxEntries 256\n"))
        let programs = try run(["ebpf", "progs"])
        let handler = try client.ingressProgram.info().id
        #expect(programs.hasPrefix("Programs currently loaded : \n") && programs.contains("Type : 3 ID : \(handler) Associated maps count : "))

        // Unlike na-cli, a failure exits non-zero.
        let missing = try ChildProcess.run(tool, ["ebpf", "dump-maps", "4294967295"])
        #expect(missing.status == 1 && missing.output.contains("no map with id 4294967295"))
        let same = try NetfenceBinary.run(["--format", "aws-eks-na-cli", "ebpf", "dump-maps", ids[0].0])
        #expect(same.standardOutput == trie, "--format aws-eks-na-cli prints the same")
        let (v6, v6folder) = try naCli("aws-eks-na-cli-v6")
        defer { try? FileManager.default.removeItem(at: v6folder) }
        let walked = try ChildProcess.run(v6, ["ebpf", "dump-maps", ids[0].0]).output
        #expect(walked.hasPrefix("Walking map: ingress_map (type=11, id=\(ids[0].0))\nKey : IP/Prefixlen - 198.18.0.0/16 \n"), "\(walked)")
    }

    @Test func ipv6MapsOfTheAgentDecodeToo() throws {
        guard Privileges.require() else { return }
        let agent = try AWSAgentNode()
        defer { agent.remove() }
        let pod = "web-6d8f7c9b5@shop"
        let trie = try BPFMap(type: .lpmTrie, name: "", keySize: 20, valueSize: UInt32(AWSAgent.policyValueBytes), maxEntries: 16,
                              flags: MapFlags.noPreallocate)
        let prefix: [UInt8] = [0x20, 0x01, 0x0d, 0xb8, 0, 0x10] + [UInt8](repeating: 0, count: 10)
        try trie.update(key: AWSAgentNode.bytes(UInt32(48)) + prefix, value: AWSAgentNode.trieValue([2: [6, 443, 0]], clusterPolicy: false))
        let triePath = "\(agent.root)/maps/\(pod)_egress_map"
        try trie.pin(at: triePath)
        defer { unlink(triePath) }
        let conntrack = try BPFMap(type: .lruHash, name: "", keySize: 60, valueSize: 16, maxEntries: 16)
        let source = [UInt8](repeating: 0, count: 15) + [1], destination: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [2]
        let key = source + AWSAgentNode.bytes(UInt16(5555)) + [0, 0] + destination + AWSAgentNode.bytes(UInt16(443)) + [6, 0] + source
            + AWSAgentNode.bytes(UInt32(9))
        try conntrack.update(key: key, value: AWSAgentNode.bytes(UInt64(3)) + AWSAgentNode.bytes(UInt64(0)))
        let conntrackPath = "\(agent.root)/maps/\(pod)_v6_aws_conntrack_map"
        try conntrack.pin(at: conntrackPath)
        defer { unlink(conntrackPath) }

        for spelling in [String(try trie.info().id), triePath, "\(pod)_egress_map"] {
            let rows = try json(["ebpf", "dump-maps", spelling])
            #expect(rows.count == 1 && rows[0]["cidr"] as? String == "2001:db8:10::/48" && rows[0]["slot"] as? Int == 2
                    && rows[0]["ports"] as? String == "443", "\(spelling): \(rows)")
        }
        let flow = try #require(try json(["ebpf", "d", String(try conntrack.info().id)]).first)
        #expect(flow["source"] as? String == "::1" && flow["destination"] as? String == "2001:db8::2" && flow["sourcePort"] as? Int == 5555)
        #expect(flow["npState"] as? String == "default-allow" && flow["cpState"] as? String == "default-deny" && flow["ifindex"] as? Int == 9)
        let table = try NetfenceBinary.run(["ebpf", "d", String(try conntrack.info().id)]).standardOutput
        #expect(table.contains("2001:db8::2") && table.contains("default-deny"), "\(table)")
        let (tool, folder) = try naCli("aws-eks-na-cli-v6")
        defer { try? FileManager.default.removeItem(at: folder) }
        let walked = try ChildProcess.run(tool, ["ebpf", "dump-maps", String(try trie.info().id)]).output
        #expect(walked.contains("Key : IP/Prefixlen - 2001:db8:10::/48 \n-------------------\nValue Entry :  2\nProtocol -  TCP\nStartPort -  443\nEndport -  0\n"),
                "\(walked)")
        let keyLine = try ChildProcess.run(tool, ["ebpf", "dump-maps", String(try conntrack.info().id)]).output
        #expect(keyLine.contains("Conntrack Key : Source IP - ::1 Source port - 5555 Dest IP - 2001:db8::2 Dest port - 443 Protocol - 6 Owner IP - ::1 Ifindex - 9"),
                "\(keyLine)")
        #expect(keyLine.contains("Last Seen (ns) -  0  (never)"))
    }
}
