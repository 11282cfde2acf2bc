import BPFKit
import Foundation
import Testing
import TestSupport

@Suite(.serialized) struct LoaderCommandTests {
    func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test func initIsIdempotentAndKeepsItsMaps() throws {
        guard Privileges.require() else { return }
        let root = try TestPinRoot()
        let first = try NetfenceBinary.run(["loader", "init", "-o", "json", "--bpffs-root", root.path])
        #expect(first.status == 0, "\(first.standardError)")
        let created = try json(first.standardOutput)
        #expect((created["created"] as? [String])?.contains("conntrack") == true)
        #expect((created["reused"] as? [String]) == [])

        let second = try json(try NetfenceBinary.run(["loader", "init", "-o", "json", "--bpffs-root", root.path]).standardOutput)
        #expect((second["reused"] as? [String])?.count == (created["created"] as? [String])?.count)
        #expect((second["created"] as? [String]) == [])
        let ids = try #require(second["programIDs"] as? [String: Int])
        let pinned = try #require(try BPFFilesystem.pinnedProgram(at: root.path + "/programs/nf_to_pod"))
        #expect(ids["nf_to_pod"] == Int(try pinned.info().id))

        let status = try json(try NetfenceBinary.run(["loader", "status", "-o", "json", "--bpffs-root", root.path]).standardOutput)
        #expect((status["programIDs"] as? [String: Int]) == ids)
        let maps = try #require(status["maps"] as? [[String: Any]])
        #expect(maps.map { $0["name"] as? String } == ["pods", "conntrack", "fragments", "domain_grants"])
        #expect(maps[1]["maxEntries"] as? Int == 524_288 && maps[1]["entries"] as? Int == 0)
        #expect((status["pods"] as? [Any])?.isEmpty == true)
    }

    @Test func anIncompatiblePinnedMapIsRefusedThenMigrated() throws {
        guard Privileges.require() else { return }
        let root = try TestPinRoot()
        try FileManager.default.createDirectory(atPath: root.path + "/maps", withIntermediateDirectories: true)
        let stale = try BPFMap(type: .hash, name: "pods", keySize: 4, valueSize: 8, maxEntries: 4096)
        try stale.pin(at: root.path + "/maps/pods")
        let refused = try NetfenceBinary.run(["loader", "init", "--bpffs-root", root.path])
        #expect(refused.status == 1)
        #expect(refused.standardError == "error: the pinned map \(root.path)/maps/pods does not match this netfence: "
            + "value size 16 (pinned: 8); rerun with --migrate to replace it (its entries are lost)\n")
        #expect(!FileManager.default.fileExists(atPath: root.path + "/programs/nf_to_pod"), "a refused init pins nothing")

        let migrated = try NetfenceBinary.run(["loader", "init", "--migrate", "--bpffs-root", root.path])
        #expect(migrated.status == 0)
        #expect(migrated.standardOutput.contains("Replaced incompatible maps: pods"))
    }

    @Test func statusBeforeInitSaysWhatToRun() throws {
        guard Privileges.require() else { return }
        let root = try TestPinRoot()
        let result = try NetfenceBinary.run(["loader", "status", "--bpffs-root", root.path])
        #expect(result.status == 1)
        #expect(result.standardError == "error: netfence is not loaded under \(root.path); run 'netfence loader init' first\n")
    }

    @Test func initMountsBPFFilesystemWhenAbsent() throws {
        guard Privileges.require() else { return }
        // A private mount namespace without bpffs at /sys/fs/bpf; the host's mounts are untouched.
        let result = try NetfenceBinary.runWithoutBPFFilesystem(["loader", "init"])
        #expect(result.status == 0, "\(result.standardError)")
        #expect(result.standardOutput.hasPrefix("Loaded the datapath under /sys/fs/bpf/netfence: nf_to_pod id "))
        let created = result.standardOutput.split(separator: "\n").first { $0.hasPrefix("Created maps: ") }
        let names = Set(created?.dropFirst("Created maps: ".count).split(separator: ", ").map(String.init) ?? [])
        #expect(names.isSuperset(of: ["conntrack", "pods", "policies", "coarse_clock"]), "a fresh bpffs: every map is new")
    }
}
