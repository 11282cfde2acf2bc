import BPFKit
import DatapathModel
import Foundation
import NodeNetwork
import Testing
import TestSupport

/// Probes that run on a background thread while the loader changes things, and
/// count every verdict that contradicts the invariant.
final class ContinuousProbe: @unchecked Sendable {
    private let lock = NSLock()
    private var stopped = false
    private(set) var rounds = 0
    private(set) var wrong: [String] = []
    private var thread: Thread?

    /// `mustConnect` and `mustNotConnect` are (from, to, probe) edges checked in a loop.
    init(_ bench: LoaderCluster, mustConnect: [Edge], mustNotConnect: [Edge]) {
        let pods = bench.cluster.pods
        let port = LoaderCluster.port
        let thread = Thread { [self] in
            while !lock.withLock({ stopped }) {
                for edge in mustConnect where (try? pods[edge.from].namespace.probe(edge.probe, to: pods[edge.to].ipv4, port: port, timeout: 1)) != true {
                    lock.withLock { wrong.append("\(edge) failed") }
                }
                for edge in mustNotConnect where (try? pods[edge.from].namespace.probe(edge.probe, to: pods[edge.to].ipv4, port: port, timeout: 0.05)) != false {
                    lock.withLock { wrong.append("\(edge) connected") }
                }
                lock.withLock { rounds += 1 }
            }
        }
        self.thread = thread
        thread.start()
    }

    /// Stops after the current round; returns (rounds, wrong verdicts).
    func stop() -> (rounds: Int, wrong: [String]) {
        lock.withLock { stopped = true }
        while thread?.isFinished == false { usleep(5_000) }
        return lock.withLock { (rounds, wrong) }
    }
}

