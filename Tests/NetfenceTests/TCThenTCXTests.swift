import BPFKit
import DatapathModel
import Foundation
import Loader
import NodeNetwork
import Testing
import TestSupport

/// `loader init --attach tc-then-tcx`: pods attach through filters (a filter's price on the agent's
/// call), and `loader serve` moves those that stay onto tcx links (a link's price on every packet).
@Suite(.serialized) struct TCThenTCXTests {
    /// The hooks of the bench's pods' interfaces.
    static func hooks(_ bench: LoaderCluster, pods: [Int]? = nil) -> [ProgramAttachment] {
        let interfaces = Set((pods ?? Array(bench.cluster.pods.indices)).map { bench.cluster.pods[$0].hostInterface })
        return TCAttachments.scan([bench.cluster.node]).filter { interfaces.contains($0.interface) }
    }

    static func programIDs(_ bench: LoaderCluster) throws -> Set<UInt32> {
        Set(try ["nf_to_pod", "nf_from_pod"].map { try #require(try BPFFilesystem.pinnedProgram(at: "\(bench.root.path)/programs/\($0)")).info().id })
    }

    static func consistent(_ bench: LoaderCluster) throws -> Bool {
        try bench.cli(["loader", "status", "-o", "json"]).standardOutput.contains("\"consistent\" : true")
    }

    /// `loader status`'s word for how each hook of the pod's host veth carries the program.
    static func statusHooks(_ bench: LoaderCluster, pod: Int) throws -> [String: String]? {
        let status = try #require(try JSONSerialization.jsonObject(with: Data(try bench.cli(["loader", "status", "-o", "json"]).standardOutput.utf8))
            as? [String: Any])
        let pods = status["pods"] as? [[String: Any]] ?? []
        return pods.first { $0["pod"] as? String == "shop/pod\(pod)" }?["hostVethHooks"] as? [String: String]
    }

    /// Waits up to 20 s for `condition`.
    static func eventually(_ condition: () throws -> Bool) rethrows -> Bool {
        for _ in 0..<200 {
            if try condition() { return true }
            usleep(100_000)
        }
        return try condition()
    }

    /// A server moves the pods that stay onto links, each hook never without netfence's program; a pod
    /// attached while it serves attaches through filters and moves later; inits keep the links on the
    /// current programs; a detach takes its links; `--attach tc` puts every pod back on filters.
    @Test func aServerMovesPodsThatStayOntoLinksNeverUnenforced() throws {
        guard Privileges.require(), let bench = try LoaderCluster.forLinks(pods: 3, refusing: "tc-then-tcx") else { return }
        let links = bench.root.path + "/links"
        let probe = ContinuousProbe(bench, mustConnect: Array(edges("1>0 tcp")), mustNotConnect: Array(edges("2>0 tcp")))
        let initialized = try bench.cli(["loader", "init", "--attach", "tc-then-tcx"]).standardOutput
        #expect(initialized.contains("Pods attach through tc filters, moved onto tcx links by 'loader serve'"), "\(initialized)")
        #expect(Self.hooks(bench).count == 6 && Self.hooks(bench).allSatisfy { $0.kind == .tc }, "no server yet: filters")
        #expect(try bench.cli(["loader", "status", "-o", "json"]).standardOutput.contains("\"attachment\" : \"tc-then-tcx\""))

        let server = try LoaderServeTests.Server(root: bench.root.path, options: ["--tcx-after", "2"])
        #expect(try Self.eventually { Self.hooks(bench).count == 6 && Self.hooks(bench).allSatisfy { $0.kind == .tcx } },
                "the pods that stayed moved: \(Self.hooks(bench).map(\.summary))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: links).count == 6)
        #expect(try Self.consistent(bench) && Self.statusHooks(bench, pod: 0) == ["ingress": "tcx", "egress": "tcx"])

        // Attached while the server runs: a filter first (what the call costs), a link once it stayed.
        let client = try server.client()
        #expect(try client.run(.init(args: ["loader", "detach", "--pod", "shop/pod2"])).exitCode == 0)
        #expect(Self.hooks(bench, pods: [2]).isEmpty, "the detach took pod2's links off its hooks")
        let attached = try client.run(.init(args: ["loader", "attach", "--pod", "shop/pod2", "--iface", bench.cluster.pods[2].hostInterface,
                                                   "--netns", bench.cluster.node.name]))
        #expect(attached.exitCode == 0, "\(attached)")
        #expect(Self.hooks(bench, pods: [2]).count == 2 && Self.hooks(bench, pods: [2]).allSatisfy { $0.kind == .tc },
                "\(Self.hooks(bench, pods: [2]).map(\.summary))")
        #expect(try Self.consistent(bench), "filters on one pod, links on the others: both what the root asks")
        #expect(try Self.statusHooks(bench, pod: 2) == ["ingress": "tc", "egress": "tc"])
        #expect(try Self.eventually { Self.hooks(bench, pods: [2]).count == 2 && Self.hooks(bench, pods: [2]).allSatisfy { $0.kind == .tcx } })

        // New programs reach the links; the choice is kept.
        try bench.cli(["loader", "init"])
        let current = try Self.programIDs(bench)
        #expect(Self.hooks(bench).count == 6 && Self.hooks(bench).allSatisfy { $0.kind == .tcx && current.contains($0.programID) })
        #expect(try Self.consistent(bench))
        withExtendedLifetime(server) {}
        let (rounds, wrong) = probe.stop()
        #expect(rounds > 0 && wrong.isEmpty, "no moment without netfence's program: \(wrong.prefix(5))")
        #expect(try bench.reaches(1, 0, .tcp) && !bench.reaches(2, 0, .tcp))

        try bench.cli(["loader", "init", "--attach", "tc"])
        #expect(Self.hooks(bench).count == 6 && Self.hooks(bench).allSatisfy { $0.kind == .tc })
        #expect(!FileManager.default.fileExists(atPath: links), "no link pinned while pods attach through filters")
    }

