import BPFKit
import Datapath
import DatapathModel
import Foundation
import Glibc
import Loader
import LoaderService
import Testing
import TestSupport

/// `loader serve` keeps spare tries: a change fills one already in `policies` (no grace
/// period on the caller's path) and the keeper turns what changes let go into spares.
/// Real pods and packets; the kernel's maps are the witness.
@Suite(.serialized) struct SpareTriesTests {
    /// The spares `policy_digests` lists: index → map id.
    static func spares(_ bench: LoaderCluster) throws -> [Int: Int] {
        var spares: [Int: Int] = [:]
        for row in try jsonRows(bench.cli(["ebpf", "maps", "dump", "policy_digests", "-o", "json"])) where row["digest"] as? String == "spare" {
            if let index = row["index"] as? Int, let id = row["mapID"] as? Int { spares[index] = id }
        }
        return spares
    }

    /// The tries in `policies`: index → map id.
    static func trieIDs(_ bench: LoaderCluster) throws -> [Int: Int] {
        Dictionary(uniqueKeysWithValues: try jsonRows(bench.cli(["ebpf", "maps", "dump", "policies", "-o", "json"])).compactMap { row in
            (row["index"] as? Int).flatMap { index in (row["mapID"] as? Int).map { (index, $0) } }
        })
    }

    /// Waits (up to 10 s) until `done` holds of the spares; returns them.
    @discardableResult
    static func waitForSpares(_ bench: LoaderCluster, _ what: String, sourceLocation: SourceLocation = #_sourceLocation,
                              until done: ([Int: Int]) -> Bool) throws -> [Int: Int] {
        var spares = try Self.spares(bench)
        for _ in 0..<200 where !done(spares) {
            usleep(50_000)
            spares = try Self.spares(bench)
        }
        #expect(done(spares), "\(what): \(spares)", sourceLocation: sourceLocation)
        return spares
    }

    static func apply(_ client: LoaderClient, _ object: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let response = try client.run(LoaderRequest(args: ["loader", "apply", "-f", "-"], input: object))
        #expect(response.exitCode == 0, "\(response)", sourceLocation: sourceLocation)
    }

    @Test func aServedChangeFillsASpareAndTheKeeperMakesSparesOfWhatChangesLetGo() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        let server = try LoaderServeTests.Server(root: bench.root.path)
        let client = try server.client()
        let ready = try Self.waitForSpares(bench, "the keeper's first round") { $0.count == TrieKeeper.defaultSpares }
        #expect(try Self.trieIDs(bench) == ready, "spares are tries in policies, and no other trie is there")
        let listed = try jsonRows(bench.cli(["ebpf", "maps", "dump", "policies", "-o", "json"]))
        #expect(listed.count == ready.count && listed.allSatisfy { $0["role"] as? String == "spare" && $0["pods"] as? Int == 0 }, "\(listed)")
        // The same map dumped by id against another root: that root's roles (a cooling trie at an index where
        // this map has a spare) are not this map's.
        let other = try TestPinRoot()
        try runNetfence(["loader", "init"], root: other)
        defer { _ = try? NetfenceBinary.run(["loader", "reset", "--bpffs-root", other.path]) }
        let index = try #require(ready.keys.max().flatMap { TrieIndex(rawValue: UInt16($0)) })
        let foreign = try Datapath.makeEmptyTrie()
        try #require(try BPFFilesystem.pinnedMap(at: other.path + "/maps/policies")).setInner(key: index.key, to: foreign)
        try #require(try BPFFilesystem.pinnedMap(at: other.path + "/maps/policy_digests"))
            .update(key: index.key, value: TrieDigestRecord(mapID: try foreign.info().id, role: .cooling).encode())
        let outer = try #require(try BPFFilesystem.pinnedMap(at: bench.root.path + "/maps/policies")).info().id
        let elsewhere = try jsonRows(runNetfence(["ebpf", "maps", "dump", "\(outer)", "-o", "json"], root: other))
        #expect(elsewhere.count == ready.count && elsewhere.allSatisfy { $0["role"] is NSNull }, "\(elsewhere)")
        let scope = everyEdge(pods: 2)

        // pod0's policy fills a spare where it is: the same trie, now holding the policy.
        try Self.apply(client, policyEndpoint("web", selecting: [0], isolation: ["Ingress"], ingress: rule("\(bench.ip(1))/32", ports: [("TCP", 8080, nil)])))
        let first = try #require(try SharedTriesTests.tries(bench)["shop/pod0"]?.ingress)
        let filled = try Self.trieIDs(bench)[first]
        #expect(ready[first] != nil && filled == ready[first], "pod0 reads a former spare, filled in place")
        try bench.expectMatrix(allowed: scope.subtracting(edges("1>0 *")).union(edges("1>0 tcp")), scope: scope, "TCP from pod1")