@Suite(.serialized) struct LoaderGuaranteesTests {
    @Test func aContinuousProbeSeesNoWrongVerdictThrough200Swaps() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 3)
        let narrow = policyEndpoint("web", selecting: [0], isolation: ["Ingress"], ingress: rule("\(bench.ip(1))/32", ports: [("TCP", 8080, nil)]))
        let wide = policyEndpoint("web", selecting: [0], isolation: ["Ingress"],
                                  ingress: rule("\(bench.ip(1))/32", ports: [("TCP", 8080, nil), ("UDP", 8080, nil)]) + rule("198.19.0.0/16"))
        try bench.cli(["loader", "apply"], input: narrow)
        let probe = ContinuousProbe(bench, mustConnect: Array(edges("1>0 tcp")), mustNotConnect: Array(edges("2>0 tcp")))
        for swap in 0..<200 { try bench.cli(["loader", "apply"], input: swap % 2 == 0 ? wide : narrow) }
        let (rounds, wrong) = probe.stop()
        #expect(rounds > 20, "the probe ran throughout (\(rounds) rounds)")
        #expect(wrong.isEmpty, "wrong verdicts during swaps: \(wrong.prefix(5))")
        let status = try bench.cli(["loader", "status", "-o", "json"]).standardOutput
        #expect(status.contains("\"revision\" : 204"), "every swap takes the node's next revision: three attaches, then 201 applies")
    }

    @Test func killingTheLoaderMidApplyLeavesOldOrNewAndARerunConverges() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        let old = policyEndpoint("big", selecting: [0], isolation: ["Ingress"], ingress: rule("\(bench.ip(1))/32", ports: [("TCP", 8080, nil)]))
        // Large enough that the apply takes a while: 2,000 prefixes, then UDP too.
        let prefixes = (0..<2000).map { rule("198.19.\($0 / 250).\($0 % 250)/32") }.joined()
        let new = policyEndpoint("big", selecting: [0], isolation: ["Ingress"],
                                 ingress: rule("\(bench.ip(1))/32", ports: [("TCP", 8080, nil), ("UDP", 8080, nil)]) + prefixes)
        try bench.cli(["loader", "apply"], input: old)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("nf-kill-\(UniqueNames.make("k")).yaml")
        try new.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let scope = everyEdge(pods: 2)
        let newMatrix = scope.subtracting(edges("1>0 *")).union(edges("1>0 tcp", "1>0 udp"))
        for delay in [0.02, 0.05, 0.1, 0.2] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: NetfenceBinary.path)
            process.arguments = ["loader", "apply", "-f", file.path, "--bpffs-root", bench.root.path]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            Thread.sleep(forTimeInterval: delay)
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            // The pod enforces the old policy (TCP) or the new one (TCP and UDP), nothing else.
            let reached = Set(try Probe.allCases.filter { try bench.reaches(1, 0, $0) })
            #expect(reached == [.tcp] || reached == [.tcp, .udp], "after a kill at \(delay)s: \(reached)")
            #expect(try bench.cli(["loader", "status", "-o", "json"]).status == 0, "state still reads after a kill at \(delay)s")
            try bench.cli(["loader", "apply"], input: old)
        }
        try bench.cli(["loader", "apply"], input: new)
        try bench.expectMatrix(allowed: newMatrix, scope: scope, "the re-run converged")
        let status = try bench.cli(["loader", "status", "-o", "json"]).standardOutput
        let objects = try #require((try JSONSerialization.jsonObject(with: Data(status.utf8)) as? [String: Any])?["objects"] as? [[String: Any]])
        #expect(objects.count == 1, "one live version of the object")
        // Chunks the killed applies left behind were collected: the store holds the live version's only.
        let manifests = try #require(try BPFFilesystem.pinnedMap(at: bench.root.path + "/state/policy_manifests"))
        let chunks = try #require(try BPFFilesystem.pinnedMap(at: bench.root.path + "/state/policy_chunks"))
        let live = try manifests.keys().compactMap { try manifests.lookup(key: $0).flatMap(ObjectStoreCodec.decodeManifest) }
        #expect(live.count == 1)
        #expect(try chunks.countEntries() == live.first?.chunks)
    }

    /// An apply or delete removes exactly the chunks its replaced versions' manifests counted (no walk
    /// of the table); chunks no manifest counts (what killed applies leave, also beyond the count at a
    /// live index) go at the next reconcile, and the live version reads as before.
    @Test func removalsDeleteTheChunksTheyCountedAndReconcileTheRest() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        let open = policyEndpoint("web", selecting: [0], isolation: ["Ingress"], ingress: rule("\(bench.ip(1))/32"))
        try bench.cli(["loader", "apply"], input: open)
        let manifests = try #require(try BPFFilesystem.pinnedMap(at: bench.root.path + "/state/policy_manifests"))
        let chunks = try #require(try BPFFilesystem.pinnedMap(at: bench.root.path + "/state/policy_chunks"))
        func counted() throws -> [UInt32: Int] {
            Dictionary(uniqueKeysWithValues: try manifests.keys().compactMap { key in
                try manifests.lookup(key: key).flatMap(ObjectStoreCodec.decodeManifest).map { (key.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }, $0.chunks) }
            })
        }
        let (index, count) = try #require(try counted().first)
        let stray = ObjectStoreCodec.chunks([1, 2, 3])[0]
        try chunks.update(key: ObjectStoreCodec.chunkKey(object: index, chunk: count + 2), value: stray)
        try chunks.update(key: ObjectStoreCodec.chunkKey(object: 999, chunk: 0), value: stray)
        #expect(try chunks.countEntries() == count + 2)
        try bench.cli(["loader", "reconcile"])
        #expect(try chunks.countEntries() == count, "only the live version's chunks")
        #expect(try bench.cli(["loader", "status", "--check"]).status == 0)

        try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"],
                                                                 ingress: rule("\(bench.ip(1))/32", ports: [("TCP", 8080, nil)])))
        let live = try counted()
        #expect(live.count == 1 && live[index] == nil, "a new version at another index")
        #expect(try chunks.countEntries() == live.values.reduce(0, +), "the replaced version's chunks went")
        #expect(try bench.reaches(1, 0, .tcp) && !bench.reaches(1, 0, .udp))
        try bench.cli(["loader", "delete"], input: open)
        #expect(try chunks.countEntries() == 0 && manifests.countEntries() == 0)
    }

    @Test func reinitKeepsConntrackAndNeverLeavesAnInterfaceUnfiltered() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 3)
        try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"],
                                                               ingress: rule("\(bench.ip(1))/32", ports: [("TCP", 8080, nil)])))
        #expect(try bench.reaches(1, 0, .tcp))
        let conntrack = try #require(try BPFFilesystem.pinnedMap(at: bench.root.path + "/maps/conntrack"))
        let tracked = try #require(try conntrack.countEntries())
        #expect(tracked > 0)
        let before = try #require(try BPFFilesystem.pinnedProgram(at: bench.root.path + "/programs/nf_to_pod")).info().id

        let probe = ContinuousProbe(bench, mustConnect: Array(edges("1>0 tcp")), mustNotConnect: Array(edges("2>0 tcp")))
        for _ in 0..<5 { try bench.cli(["loader", "init"]) }
        let (rounds, wrong) = probe.stop()
        #expect(rounds > 0 && wrong.isEmpty, "no moment without a filter: \(wrong.prefix(5))")

        let after = try #require(try BPFFilesystem.pinnedProgram(at: bench.root.path + "/programs/nf_to_pod")).info().id
        #expect(after != before, "new programs")
        #expect(try conntrack.countEntries() ?? 0 >= tracked, "conntrack kept")
        let attached = TCAttachments.scan([bench.cluster.node]).filter { $0.interface == bench.cluster.pods[0].hostInterface }
        #expect(Set(attached.map(\.programID)).contains(after), "the interface carries the new program")
        #expect(attached.count == 2, "one filter per hook, replaced rather than added")
        let status = try bench.cli(["loader", "status", "-o", "json"]).standardOutput
        #expect(status.contains("\"drift\" : [\n\n  ]"))
    }
}