    /// The mover makes links without the root's lock: what changes before it takes the lock decides. A pod
    /// detached meanwhile keeps no link; new programs loaded meanwhile are what the adopted links run; a kill
    /// between a link's pin and its filter's removal leaves a filter no packet reaches, which reconcile removes.
    @Test func aMoveRacingADetachOrAnInitLeavesEveryHookRight() throws {
        guard Privileges.require(), let bench = try LoaderCluster.forLinks(pods: 2, refusing: "tc-then-tcx") else { return }
        try bench.cli(["loader", "init", "--attach", "tc-then-tcx"])
        let root = bench.root.pinRoot
        let onFilters = try Loader(root: root).podsOnFilters()
        #expect(onFilters.count == 2)
        let (id0, pod0) = try #require(onFilters.first { $0.value.name == "pod0" })
        let (id1, pod1) = try #require(onFilters.first { $0.value.name == "pod1" })

        let orphaned = try Loader(root: root).makeLinks(podID: id1, for: pod1)
        #expect(orphaned.count == 2 && Set(Self.hooks(bench, pods: [1]).map(\.kind)) == [.tc, .tcx], "links made, ahead of the filters")
        try bench.cli(["loader", "detach", "--pod", "shop/pod1"])
        #expect(try !Loader.openForChanges(root: root).adoptLinks(orphaned, podID: id1, for: pod1), "the pod went: not adopted")
        #expect(Self.hooks(bench, pods: [1]).isEmpty, "its links detached: \(Self.hooks(bench, pods: [1]).map(\.summary))")
        #expect(try Loader(root: root).podsOnFilters().count == 1)

        let early = try Loader(root: root).makeLinks(podID: id0, for: pod0)
        try bench.cli(["loader", "init"])
        let current = try Self.programIDs(bench)
        #expect(!Self.hooks(bench, pods: [0]).filter { $0.kind == .tcx }.allSatisfy { current.contains($0.programID) }, "made with the old programs")
        #expect(try Loader.openForChanges(root: root).adoptLinks(early, podID: id0, for: pod0))
        #expect(Self.hooks(bench, pods: [0]).count == 2 && Self.hooks(bench, pods: [0]).allSatisfy { $0.kind == .tcx && current.contains($0.programID) },
                "\(Self.hooks(bench, pods: [0]).map(\.summary))")
        #expect(try Loader(root: root).podsOnFilters().isEmpty && Self.consistent(bench))
        #expect(try bench.reaches(1, 0, .tcp) && !bench.reaches(1, 0, .udp))

        let program = try #require(try BPFFilesystem.pinnedProgram(at: bench.root.path + "/programs/nf_from_pod"))
        try TCAttachments.attach(program, interface: bench.cluster.pods[0].hostInterface, direction: .ingress, in: bench.cluster.node,
                                 handle: Loader.filterHandle, priority: Loader.filterPriority)
        #expect(try Self.consistent(bench), "the link runs; the filter behind it never does")
        let reconciled = try bench.cli(["loader", "reconcile", "-o", "json"]).standardOutput
        #expect(reconciled.contains("shop/pod0"), "\(reconciled)")
        #expect(Self.hooks(bench, pods: [0]).count == 2 && Self.hooks(bench, pods: [0]).allSatisfy { $0.kind == .tcx })
    }
}
