import BPFKit
import DatapathModel
import Foundation
import HostKit
import NodeNetwork
import PolicyInput
import Testing
import TestSupport

/// Runs several netfence commands at the same moment; returns each result in order.
func runConcurrently(_ invocations: [[String]]) throws -> [CommandResult] {
    let results = ResultBox(count: invocations.count)
    DispatchQueue.concurrentPerform(iterations: invocations.count) { index in
        results.set(index, Result { try NetfenceBinary.run(invocations[index]) })
    }
    return try results.values.map { try $0.get() }
}

private final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [Result<CommandResult, Error>?]
    init(count: Int) { results = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ result: Result<CommandResult, Error>) { lock.withLock { results[index] = result } }
    var values: [Result<CommandResult, Error>] { lock.withLock { results.map { $0! } } }
}

/// Writes `text` to a fresh temporary file for `-f`; removed by the caller.
func temporaryPolicyFile(_ text: String) throws -> URL {
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("nf-\(UniqueNames.make("p")).yaml")
    try text.write(to: file, atomically: true, encoding: .utf8)
    return file
}

/// Issue 13: one writer at a time per pin root, reset removes only what netfence
/// made, and the pin root is checked before anything runs.
@Suite(.serialized) struct LoaderTrustTests {
    @Test func concurrentAppliesAndDeletesOfObjectsSelectingOnePodAreAllStoredAndEnforced() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 3)
        let a = try temporaryPolicyFile(policyEndpoint("from-pod1", selecting: [0], isolation: ["Ingress"],
                                                       ingress: rule("\(bench.ip(1))/32", ports: [("TCP", 8080, nil)])))
        let b = try temporaryPolicyFile(policyEndpoint("from-pod2", selecting: [0], isolation: ["Ingress"],
                                                       ingress: rule("\(bench.ip(2))/32", ports: [("TCP", 8080, nil)])))
        defer { [a, b].forEach { try? FileManager.default.removeItem(at: $0) } }
        let root = ["--bpffs-root", bench.root.path]
        func objects() throws -> [String] {
            let status = try bench.cli(["loader", "status", "-o", "json"]).standardOutput
            let pods = try #require((try JSONSerialization.jsonObject(with: Data(status.utf8)) as? [String: Any])?["pods"] as? [[String: Any]])
            return ((pods.first { $0["pod"] as? String == "shop/pod0" }?["objects"] as? [String]) ?? []).sorted()
        }
        for round in 0..<20 {
            let applied = try runConcurrently([["loader", "apply", "-f", a.path] + root, ["loader", "apply", "-f", b.path] + root])
            #expect(applied.allSatisfy { $0.status == 0 }, "round \(round): \(applied.map(\.standardError))")
            #expect(try objects() == ["PolicyEndpoint shop/from-pod1", "PolicyEndpoint shop/from-pod2"], "round \(round): both stored")
            #expect(try bench.reaches(1, 0, .tcp) && bench.reaches(2, 0, .tcp), "round \(round): both enforced")
            #expect(try !bench.reaches(1, 0, .udp), "round \(round): and nothing more")

            let deleted = try runConcurrently([["loader", "delete", "-f", a.path] + root, ["loader", "delete", "-f", b.path] + root])
            #expect(deleted.allSatisfy { $0.status == 0 }, "round \(round): \(deleted.map(\.standardError))")
            #expect(try objects().isEmpty, "round \(round): both deleted")
            #expect(try bench.reaches(1, 0, .udp), "round \(round): pod0 is open again")
        }
    }

    @Test func aSecondWriterWaitsBoundedAndALockOfADeadProcessIsReleased() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 1)
        let file = try temporaryPolicyFile(policyEndpoint("iso", selecting: [0], isolation: ["Ingress"]))
        defer { try? FileManager.default.removeItem(at: file) }

        // This process holds the lock: the apply gives up after its timeout, naming who holds it, and changes nothing.
        var held: FileLock? = try FileLock.acquire(directory: bench.root.path, mode: .exclusive, timeout: 1)
        let started = Date()
        let refused = try NetfenceBinary.run(["loader", "apply", "-f", file.path, "--wait-timeout", "0.3", "--bpffs-root", bench.root.path])
        let waited = Date().timeIntervalSince(started)
        #expect(refused.status == 1)
        #expect(refused.standardError.contains("pid \(getpid())") && refused.standardError.contains("--wait-timeout"), "\(refused.standardError)")
        #expect(refused.standardError.split(separator: "\n").count == 1)
        #expect(waited >= 0.3 && waited < 2, "waited \(waited) s")
        held = nil
        #expect(!(try bench.cli(["loader", "status"]).standardOutput.contains("PolicyEndpoint")), "nothing was applied")

        // A holder killed with SIGKILL: the kernel drops its lock, the next writer goes on at once.
        // The shell takes the lock on descriptor 9 and becomes sleep, the lock's only holder.
        let holder = try ChildProcess.start("/bin/sh", ["-c", "exec 9<\"$0\" && flock --exclusive 9 && exec sleep 30", bench.root.path])
        usleep(200_000)
        let blocked = try NetfenceBinary.run(["loader", "apply", "-f", file.path, "--wait-timeout", "0.2", "--bpffs-root", bench.root.path])
        #expect(blocked.status == 1, "the live holder blocks writers")
        holder.stop(signal: SIGKILL)
        let after = Date()
        try bench.cli(["loader", "apply", "-f", file.path, "--wait-timeout", "5"])
        #expect(Date().timeIntervalSince(after) < 2, "no wait for a dead holder")
        withExtendedLifetime(held) {}
    }

    @Test func resetRemovesOnlyWhatNetfenceCreated() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 1)
        let sibling = "\(BPFFilesystem.defaultMountPoint)/netfence-test-\(UniqueNames.make("s"))"
        try FileManager.default.createDirectory(atPath: sibling, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: sibling) }
        let foreignMap = try BPFMap(type: .hash, name: "foreign", keySize: 4, valueSize: 4, maxEntries: 4)
        try foreignMap.pin(at: "\(sibling)/foreign")
        try foreignMap.pin(at: "\(bench.root.path)/maps/foreign")
        try FileManager.default.createDirectory(atPath: "\(bench.root.path)/other", withIntermediateDirectories: true)
        try foreignMap.pin(at: "\(bench.root.path)/other/theirs")

        // A folder netfence never initialized is refused, with nothing removed.
        let refused = try NetfenceBinary.run(["loader", "reset", "--bpffs-root", sibling])
        #expect(refused.status == 1 && refused.standardError.contains("not a netfence pin root"), "\(refused.standardError)")
        #expect(FileManager.default.fileExists(atPath: "\(sibling)/foreign"))

        // A symlink to a netfence root is not followed.
        let link = "\(BPFFilesystem.defaultMountPoint)/netfence-test-\(UniqueNames.make("l"))"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: bench.root.path)
        defer { unlink(link) }
        let throughLink = try NetfenceBinary.run(["loader", "reset", "--bpffs-root", link])
        #expect(throughLink.status == 1 && throughLink.standardError.contains("symlink"), "\(throughLink.standardError)")
        #expect(FileManager.default.fileExists(atPath: "\(bench.root.path)/maps/conntrack"))

        let reset = try bench.cli(["loader", "reset"]).standardOutput
        #expect(reset.contains("Kept what netfence did not create"), "\(reset)")
        #expect(FileManager.default.fileExists(atPath: "\(sibling)/foreign"), "the sibling's pin survives")
        #expect(FileManager.default.fileExists(atPath: "\(bench.root.path)/maps/foreign"), "a foreign pin inside the root survives")
        #expect(FileManager.default.fileExists(atPath: "\(bench.root.path)/other/theirs"))
        #expect(!FileManager.default.fileExists(atPath: "\(bench.root.path)/maps/conntrack"))
        #expect(!FileManager.default.fileExists(atPath: "\(bench.root.path)/state"), "netfence's own folder is gone")
        #expect(TCAttachments.scan([bench.cluster.node]).isEmpty, "every filter removed")
        let again = try NetfenceBinary.run(["loader", "reset", "--bpffs-root", bench.root.path])
        #expect(again.status == 1 && again.standardError.contains("not a netfence pin root"), "the rest is not netfence's: \(again.standardError)")
    }

    @Test func aBadPinRootIsRefusedAtOnceAndCreatesNothing() throws {
        guard Privileges.require() else { return }
        let start = Date()
        for root in ["", "relative/root", "/sys/fs/bpf/netfence-test-x/zzz/..", "/"] {
            let result = try NetfenceBinary.run(["loader", "init", "--bpffs-root", root])
            #expect(result.status == 64 && result.standardError.hasPrefix("Error: "), "\(root): \(result.standardError)")
        }
        let empty = try NetfenceBinary.run(["loader", "status"], environment: ["NETFENCE_BPFFS_ROOT": ""])
        #expect(empty.status == 64 && empty.standardError.contains("NETFENCE_BPFFS_ROOT"), "\(empty.standardError)")
        #expect(Date().timeIntervalSince(start) < 2, "refused within a moment")
        #expect(!FileManager.default.fileExists(atPath: "/sys/fs/bpf/netfence-test-x"), "no stray folder")

        let offBPFFS = "/tmp/netfence-test-\(UniqueNames.make("t"))/root"
        let refused = try NetfenceBinary.run(["loader", "init", "--bpffs-root", offBPFFS])
        #expect(refused.status == 1 && refused.standardError.contains("not on a mounted bpffs"), "\(refused.standardError)")
        #expect(!FileManager.default.fileExists(atPath: offBPFFS))

        // `.` and repeated slashes are normalized, not refused.
        let root = try TestPinRoot()
        let spelled = root.path.replacingOccurrences(of: "/netfence-test", with: "/./netfence-test") + "//"
        let listed = try NetfenceBinary.run(["ebpf", "maps", "--bpffs-root", spelled])
        #expect(listed.status == 0 && listed.standardOutput.contains(root.path), "\(listed.standardOutput)\(listed.standardError)")
    }

    @Test func aStrayNonBPFEntryDoesNotBreakListings() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 1)
        try FileManager.default.createSymbolicLink(atPath: "\(bench.root.path)/stray", withDestinationPath: "/etc/passwd")
        try FileManager.default.createDirectory(atPath: "\(bench.root.path)/empty-folder", withIntermediateDirectories: true)
        let maps = try bench.cli(["ebpf", "maps"])
        #expect(maps.standardOutput.contains("conntrack"))
        let programs = try bench.cli(["ebpf", "progs"])
        #expect(programs.standardOutput.contains("nf_to_pod"))
    }

    @Test func anAdminDenyOfIPv6AnyLeavesIPv4AloneAndMappedOrCrossFamilyInputIsRefused() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        try bench.cli(["loader", "apply"], input: clusterPolicy("no-v6-out", tier: "Admin", priority: 10, selecting: [0],
                                                              egress: rule("::/0", action: "Deny")))
        #expect(try bench.reaches(0, 1, .tcp), "IPv4 TCP connects under an Admin Deny of ::/0")
        #expect(try !bench.reaches(0, 1, .tcp, ipv6: true), "IPv6 TCP does not")
        try bench.cli(["loader", "apply"], input: policyEndpoint("v6-only-in", selecting: [1], isolation: ["Ingress"], ingress: rule("::/1")))
        #expect(try !bench.reaches(0, 1, .udp), "an ingress allow of ::/1 lets no IPv4 in")

        for (cidr, except, message) in [("::ffff:198.18.0.0/112", [String](), "IPv4-mapped IPv6 prefix"),
                                        ("::/0", ["198.18.0.0/16"], "198.18.0.0/16 is IPv4 and ::/0 is not")] {
            let file = try temporaryPolicyFile(policyEndpoint("mapped", selecting: [0], isolation: ["Ingress"], ingress: rule(cidr, except: except)))
            defer { try? FileManager.default.removeItem(at: file) }
            let refused = try NetfenceBinary.run(["loader", "apply", "-f", file.path, "--bpffs-root", bench.root.path])
            #expect(refused.status == 1 && refused.standardError.contains(message), "\(refused.standardError)")
        }
        #expect(!(try bench.cli(["loader", "status"]).standardOutput.contains("shop/mapped")), "nothing applied")
    }

    @Test func aPinnedPoliciesMapOfAnOlderTrieLayoutIsRefusedThenMigratedWithEveryPodsPolicy() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        try bench.cli(["loader", "apply"], input: policyEndpoint("tcp-from-1", selecting: [0], isolation: ["Ingress"],
                                                               ingress: rule("\(bench.ip(1))/32", ports: [("TCP", 8080, nil)])))
        #expect(try bench.reaches(1, 0, .tcp) && !bench.reaches(1, 0, .udp))
        // The policies map as a netfence with 20-byte trie keys pinned it, holding one trie.
        let maps = bench.root.path + "/maps"
        let oldTrie = "\(maps)/old_trie", oldPolicies = "\(maps)/old_policies"
        for command in [["map", "create", oldTrie, "type", "lpm_trie", "key", "20", "value", "520", "entries", "16", "name", "old", "flags", "1"],
                        ["map", "create", oldPolicies, "type", "array_of_maps", "inner_map", "pinned", oldTrie, "key", "4", "value", "4",
                         "entries", "16384", "name", "policies"],
                        ["map", "update", "pinned", oldPolicies, "key", "0", "0", "0", "0", "value", "pinned", oldTrie]] {
            let result = try ChildProcess.run("/usr/sbin/bpftool", command)
            try #require(result.status == 0, "bpftool \(command.joined(separator: " ")): \(result.output)")
        }
        unlink(oldTrie)
        #expect(rename(oldPolicies, "\(maps)/policies") == 0)

        let refused = try NetfenceBinary.run(["loader", "init", "--bpffs-root", bench.root.path])
        #expect(refused.status == 1 && refused.standardError.contains("trie key size 24 (pinned: 20)")
                && refused.standardError.contains("--migrate"), "\(refused.standardError)")
        try bench.cli(["loader", "init", "--migrate"])
        #expect(try bench.reaches(1, 0, .tcp) && !bench.reaches(1, 0, .udp), "pod0's policy came along into the new map")
        #expect(try bench.reaches(0, 1, .tcp), "pod1 still open")
    }

    /// What a kill between storing the objects and swapping the pods leaves: a new
    /// version stored beside the old one, the pod still on the old policy.
    func storeWithoutSwap(_ text: String, index: UInt32, in bench: LoaderCluster) throws {
        let object = try #require(try PolicyDocumentParser.parse(text).objects.first)
        let data = PolicyObjectCodec.encode(object)
        let chunks = try #require(try BPFFilesystem.pinnedMap(at: bench.root.path + "/state/policy_chunks"))
        let manifests = try #require(try BPFFilesystem.pinnedMap(at: bench.root.path + "/state/policy_manifests"))
        for (chunk, value) in ObjectStoreCodec.chunks(data).enumerated() {
            try chunks.update(key: ObjectStoreCodec.chunkKey(object: index, chunk: chunk), value: value)
        }
        try manifests.update(key: withUnsafeBytes(of: index) { Array($0) },
                             value: ObjectStoreCodec.manifest(length: data.count, chunks: ObjectStoreCodec.chunks(data).count,
                                                              appliedNanoseconds: HostClock.realtime.nanoseconds))
    }

    @Test func aCrashBetweenStoreAndSwapIsDriftAndTheNextChangeRollsForward() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 3)
        let tcpOnly = policyEndpoint("web", selecting: [0], isolation: ["Ingress"], ingress: rule("\(bench.ip(1))/32", ports: [("TCP", 8080, nil)]))
        try bench.cli(["loader", "apply"], input: tcpOnly)
        let consistent = try NetfenceBinary.run(["loader", "status", "--check", "--bpffs-root", bench.root.path])
        #expect(consistent.status == 0 && consistent.standardOutput.contains("No drift."))

        try storeWithoutSwap(tcpOnly.replacingOccurrences(of: "- protocol: TCP", with: "- protocol: UDP"), index: 500, in: bench)
        #expect(try bench.reaches(1, 0, .tcp) && !bench.reaches(1, 0, .udp), "the pod still enforces the old version")
        let drifted = try NetfenceBinary.run(["loader", "status", "--check", "-o", "json", "--bpffs-root", bench.root.path])
        #expect(drifted.status == 1, "--check fails on drift")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(drifted.standardOutput.utf8)) as? [String: Any])
        #expect(json["consistent"] as? Bool == false)
        let drift = (json["drift"] as? [String]) ?? []
        #expect(drift.contains { $0.hasPrefix("shop/pod0: ingress trie:") }, "\(drift)")
        let table = try NetfenceBinary.run(["loader", "status", "--bpffs-root", bench.root.path]).standardOutput
        #expect(!table.contains("No drift.") && table.contains("shop/pod0: ingress trie"), "\(table)")

        let reconciled = try bench.cli(["loader", "reconcile"]).standardOutput
        #expect(reconciled.contains("Rolled shop/pod0 forward") && reconciled.contains("Dropped 1 superseded"), "\(reconciled)")
        #expect(try bench.reaches(1, 0, .udp) && !bench.reaches(1, 0, .tcp), "rolled forward to the stored version")
        #expect(try bench.cli(["loader", "status", "--check"]).standardOutput.contains("No drift."))
        #expect(try bench.cli(["loader", "reconcile"]).standardOutput.contains("Nothing to reconcile"))
    }

    @Test func anInterruptedChangeIsReportedAndRolledForwardByTheNextOne() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        let isolate = policyEndpoint("iso", selecting: [0], isolation: ["Ingress"])
        try storeWithoutSwap(isolate, index: 700, in: bench)
        // A killed apply left its marker: pid 1 began it.
        let pending = try #require(try BPFFilesystem.pinnedMap(at: bench.root.path + "/state/pending_change"))
        try pending.update(key: [0, 0, 0, 0], value: PendingChange(operation: .apply, processID: 1, startedNanoseconds: 1).encode())
        let status = try NetfenceBinary.run(["loader", "status", "--check", "--bpffs-root", bench.root.path])
        #expect(status.status == 1 && status.standardOutput.contains("a 'apply' by pid 1 did not finish"), "\(status.standardOutput)")
        #expect(try bench.reaches(1, 0, .tcp))
        // Any change command rolls forward first: here, a detach of another pod.
        try bench.cli(["loader", "detach", "--pod", "shop/pod1"])
        #expect(try !bench.reaches(1, 0, .tcp), "pod0 now enforces the stored isolation")
        #expect(try bench.cli(["loader", "status", "--check"]).standardOutput.contains("No drift."))
    }
}