@Suite(.serialized) struct TCXAttachmentTests {
    /// `loader init --attach tcx` moves every pod from filters to pinned tcx links, later inits point the
    /// links at their new programs, `--attach tc` moves them back: under a probe that never sees a hook
    /// without netfence's program, the choice kept by plain inits, every view naming the links.
    @Test func podsMoveBetweenFiltersAndTCXLinksNeverUnenforced() throws {
        guard Privileges.require(), let bench = try LoaderCluster.forLinks(pods: 3, refusing: "tcx") else { return }
        let links = bench.root.path + "/links"
        func hooks() -> [ProgramAttachment] {
            TCAttachments.scan([bench.cluster.node]).filter { attachment in bench.cluster.pods.contains { $0.hostInterface == attachment.interface } }
        }
        func programIDs() throws -> Set<UInt32> {
            Set(try ["nf_to_pod", "nf_from_pod"].map { try #require(try BPFFilesystem.pinnedProgram(at: "\(bench.root.path)/programs/\($0)")).info().id })
        }
        func status() throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(try bench.cli(["loader", "status", "-o", "json"]).standardOutput.utf8)) as? [String: Any])
        }

        let probe = ContinuousProbe(bench, mustConnect: Array(edges("1>0 tcp")), mustNotConnect: Array(edges("2>0 tcp")))
        #expect(try bench.cli(["loader", "init", "--attach", "tcx"]).standardOutput.contains("Pods attach through tcx links"))
        var current = try programIDs()
        #expect(hooks().count == 6 && hooks().allSatisfy { $0.kind == .tcx && current.contains($0.programID) },
                "each pod's two hooks carry a link to the current program, no filter: \(hooks().map(\.summary))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: links).count == 6)
        for _ in 0..<2 { try bench.cli(["loader", "init"]) }  // the choice is kept; the links run the new programs
        current = try programIDs()
        #expect(hooks().count == 6 && hooks().allSatisfy { $0.kind == .tcx && current.contains($0.programID) })
        try bench.cli(["loader", "init", "--attach", "tc"])
        current = try programIDs()
        #expect(hooks().count == 6 && hooks().allSatisfy { $0.kind == .tc && current.contains($0.programID) && $0.handle == 0x4e46 })
        #expect(!FileManager.default.fileExists(atPath: links), "no link pinned while pods attach through filters")
        try bench.cli(["loader", "init", "--attach", "tcx"])
        let (rounds, wrong) = probe.stop()
        #expect(rounds > 0 && wrong.isEmpty, "no moment without netfence's program: \(wrong.prefix(5))")
        #expect(try bench.reaches(1, 0, .tcp) && !bench.reaches(2, 0, .tcp))