        // A change fills another spare; the keeper empties the trie it let go into a spare again.
        let before = try Self.waitForSpares(bench, "the keeper's round after the first change") { $0.count == TrieKeeper.defaultSpares }
        try Self.apply(client, policyEndpoint("web", selecting: [0], isolation: ["Ingress"], ingress: rule("\(bench.ip(1))/32", ports: [("UDP", 8080, nil)])))
        let second = try #require(try SharedTriesTests.tries(bench)["shop/pod0"]?.ingress)
        #expect(second != first && before[second] != nil)
        try bench.expectMatrix(allowed: scope.subtracting(edges("1>0 *")).union(edges("1>0 udp")), scope: scope, "UDP from pod1 only")
        let recycled = try Self.waitForSpares(bench, "the let-go trie recycled") { $0[first] != nil && $0.count == TrieKeeper.defaultSpares }
        #expect(recycled[first] == ready[first], "recycled in place: the same trie")
        #expect(try BPFMap(id: UInt32(try #require(recycled[first]))).isEmpty, "a spare holds nothing")

        // Detached, its trie is let go too; with the spares complete the keeper deletes it. Status and
        // reconcile find nothing wrong and keep the spares.
        #expect(try client.run(LoaderRequest(args: ["loader", "detach", "--pod", "shop/pod0"])).exitCode == 0)
        var left = try Self.trieIDs(bench)
        for _ in 0..<200 where left[second] != nil {
            usleep(50_000)
            left = try Self.trieIDs(bench)
        }
        #expect(left[second] == nil, "pod0's last trie deleted: \(left)")
        #expect(try bench.cli(["loader", "status", "--check"]).status == 0)
        #expect(try bench.cli(["loader", "reconcile", "-o", "json"]).standardOutput.contains("\"orphanedTries\" : 0"))
        #expect(try Self.spares(bench).count == TrieKeeper.defaultSpares)
        #expect(try Self.trieIDs(bench).count == TrieKeeper.defaultSpares, "nothing else left in policies")
    }

    /// A command (its own process) fills spares too. What it lets go it leaves to a keeper that runs
    /// (a server on the root); when none does, it marks it cooling (`TrieRecycling.onNextWait`).
    @Test func commandsFillSparesAndLeaveWhatTheyLetGoToAKeeperOrTheirNextWait() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        func web(_ ports: [(String, Int, Int?)]) -> String {
            policyEndpoint("web", selecting: [0], isolation: ["Ingress"], ingress: rule("\(bench.ip(1))/32", ports: ports))
        }
        var second = 0
        do {
            let server = try LoaderServeTests.Server(root: bench.root.path)
            let ready = try Self.waitForSpares(bench, "the keeper's first round") { $0.count == TrieKeeper.defaultSpares }
            try bench.cli(["loader", "apply"], input: web([]))
            let first = try #require(try SharedTriesTests.tries(bench)["shop/pod0"]?.ingress)
            #expect(ready[first] != nil, "a command fills a spare")
            try Self.waitForSpares(bench, "the keeper refilled") { $0.count == TrieKeeper.defaultSpares }
            try bench.cli(["loader", "apply"], input: web([("UDP", 8080, nil)]))
            second = try #require(try SharedTriesTests.tries(bench)["shop/pod0"]?.ingress)
            let recycled = try Self.waitForSpares(bench, "the trie the command let go, recycled by the server's keeper") { $0[first] != nil }
            #expect(recycled[first] == ready[first], "the same trie, emptied")
            withExtendedLifetime(server) {}
        }
        let left = try Self.spares(bench)
        #expect(left.count == TrieKeeper.defaultSpares, "spares outlive their server")
        try bench.cli(["loader", "apply"], input: web([("TCP", 8080, nil)]))
        let third = try #require(try SharedTriesTests.tries(bench)["shop/pod0"]?.ingress)
        #expect(left[third] != nil && third != second)
        let ids = try Self.trieIDs(bench)
        #expect(try SharedTriesTests.roles(bench)[second] == "cooling", "with no keeper, the trie the command let go waits to be recycled")
        #expect(Set(ids.keys) == Set(left.keys).union([second]), "the spares left (one of them filled) and the cooling trie")
        let scope = everyEdge(pods: 2)
        try bench.expectMatrix(allowed: scope.subtracting(edges("1>0 *")).union(edges("1>0 tcp")), scope: scope, "TCP from pod1")
    }

    /// With no keeper, commands recycle on their next wait: a trie let go is marked cooling (its
    /// entries kept: a packet may read it through an old record until a grace period has passed);
    /// the next change that inserts a trie waits a grace period there, then empties it and makes it
    /// a spare, which a later change fills in place. At most `Datapath.coolingKept` tries wait so.
    @Test func withoutAKeeperCommandsRecycleOnTheirNextWait() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        func web(_ port: Int) -> String {
            policyEndpoint("web", selecting: [0], isolation: ["Ingress"], ingress: rule("\(bench.ip(1))/32", ports: [("TCP", port, nil)]))
        }
        func trie() throws -> Int { try #require(try SharedTriesTests.tries(bench)["shop/pod0"]?.ingress) }
        try bench.cli(["loader", "apply"], input: web(8001))
        let a = try trie(), aID = try #require(try Self.trieIDs(bench)[a])
        try bench.cli(["loader", "apply"], input: web(8002))  // no spare: a trie inserted, a let go
        let b = try trie()
        #expect(try SharedTriesTests.roles(bench) == [a: "cooling"])
        #expect(try !BPFMap(id: UInt32(aID)).isEmpty, "a cooling trie keeps its entries until a grace period is proven")
        try bench.cli(["loader", "apply"], input: web(8003))  // no spare: inserted, and that wait recycles a
        let c = try trie()
        #expect(try SharedTriesTests.roles(bench) == [a: "spare", b: "cooling"])
        #expect(try Self.trieIDs(bench)[a] == aID && BPFMap(id: UInt32(aID)).isEmpty, "the same trie, emptied")
        try bench.cli(["loader", "apply"], input: web(Int(LoaderCluster.port)))  // the spare filled in place
        #expect(try trie() == a && Self.trieIDs(bench)[a] == aID)
        #expect(try SharedTriesTests.roles(bench) == [b: "cooling", c: "cooling"])
        let scope = everyEdge(pods: 2)
        try bench.expectMatrix(allowed: scope.subtracting(edges("1>0 *")).union(edges("1>0 tcp")), scope: scope, "TCP from pod1")

        // A burst of 60 changes: a trie is inserted (a map id policies did not hold) only when no spare
        // is left, and each insert recycles what is cooling, one more each time (2, 3, …, 7). Once 8
        // cool, the next change waits the grace period a delete would and recycles them instead: 7
        // inserts and 3 such waits — against 60 inserts and 60 deletions, one grace period each, before
        // spares, and 9 inserts and 3 deletions had it deleted what it could not keep cooling.
        var present = Set(try Self.trieIDs(bench).values), inserts = 0, deletions = 0, mostCooling = 0
        for port in 9000..<9060 {
            try bench.cli(["loader", "apply"], input: web(port))
            let ids = try Self.trieIDs(bench)
            if let id = ids[try trie()], !present.contains(id) { inserts += 1 }
            deletions += present.subtracting(ids.values).count
            present = Set(ids.values)
            mostCooling = max(mostCooling, try SharedTriesTests.roles(bench).values.filter { $0 == "cooling" }.count)
        }
        #expect(inserts == 7, "tries inserted in the burst")
        #expect(deletions == 0, "what cannot cool is recycled, not deleted")
        #expect(mostCooling == Datapath.coolingKept, "cooling tries hold entries: never more than \(Datapath.coolingKept)")
        let roles = try SharedTriesTests.roles(bench)
        #expect(roles.count <= Datapath.sparesKept, "\(roles)")
        #expect(try SharedTriesTests.policies(bench).count == 1, "pod0's trie, and nothing without a role")
        for (_, id) in try Self.spares(bench) { #expect(try BPFMap(id: UInt32(id)).isEmpty, "spare \(id) holds nothing") }
        #expect(try bench.cli(["loader", "status", "--check"]).status == 0)

        // A server started now takes the commands' cooling tries over: spares complete, none cooling.
        do {
            let server = try LoaderServeTests.Server(root: bench.root.path)
            try Self.waitForSpares(bench, "the keeper made spares of what commands left cooling") { $0.count == TrieKeeper.defaultSpares }
            #expect(try !SharedTriesTests.roles(bench).values.contains("cooling"))
            withExtendedLifetime(server) {}
        }
        for (_, id) in try Self.spares(bench) { #expect(try BPFMap(id: UInt32(id)).isEmpty, "spare \(id) holds nothing") }
        try bench.expectMatrix(allowed: scope.subtracting(edges("1>0 *")), scope: scope, "port 9059 from pod1: nothing it serves")
        try bench.cli(["loader", "detach", "--pod", "shop/pod0"])
        #expect(try SharedTriesTests.policies(bench).isEmpty)
    }

    /// A keeper killed mid-round leaves marks: reconcile settles them (an inserted arriving trie is a
    /// spare, a cooling trie is deleted, a mark without its trie dropped), and the next server keeps on.
    @Test func whatAKilledKeeperLeftMarkedIsSettled() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 1)
        let policies = try #require(try BPFFilesystem.pinnedMap(at: bench.root.path + "/maps/policies"))
        let digests = try #require(try BPFFilesystem.pinnedMap(at: bench.root.path + "/maps/policy_digests"))
        func mark(_ index: UInt16, _ id: UInt32, _ role: TrieRole) throws {
            try digests.update(key: TrieIndex(rawValue: index)!.key, value: TrieDigestRecord(mapID: id, role: role).encode())
        }
        let arrived = try Datapath.makeEmptyTrie(), cooling = try Datapath.makeEmptyTrie()
        try cooling.update(key: LPMKeyCodec.encode(try #require(IPPrefix.parse("198.19.0.0/16")).prefix),
                          value: RuleSetCodec.encode([PortRule(ruleID: 1, protocolNumber: IPProtocolNumber.any)]))
        try policies.setInner(key: TrieIndex(rawValue: 40)!.key, to: arrived)
        try mark(40, try arrived.info().id, .arriving)
        try mark(41, 4_000_000_000, .arriving)  // the round died before its batch
        try policies.setInner(key: TrieIndex(rawValue: 42)!.key, to: cooling)
        try mark(42, try cooling.info().id, .cooling)

        let reconciled = try bench.cli(["loader", "reconcile", "-o", "json"]).standardOutput
        #expect(reconciled.contains("\"orphanedTries\" : 1"), "the cooling trie goes: \(reconciled)")
        #expect(try Self.spares(bench) == [40: Int(try arrived.info().id)])
        #expect(try Self.trieIDs(bench) == [40: Int(try arrived.info().id)])

        let server = try LoaderServeTests.Server(root: bench.root.path)
        let spares = try Self.waitForSpares(bench, "a new server's round") { $0.count == TrieKeeper.defaultSpares }
        #expect(spares[40] == Int(try arrived.info().id), "the settled spare is one of the server's")
        withExtendedLifetime(server) {}
    }

    /// A trie marked spare that holds entries (a killed fill, a hand-made mark) is never filled: the
    /// change that meets it forgets the mark and builds elsewhere; reconcile deletes it.
    @Test func aSpareThatHoldsSomethingIsNeverFilled() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        let index = try #require(TrieIndex(rawValue: 30))
        let full = try Datapath.makeEmptyTrie()
        try full.update(key: LPMKeyCodec.encode(try #require(IPPrefix.parse("198.19.0.0/16")).prefix),
                        value: RuleSetCodec.encode([PortRule(ruleID: 1, protocolNumber: IPProtocolNumber.any)]))
        try #require(try BPFFilesystem.pinnedMap(at: bench.root.path + "/maps/policies")).setInner(key: index.key, to: full)
        try #require(try BPFFilesystem.pinnedMap(at: bench.root.path + "/maps/policy_digests"))
            .update(key: index.key, value: TrieDigestRecord(mapID: try full.info().id, role: .spare).encode())
        #expect(try Self.spares(bench) == [30: Int(try full.info().id)])

        try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"],
                                                                ingress: rule("\(bench.ip(1))/32", ports: [("TCP", 8080, nil)])))
        #expect(try SharedTriesTests.tries(bench)["shop/pod0"]?.ingress != 30, "not filled: it was not empty")
        #expect(try Self.spares(bench).isEmpty, "its mark is forgotten")
        let scope = everyEdge(pods: 2)
        try bench.expectMatrix(allowed: scope.subtracting(edges("1>0 *")).union(edges("1>0 tcp")), scope: scope, "TCP from pod1 only")
        #expect(try bench.cli(["loader", "reconcile", "-o", "json"]).standardOutput.contains("\"orphanedTries\" : 1"))
        #expect(try Self.trieIDs(bench)[30] == nil)
    }

    /// Servers killed (SIGKILL) at random moments while changes keep their keepers busy: reconcile
    /// settles what they left; every pod enforces its last policy and no mark or stray trie stays.
    @Test func serversKilledMidRoundLeaveNothingReconcileCannotSettle() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        func web(_ port: Int) -> String {
            policyEndpoint("web", selecting: [0], isolation: ["Ingress"], ingress: rule("\(bench.ip(1))/32", ports: [("TCP", port, nil)]))
        }
        var generator = SystemRandomNumberGenerator()
        for attempt in 0..<6 {
            let server = try LoaderServeTests.Server(root: bench.root.path)
            let client = try server.client()
            for step in 0..<4 { try Self.apply(client, web(9000 + attempt * 4 + step)) }  // each lets a trie go
            usleep(UInt32.random(in: 5_000...35_000, using: &generator))  // a round starts after a 10 ms pause, then waits 15-20 ms
            server.process.stop(signal: SIGKILL)
        }
        try bench.cli(["loader", "reconcile"])
        let roles = try jsonRows(bench.cli(["ebpf", "maps", "dump", "policy_digests", "-o", "json"])).compactMap { $0["digest"] as? String }
        #expect(!roles.contains("arriving") && !roles.contains("cooling"), "\(roles)")
        try bench.cli(["loader", "apply"], input: web(Int(LoaderCluster.port)))
        #expect(try bench.cli(["loader", "status", "--check"]).status == 0)
        let spares = try Self.spares(bench)
        for (_, id) in spares { #expect(try BPFMap(id: UInt32(id)).isEmpty, "spare \(id) holds nothing") }
        let named = Set(try SharedTriesTests.tries(bench).values.compactMap(\.ingress))
        let cooling = Set(try SharedTriesTests.roles(bench).filter { $0.value == "cooling" }.keys)
        #expect(cooling.count <= 1, "the apply let one trie go")
        #expect(Set(try Self.trieIDs(bench).keys) == named.union(spares.keys).union(cooling), "only named tries, spares and the trie let go")
        let scope = everyEdge(pods: 2)
        try bench.expectMatrix(allowed: scope.subtracting(edges("1>0 *")).union(edges("1>0 tcp")), scope: scope, "TCP from pod1")
    }

    /// Served changes and commands of their own processes at once, while the keeper works: every
    /// pod enforces its last policy, spares hold nothing, nothing is left over.
    @Test func servedChangesCommandsAndTheKeeperAtOnce() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 3)
        let server = try LoaderServeTests.Server(root: bench.root.path)
        try Self.waitForSpares(bench, "the keeper's first round") { $0.count == TrieKeeper.defaultSpares }
        let rounds = 12
        let objects = (0..<3).map { pod in
            (0..<rounds).map { round in
                policyEndpoint("p\(pod)", selecting: [pod], isolation: ["Ingress"],
                               ingress: rule("\(bench.ip((pod + 1) % 3))/32", ports: [(round % 2 == 0 ? "TCP" : "UDP", 8080, nil)]))
            }
        }
        let problems = NSLock(), done = DispatchGroup()
        nonisolated(unsafe) var failures: [String] = []
        for pod in 0..<2 {
            done.enter()
            Thread.detachNewThread {
                defer { done.leave() }
                do {
                    let client = try server.client()
                    for round in 0..<rounds {
                        let response = try client.run(LoaderRequest(args: ["loader", "apply", "-f", "-"], input: objects[pod][round]))
                        if response.exitCode != 0 { problems.withLock { failures.append(response.stderr) } }
                    }
                } catch {
                    problems.withLock { failures.append("\(error)") }
                }
            }
        }
        for round in 0..<rounds {
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("nf-\(UniqueNames.make("spare")).yaml").path
            try objects[2][round].write(toFile: file, atomically: true, encoding: .utf8)
            defer { unlink(file) }
            let result = try NetfenceBinary.run(["loader", "apply", "--bpffs-root", bench.root.path, "-f", file])
            if result.status != 0 { problems.withLock { failures.append(result.standardError) } }
        }
        done.wait()
        #expect(failures.isEmpty, "\(failures)")
        let spares = try Self.waitForSpares(bench, "the keeper caught up") { $0.count >= TrieKeeper.defaultSpares }
        for (_, id) in spares { #expect(try BPFMap(id: UInt32(id)).isEmpty, "spare \(id) holds nothing") }
        #expect(try bench.cli(["loader", "status", "--check"]).status == 0, "every pod enforces what is stored")
        let named = Set(try SharedTriesTests.tries(bench).values.compactMap(\.ingress))
        #expect(Set(try Self.trieIDs(bench).keys) == named.union(spares.keys), "only named tries and spares in policies")
        // The last round (odd) allows UDP from the next pod, and nothing else from it.
        let scope = everyEdge(pods: 3)
        try bench.expectMatrix(allowed: edges("1>0 udp", "2>1 udp", "0>2 udp"), scope: scope, "each pod's last policy")
        withExtendedLifetime(server) {}
    }
}
