import Foundation
import HostKit
import Testing
import TestSupport

@Suite(.serialized) struct LoaderBadInputTests {
    /// (what the document gets wrong, its text, the error after the file name)
    static func cases(_ bench: LoaderCluster) -> [(String, String, String)] {
        let good = policyEndpoint("web", selecting: [0], isolation: ["Ingress"], ingress: rule("\(bench.ip(1))/32", ports: [("TCP", 8080, nil)]))
        return [
            ("port as a string", good.replacingOccurrences(of: "port: 8080", with: "port: http"),
             "spec.ingress[0].ports[0].port: \"http\" is a string, expected a number; nothing was applied"),
            ("bad CIDR", good.replacingOccurrences(of: "\(bench.ip(1))/32", with: "198.18.0.0/33"),
             "spec.ingress[0].cidr: 198.18.0.0/33 is not a CIDR; nothing was applied"),
            ("port out of range", good.replacingOccurrences(of: "port: 8080", with: "port: 70000"),
             "spec.ingress[0].ports[0].port: 70000 is not a port; nothing was applied"),
            ("endPort below port", good.replacingOccurrences(of: "port: 8080", with: "port: 8080\n      endPort: 80"),
             "spec.ingress[0].ports[0].endPort: 80 is below port 8080; nothing was applied"),
            ("unknown tier", clusterPolicy("c", tier: "Platform", priority: 1, selecting: [0], ingress: rule("0.0.0.0/0", action: "Deny")),
             "spec.tier: Platform is not Admin or Baseline; nothing was applied"),
            ("unknown action", clusterPolicy("c", tier: "Admin", priority: 1, selecting: [0], ingress: rule("0.0.0.0/0", action: "Drop")),
             "spec.ingress[0].action: Drop is not Accept, Deny or Pass; nothing was applied"),
            ("a valid object after an invalid one", good + "---\n" + good.replacingOccurrences(of: "name: web", with: "name: two")
                .replacingOccurrences(of: "port: 8080", with: "port: 0"),
             "document[1].spec.ingress[0].ports[0].port: 0 is not a port; nothing was applied"),
        ]
    }

    /// The parts of `loader status -o json` an apply may change: pods (revision,
    /// states, objects) and the stored objects. (Map fill moves with any traffic.)
    static func policyState(_ bench: LoaderCluster) throws -> String {
        let text = try bench.cli(["loader", "status", "-o", "json"]).standardOutput
        let status = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        let kept = ["pods": status["pods"] ?? [], "objects": status["objects"] ?? []]
        return String(decoding: try JSONSerialization.data(withJSONObject: kept, options: [.sortedKeys]), as: UTF8.self)
    }