        // Every view names the links.
        #expect(try status()["attachment"] as? String == "tcx" && status()["consistent"] as? Bool == true)
        let progs = try bench.cli(["ebpf", "progs"]).standardOutput
        #expect(progs.contains("\(bench.cluster.pods[0].hostInterface)@\(bench.cluster.node.name) tcx/ingress"), "\(progs)")
        let loaded = try #require(try JSONSerialization.jsonObject(with: Data(try bench.cli(["ebpf", "loaded-ebpfdata", "-o", "json"]).standardOutput.utf8))
            as? [[String: Any]])
        let pod0 = loaded.filter { $0["pod"] as? String == "shop/pod0" }
        current = try programIDs()
        #expect(pod0.count == 2 && pod0.allSatisfy { ($0["hook"] as? String ?? "").hasPrefix("tcx ")
            && current.contains(UInt32($0["programID"] as? Int ?? 0)) }, "each direction's program read from its link: \(pod0)")
        // A link unpinned by hand is drift, and reconcile attaches it again.
        try FileManager.default.removeItem(atPath: links + "/0-ingress")
        #expect(try (status()["drift"] as? [String] ?? []).contains("shop/pod0: \(bench.cluster.pods[0].hostInterface) has no netfence ingress tcx link"))
        try bench.cli(["loader", "reconcile"])
        #expect(try status()["consistent"] as? Bool == true && FileManager.default.fileExists(atPath: links + "/0-ingress"))
        // A pod attached again keeps its links; one detached takes them with it.
        try bench.cli(["loader", "attach", "--pod", "shop/pod0", "--iface", bench.cluster.pods[0].hostInterface, "--netns", bench.cluster.node.name])
        #expect(try bench.reaches(1, 0, .tcp) && !bench.reaches(2, 0, .tcp))
        try bench.cli(["loader", "detach", "--pod", "shop/pod2"])
        #expect(hooks().count == 4 && !hooks().contains { $0.interface == bench.cluster.pods[2].hostInterface })
        #expect(try FileManager.default.contentsOfDirectory(atPath: links).count == 4)
        try bench.cli(["loader", "reset"])
        #expect(hooks().isEmpty && !FileManager.default.fileExists(atPath: bench.root.path), "reset takes the links with their pins")
    }

    /// What a kill or an operator leaves: a link pinned for no pod (reconcile unpins it, which detaches it), a
    /// pod's interface deleted and made anew under its name (the next attach pins a link on the new one), and
    /// a way of attaching no netfence knows (refused before anything changes).
    @Test func strayAndDeadLinksAreFoundAndReplaced() throws {
        guard Privileges.require(), TCAttachments.tcxAvailable else { return }  // the refusal on older kernels: the test above
        let bench = try LoaderCluster(pods: 2)
        let refused = try NetfenceBinary.run(["loader", "init", "--attach", "xdp", "--bpffs-root", bench.root.path])
        #expect(refused.status == 64 && refused.standardError.contains("--attach"), "\(refused.standardError)")
        try bench.cli(["loader", "init", "--attach", "tcx"])
        let (pod1, node) = (bench.cluster.pods[1], bench.cluster.node)
        // Pod 1's links as a detach killed before its registry write would leave them, under an id no pod holds.
        try bench.cli(["loader", "detach", "--pod", "shop/pod1"])
        let program = try #require(try BPFFilesystem.pinnedProgram(at: bench.root.path + "/programs/nf_to_pod"))
        try TCAttachments.attachLink(program, interface: pod1.hostInterface, direction: .egress, in: node).pin(at: bench.root.path + "/links/77-egress")
        let status = try bench.cli(["loader", "status"]).standardOutput
        #expect(status.contains("\(pod1.hostInterface)@\(node.name) tcx/egress carries netfence's program but no pod is attached there"), "\(status)")
        let reconciled = try bench.cli(["loader", "reconcile", "-o", "json"]).standardOutput
        #expect(reconciled.contains("\(bench.root.path)/links/77-egress"), "\(reconciled)")
        #expect(!TCAttachments.scan([node]).contains { $0.interface == pod1.hostInterface }, "unpinned, the link let go of the hook")

        // Pod 0's interface deleted and made anew: its pinned links are dead (the kernel detached them).
        let pod0 = bench.cluster.pods[0]
        try IPRoute.run(["-n", node.name, "link", "del", pod0.hostInterface])
        try IPRoute.run(["-n", node.name, "link", "add", pod0.hostInterface, "type", "veth", "peer", "name", "eth0", "netns", pod0.namespace.name])
        #expect(try (TCXLink.pinned(at: bench.root.path + "/links/0-ingress")?.ifindex) == 0, "a link whose interface went reads ifindex 0")
        try bench.cli(["loader", "attach", "--pod", "shop/pod0", "--iface", pod0.hostInterface, "--netns", node.name])
        let attached = TCAttachments.scan([node]).filter { $0.interface == pod0.hostInterface }
        #expect(attached.count == 2 && attached.allSatisfy { $0.kind == .tcx }, "\(attached.map(\.summary))")
        #expect(try bench.cli(["loader", "status", "-o", "json"]).standardOutput.contains("\"consistent\" : true"))

        // A kill between a link's staged pin and its rename leaves `…_next`: reconcile unpins it. (Another
        // program than the one the hook runs: tcx attaches a program once per hook.)
        let other = try #require(try BPFFilesystem.pinnedProgram(at: bench.root.path + "/programs/nf_from_pod"))
        try TCAttachments.attachLink(other, interface: pod0.hostInterface, direction: .egress, in: node).pin(at: bench.root.path + "/links/0-egress_next")
        try bench.cli(["loader", "reconcile"])
        #expect(!FileManager.default.fileExists(atPath: bench.root.path + "/links/0-egress_next"))
        #expect(TCAttachments.scan([node]).filter { $0.interface == pod0.hostInterface }.count == 2, "the staged link let go of the hook")
    }

    /// An init that changed the way of attaching and was killed before it moved the pods: the marker says
    /// tcx, the pods still carry filters. Every pod is drift, and reconcile moves them, enforcing throughout.
    @Test func aSwitchKilledBeforeItMovedThePodsIsDriftAndReconciled() throws {
        guard Privileges.require(), let bench = try LoaderCluster.forLinks(pods: 2, refusing: "tcx") else { return }
        let markerMap = try #require(try BPFFilesystem.pinnedMap(at: bench.root.path + "/state/root_marker"))
        let key = withUnsafeBytes(of: UInt32(0)) { Array($0) }
        let stored = try #require(try markerMap.lookup(key: key))
        var marker = try #require(RootMarker.decode(stored))
        marker.attachment = .tcx
        try markerMap.update(key: key, value: marker.encode())

        let status = try bench.cli(["loader", "status"]).standardOutput
        for pod in bench.cluster.pods {
            #expect(status.contains("\(pod.hostInterface) has no netfence ingress tcx link"), "\(status)")
        }
        #expect(try bench.reaches(1, 0, .tcp), "the filters still enforce meanwhile")
        try bench.cli(["loader", "reconcile"])
        let hooks = TCAttachments.scan([bench.cluster.node])
        #expect(hooks.count == 4 && hooks.allSatisfy { $0.kind == .tcx }, "\(hooks.map(\.summary))")
        #expect(try bench.cli(["loader", "status", "-o", "json"]).standardOutput.contains("\"consistent\" : true"))
        #expect(try bench.reaches(1, 0, .tcp))
    }
}

extension LoaderCluster {
    /// A cluster whose pod0 admits pod1 on TCP 8080 only, for the tests of tcx links; nil on a kernel
    /// before 6.6, having checked that `loader init --attach <attachment>` is refused there in words.
    static func forLinks(pods: Int, refusing attachment: String) throws -> LoaderCluster? {
        let bench = try LoaderCluster(pods: pods)
        guard TCAttachments.tcxAvailable else {
            let refused = try NetfenceBinary.run(["loader", "init", "--attach", attachment, "--bpffs-root", bench.root.path])
            #expect(refused.status == 1 && refused.standardError.contains("this kernel has no tcx"), "\(refused.standardError)")
            return nil
        }
        try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"],
                                                               ingress: rule("\(bench.ip(1))/32", ports: [("TCP", 8080, nil)])))
        return bench
    }
}
