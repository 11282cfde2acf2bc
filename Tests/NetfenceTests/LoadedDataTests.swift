import BPFKit
import BPFObjects
import Foundation
import NodeNetwork
import Testing
import TestSupport

/// `ebpf loaded-ebpfdata` (`e`): per pod and direction, the program on the pod's
/// interface and its maps, for netfence's pods and for programs pinned as the
/// AWS agent pins them.
@Suite(.serialized) struct LoadedDataTests {
    @Test func podsProgramsAndMapsOfNetfenceAndTheAWSAgent() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"],
                                                               ingress: rule("\(bench.ip(1))/32")))
        // A program pinned and attached as the AWS agent does it, on an interface of its own.
        let aws = try TestPinRoot()
        try FileManager.default.createDirectory(atPath: aws.path + "/programs", withIntermediateDirectories: true)
        let sandbox = try SandboxInterfaces(name: UniqueNames.make("nfaws"), interfaces: ["awsveth0"])
        defer { sandbox.remove() }
        let object = try BPFObjectFile(bytes: EmbeddedBPFObject.demo.bytes, name: "demo")
        let program = try object.program(named: "demo_ingress")
        try program.pin(at: aws.path + "/programs/web-7d4-shop_handle_ingress")
        _ = try TCAttachments.attach(program, interface: "awsveth0", direction: .egress, in: sandbox.namespace)

        let rows = try jsonRows(bench.cli(["ebpf", "loaded-ebpfdata", "-o", "json", "--aws-root", aws.path]))
        let ours = rows.filter { $0["owner"] as? String == "netfence" }
        #expect(ours.map { "\($0["pod"] ?? "")/\($0["direction"] ?? "")" }
                == ["shop/pod0/ingress", "shop/pod0/egress", "shop/pod1/ingress", "shop/pod1/egress"])
        let ingress = try #require(ours.first)
        #expect(ingress["interface"] as? String == bench.cluster.pods[0].hostInterface)
        #expect(ingress["networkNamespace"] as? String == bench.cluster.node.name)
        #expect(ingress["hook"] as? String == "tc egress" && ingress["programName"] as? String == "nf_to_pod")
        #expect(ours[1]["hook"] as? String == "tc ingress" && ours[1]["programName"] as? String == "nf_from_pod")
        let mapNames = Set(((ingress["maps"] as? [[String: Any]]) ?? []).compactMap { $0["name"] as? String })
        #expect(mapNames.isSuperset(of: ["conntrack", "pods", "policies", "event_rings", "event_doorbell"]), "\(mapNames)")
        // The live trie is the one dump-maps --pod reads; no trie where nothing selects the pod.
        let trieID = try #require(ingress["policyTrieID"] as? Int)
        let trie = try jsonRows(bench.cli(["ebpf", "d", "\(trieID)", "-o", "json"]))
        #expect(trie.first?["cidr"] as? String == "\(bench.ip(1))/32")
        #expect(ours[1]["policyTrieID"] == nil)

        let theirs = try #require(rows.first { $0["owner"] as? String == "aws" }, "\(rows)")
        #expect(theirs["pod"] as? String == "web-7d4-shop" && theirs["direction"] as? String == "ingress")
        #expect(theirs["interface"] as? String == "awsveth0" && theirs["hook"] as? String == "tc egress")
        #expect(theirs["programID"] as? Int == Int(try program.info().id))
        #expect(((theirs["maps"] as? [[String: Any]]) ?? []).contains { $0["name"] as? String == "demo_packets" })

        let table = try bench.cli(["ebpf", "e", "--aws-root", aws.path]).standardOutput
        #expect(table.hasPrefix("OWNER"))
        #expect(table.contains("shop/pod0") && table.contains("web-7d4-shop") && table.contains("conntrack:"))
        let one = try jsonRows(bench.cli(["ebpf", "e", "--pod", "shop/pod1", "-o", "json", "--aws-root", aws.path]))
        #expect(one.count == 2 && one.allSatisfy { $0["pod"] as? String == "shop/pod1" })

        let unknown = try NetfenceBinary.run(["ebpf", "e", "--pod", "shop/nope", "--bpffs-root", bench.root.path, "--aws-root", aws.path])
        #expect(unknown.status == 1)
        #expect(unknown.standardError == "error: pod shop/nope has no programs on this node; list pods with 'netfence ebpf loaded-ebpfdata'\n")
        try FileManager.default.removeItem(atPath: aws.path + "/programs/web-7d4-shop_handle_ingress")
        try FileManager.default.removeItem(atPath: aws.path + "/programs")
    }

    /// A pin's name is whatever bytes its maker chose: in aws-eks-na-cli's words (PinPath) its control
    /// characters print escaped, as in netfence's own tables.
    @Test func aPinsControlCharactersPrintEscapedInTheAgentsWords() throws {
        guard Privileges.require() else { return }
        let aws = try TestPinRoot()
        try FileManager.default.createDirectory(atPath: aws.path + "/programs", withIntermediateDirectories: true)
        let pin = aws.path + "/programs/web\u{1b}[2J-shop_handle_ingress"
        try BPFObjectFile(bytes: EmbeddedBPFObject.demo.bytes, name: "demo").program(named: "demo_ingress").pin(at: pin)
        defer { try? FileManager.default.removeItem(atPath: aws.path + "/programs") }
        let result = try NetfenceBinary.run(["ebpf", "loaded-ebpfdata", "--format", "aws-eks-na-cli", "--aws-root", aws.path])
        #expect(result.status == 0, "\(result.standardError)")
        #expect(result.standardOutput.contains("PinPath:  \(aws.path)/programs/web\\x1b[2J-shop_handle_ingress"), "\(result.standardOutput)")
        #expect(!result.standardOutput.contains("\u{1b}"))
    }

    @Test func nothingLoadedIsAWarningNotAnError() throws {
        guard Privileges.require() else { return }
        let empty = try TestPinRoot()
        let result = try NetfenceBinary.run(["ebpf", "loaded-ebpfdata", "--bpffs-root", empty.path, "--aws-root", empty.path])
        #expect(result.status == 0)
        #expect(result.standardError.hasPrefix("warning: no pod has programs here: netfence is not loaded under \(empty.path)"))
        let json = try NetfenceBinary.run(["ebpf", "e", "-o", "json", "--bpffs-root", empty.path, "--aws-root", empty.path])
        #expect(json.status == 0)
        #expect(try jsonArray(json.standardOutput).isEmpty)
    }
}