    @Test func invalidInputIsReportedByPathAndAppliesNothing() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        try bench.cli(["loader", "apply"], input: policyEndpoint("base", selecting: [0], isolation: ["Ingress"]))
        let before = try Self.policyState(bench)
        for (what, document, message) in Self.cases(bench) {
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("nf-bad-\(UniqueNames.make("b")).yaml")
            try document.write(to: file, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(at: file) }
            let result = try NetfenceBinary.run(["loader", "apply", "-f", file.path, "--bpffs-root", bench.root.path])
            #expect(result.status == 1, "\(what)")
            #expect(result.standardOutput.isEmpty, "\(what)")
            #expect(result.standardError == "error: \(file.path): \(message)\n", "\(what)")
        }
        #expect(try Self.policyState(bench) == before, "the pods' policies and the stored objects are unchanged")
        try bench.expectMatrix(allowed: everyEdge(pods: 2).subtracting(edges("1>0 *")), scope: everyEdge(pods: 2), "still the base policy")
    }

    @Test func aPolicyThatDoesNotFitIsRefusedWhole() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        let before = try Self.policyState(bench)
        let ports = (0..<33).map { ("TCP", 1000 + $0, Int?.none) }
        let document = policyEndpoint("wide", selecting: [0], isolation: ["Ingress"], ingress: rule("0.0.0.0/0", ports: ports))
            + "---\n" + policyEndpoint("fine", selecting: [1], isolation: ["Ingress"])
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("nf-wide-\(UniqueNames.make("w")).yaml")
        try document.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let result = try NetfenceBinary.run(["loader", "apply", "-f", file.path, "--bpffs-root", bench.root.path])
        #expect(result.status == 1)
        #expect(result.standardError == "error: pod shop/pod0 ingress: 33 port rules apply to 0.0.0.0/0, more than the 32 one prefix can hold\n")
        #expect(try Self.policyState(bench) == before, "not even the object for pod1 was applied")
    }

    @Test(arguments: [
        (["loader", "apply"], "Error: missing --filename <file>: PolicyEndpoint / ClusterPolicyEndpoint objects, JSON or YAML; - reads standard input."),
        (["loader", "attach", "--iface", "eth0"], "Error: missing --pod <namespace/name>: The pod, as NAMESPACE/NAME."),
        (["loader", "detach"], "Error: missing --pod <namespace/name>: The pod, as NAMESPACE/NAME."),
        (["loader", "attach", "--pod", "a/b"], "Error: missing --iface <name>: The pod's host veth."),
        (["ebpf", "events", "level", "node"], "Error: the level node needs --pod: the node's own level is none, deny or all"),
        (["ebpf", "events", "level", "--pod", "a/b", "--rate", "10/s"], "Error: --pod sets a pod's level; rates are the node's (leave out --pod)"),
        (["loader", "status", "--wait-applied"], "Error: --wait-applied needs --pod NAMESPACE/NAME: it waits for one pod"),
        (["loader", "status", "--pod", "a/b", "--timeout", "-1"], "Error: --timeout must be between 0 and 86400 seconds"),
        (["loader", "attach", "--pod", "nonamespace", "--iface", "eth0"], "Error: 'nonamespace' is not a valid value for '--pod' (expected NAMESPACE/NAME as Kubernetes names them: lowercase letters, digits and '-', and '.' in NAME)"),
        (["loader", "attach", "--pod", "a/b", "--iface", "veth-with-a-long-name"],
         "Error: --iface 'veth-with-a-long-name' is no interface name: Linux names them with 1 to 15 bytes, no '/', ':' or space"),
        (["loader", "attach", "--pod", "a/b", "--iface", "eth0", "--netns", "../../proc/1/ns/net"],
         "Error: --netns '../../proc/1/ns/net' is no ip-netns name (a file name under /run/netns); leave it out for this namespace"),
        (["loader", "attach", "--pod", "a/b", "--iface", "eth0", "--netns", ""],
         "Error: --netns '' is no ip-netns name (a file name under /run/netns); leave it out for this namespace"),
        (["conntrack", "list", "--port", "70000"], "Error: '70000' is not a valid value for '--port' (expected a whole number from 0 to 65535)"),
        (["ebpf", "events", "--port", "-1"], "Error: '-1' is not a valid value for '--port' (expected a whole number from 0 to 65535)"),
        (["loader", "attach", "--pod", "a/b", "--iface", "eth0", "--ingress-default", "maybe"],
         "Error: 'maybe' is not a valid value for '--ingress-default' (one of: allow, deny)"),
    ])
    func usageErrors(words: [String], message: String) throws {
        let result = try NetfenceBinary.run(words)
        #expect(result.status == 64)
        #expect(result.standardError.split(separator: "\n").first.map(String.init) == message)
    }

    @Test func runtimeErrorsNameWhatToDo() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 1)
        let missingFile = try NetfenceBinary.run(["loader", "apply", "-f", "/nonexistent/policy.yaml", "--bpffs-root", bench.root.path])
        #expect(missingFile.status == 1 && missingFile.standardError
            == "error: cannot read /nonexistent/policy.yaml: No such file or directory (ENOENT); check the path; nothing was applied\n")
        let unknownPod = try NetfenceBinary.run(["loader", "detach", "--pod", "shop/ghost", "--bpffs-root", bench.root.path])
        #expect(unknownPod.status == 1 && unknownPod.standardError == "error: pod shop/ghost is not attached on this node; see 'netfence loader status'\n")
        let noInterface = try NetfenceBinary.run(["loader", "attach", "--pod", "shop/x", "--iface", "nf-absent0", "--netns", bench.cluster.node.name,
                                                  "--bpffs-root", bench.root.path])
        #expect(noInterface.status == 1)
        #expect(noInterface.standardError == "error: find interface nf-absent0 in network namespace \(bench.cluster.node.name): No such device (ENODEV)\n")
    }

    @Test func aMalformedDocumentAfterAValidOneAppliesNothingEvenItsIsolation() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        let isolating = policyEndpoint("iso", selecting: [0], isolation: ["Ingress"])
        let before = try Self.policyState(bench)
        for junk in ["---\n{ unclosed: [1\n", "---\nkind: PolicyEndpoint\n  bad: indent\n", "...\njunk: [1, 2\n"] {
            let file = try temporaryPolicyFile(isolating + junk)
            defer { try? FileManager.default.removeItem(at: file) }
            let result = try NetfenceBinary.run(["loader", "apply", "-f", file.path, "--bpffs-root", bench.root.path])
            #expect(result.status == 1 && result.standardError.contains(": document[1]: line ") && result.standardError.hasSuffix("; nothing was applied\n"),
                    "\(result.standardError)")
            #expect(result.standardError.split(separator: "\n").count == 1)
        }
        #expect(try Self.policyState(bench) == before)
        #expect(try bench.reaches(1, 0, .tcp), "the pod the dropped document would isolate stays as it was")
    }

    @Test func pipesFIFOsAndDevNullReadLikeFiles() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 1)
        let root = "--bpffs-root \(bench.root.path)"
        let empty = try ChildProcess.run("/bin/sh", ["-c", "\(NetfenceBinary.path) loader apply -f /dev/null \(root)"])
        #expect(empty.status == 1 && empty.output == "error: /dev/null: the input is empty: no objects to read; nothing was applied\n")
        let document = policyEndpoint("piped", selecting: [0], isolation: ["Ingress"])
        let file = try temporaryPolicyFile(document)
        defer { try? FileManager.default.removeItem(at: file) }
        let substituted = try ChildProcess.run("/bin/bash", ["-c", "\(NetfenceBinary.path) loader apply -f <(cat \(file.path)) \(root)"])
        #expect(substituted.status == 0 && substituted.output.hasPrefix("Applied PolicyEndpoint shop/piped"), "\(substituted.output)")
        let fifo = FileManager.default.temporaryDirectory.appendingPathComponent("nf-fifo-\(UniqueNames.make("f"))").path
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        let viaFIFO = try ChildProcess.run("/bin/sh", ["-c", "cat \(file.path) > \(fifo) & \(NetfenceBinary.path) loader delete -f \(fifo) \(root)"])
        #expect(viaFIFO.status == 0 && viaFIFO.output.hasPrefix("Deleted PolicyEndpoint shop/piped"), "\(viaFIFO.output)")
        let list = try ChildProcess.run("/bin/sh", ["-c", "echo '{\"kind\": \"PolicyEndpointList\", \"items\": []}' | \(NetfenceBinary.path) loader apply -f - \(root)"])
        #expect(list.status == 0 && list.output == "Nothing to apply: the input's List has no items\n")
        let binary = try ChildProcess.run("/bin/sh", ["-c", "head -c 4096 \(NetfenceBinary.path) | \(NetfenceBinary.path) loader apply -f - \(root)"])
        #expect(binary.status == 1 && binary.output.hasPrefix("error: standard input: the input is not text"), "\(binary.output)")
        #expect(!binary.output.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" }, "no raw control bytes reach the terminal")
    }

    @Test func anAliasBombIsRefusedWithinASecondInBoundedMemoryAndFiftyMegabytesOfJSONApply() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 1)
        var bomb = "    a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
        for (previous, name) in zip("abcdefgh", "bcdefghi") {
            bomb += "    \(name): &\(name) [" + Array(repeating: "*\(previous)", count: 9).joined(separator: ",") + "]\n"
        }
        let document = policyEndpoint("bomb", selecting: [0], isolation: ["Ingress"])
            .replacingOccurrences(of: "  namespace: shop\nspec:", with: "  namespace: shop\n  annotations:\n" + bomb + "spec:")
        let file = try temporaryPolicyFile(document)
        defer { try? FileManager.default.removeItem(at: file) }
        // GNU time forks the command from itself: its peak is netfence's own (a child spawned from
        // the test process would be charged the test's memory too).
        let refused = try ChildProcess.run("/usr/bin/time", ["-f", "peak-kib=%M", NetfenceBinary.path, "loader", "apply", "-f", file.path,
                                                             "--bpffs-root", bench.root.path])
        #expect(refused.status == 1 && refused.output.contains("YAML aliases expand to more than 100000 nodes"), "\(refused.output)")
        #expect(refused.seconds < 1, "refused in \(refused.seconds) s")
        let peak = refused.output.split(separator: "\n").first { $0.hasPrefix("peak-kib=") }.flatMap { Int($0.dropFirst(9)) } ?? .max
        #expect(peak < 256 * 1024, "peak RSS \(peak) KiB")

        // 50 MB of honest JSON: 2,000 PolicyEndpoints of 400 rules each, for pods not on this node.
        let items = (0..<2000).map { object in
            let rules = (0..<400).map { "{\"cidr\":\"198.19.\($0 / 250).\($0 % 250)/32\",\"ports\":[{\"protocol\":\"TCP\",\"port\":\(80 + object % 100)}]}" }
            return "{\"apiVersion\":\"networking.k8s.aws/v1alpha1\",\"kind\":\"PolicyEndpoint\",\"metadata\":{\"name\":\"pe-\(object)\",\"namespace\":\"big\"},"
                + "\"spec\":{\"policyRef\":{\"name\":\"np-\(object)\",\"namespace\":\"big\"},\"podIsolation\":[\"Ingress\"],"
                + "\"podSelectorEndpoints\":[{\"name\":\"pod-\(object)\",\"namespace\":\"big\"}],\"ingress\":[\(rules.joined(separator: ","))]}}"
        }
        let big = try temporaryPolicyFile("{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[\(items.joined(separator: ","))]}")
        defer { try? FileManager.default.removeItem(at: big) }
        #expect((try FileManager.default.attributesOfItem(atPath: big.path)[.size] as? NSNumber)?.intValue ?? 0 > 50_000_000)
        let applied = try bench.cli(["loader", "apply", "-f", big.path])
        #expect(applied.standardOutput.hasPrefix("Applied 2000 objects (PolicyEndpoint big/pe-0 … PolicyEndpoint big/pe-1999)"))
    }
}
