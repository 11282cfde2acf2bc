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
        let toClient = try #require(flows.first { $0["destination"] as? String == node.cluster.pods[0].ipv4 && $0["destinationPort"] as? Int == 8080 },
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
}
