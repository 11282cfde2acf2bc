import BPFKit
import Datapath
import DatapathModel
import Foundation
import Testing
import TestSupport

@Suite(.serialized) struct PinnedDatapathTests {
    @Test func reloadingReusesPinnedMapsAndTheirEntries() throws {
        guard Privileges.require() else { return }
        let root = try TestPinRoot()
        let (first, created, _) = try Datapath.load(pinningUnder: root.path, migrate: false)
        #expect(created.reused.isEmpty && created.migrated.isEmpty)
        #expect(Set(created.created) == Set(Datapath.mapLayouts.keys))
        try first.conntrack.update(key: [UInt8](repeating: 7, count: ABISizes.conntrackKey), value: [UInt8](repeating: 1, count: ABISizes.conntrackValue))
        let firstProgram = try first.program(for: .ingress).info().id

        let (second, reloaded, _) = try Datapath.load(pinningUnder: root.path, migrate: false, sameABI: true)
        #expect(Set(reloaded.reused) == Set(Datapath.mapLayouts.keys) && reloaded.created.isEmpty)
        #expect(try second.conntrack.countEntries() == 1, "conntrack survives a reload")
        #expect(try second.conntrack.info().id == first.conntrack.info().id)
        let pinnedProgram = try #require(try BPFFilesystem.pinnedProgram(at: Datapath.programPin(root.path, "nf_to_pod")))
        #expect(try pinnedProgram.info().id == second.program(for: .ingress).info().id)
        #expect(try second.program(for: .ingress).info().id != firstProgram, "programs are loaded anew")

        let opened = try Datapath.open(pinnedUnder: root.path)
        #expect(try opened.conntrack.countEntries() == 1)

        // An empty policies map pinned by another ABI version (or none known) is made anew.
        let (_, unknown, _) = try Datapath.load(pinningUnder: root.path, migrate: false, sameABI: false)
        #expect(unknown.created == ["policies"] && unknown.reused.count == Datapath.mapLayouts.count - 1)
    }

    @Test func anIncompatiblePinIsRefusedUnlessMigrated() throws {
        guard Privileges.require() else { return }
        let root = try TestPinRoot()
        try FileManager.default.createDirectory(atPath: root.path + "/maps", withIntermediateDirectories: true)
        let stale = try BPFMap(type: .hash, name: "conntrack", keySize: 40, valueSize: ABISizes.conntrackValue.uint32, maxEntries: 1024)
        try stale.pin(at: Datapath.mapPin(root.path, "conntrack"))
        let path = Datapath.mapPin(root.path, "conntrack")
        #expect(throws: IncompatiblePinError(path: path, differences: [
            "type lru_hash (pinned: hash)", "key size 44 (pinned: 40)", "max entries 524288 (pinned: 1024)",
        ])) { try Datapath.load(pinningUnder: root.path, migrate: false) }
        #expect(try BPFFilesystem.pinnedMap(at: path)?.info().id == stale.info().id, "a refused init changes nothing")

        let (_, report, _) = try Datapath.load(pinningUnder: root.path, migrate: true)
        #expect(report.migrated == ["conntrack"])
        #expect(try BPFFilesystem.pinnedMap(at: path)?.info().type == .lruHash)
    }

    @Test func openingAnUninitializedRootSaysToInit() throws {
        guard Privileges.require() else { return }
        let root = try TestPinRoot()
        #expect(throws: DatapathError.notInitialized(root: root.path)) { try Datapath.open(pinnedUnder: root.path) }
        #expect(DatapathError.notInitialized(root: root.path).description.hasSuffix("run 'netfence loader init' first"))
    }
}

extension Int {
    var uint32: UInt32 { UInt32(self) }
}
