import BPFKit
import CNetfenceABI
import CNetfenceShim
import Datapath
@testable import DatapathModel
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

    /// The verifier's walk of each program leaves a tenth of its budget: other kernels walk the same
    /// program differently (older ones prune fewer states), so a change that grows the walk toward
    /// the limit must be caught here, not by a node whose kernel refuses to load it.
    @Test func eachProgramLeavesTheVerifierATenthOfItsBudget() throws {
        guard Privileges.require() else { return }
        let datapath = try Datapath()
        for direction in [Direction.ingress, .egress] {
            let info = try datapath.program(for: direction).info()
            try #require(info.verifiedInstructions > 0, "this kernel reports what the verifier walked (5.16 on)")
            #expect(Int(info.verifiedInstructions) <= ProgramInfo.verifierBudget * 9 / 10,
                    "\(info.name): \(info.verifiedInstructions) instructions walked of \(ProgramInfo.verifierBudget)")
        }
    }

    /// A node upgraded from a netfence without a map (here coarse_clock, new on 2026-12-05) gets it
    /// beside the maps it reuses, tracked flows included.
    @Test func aMapAnUpgradeAddsIsCreatedBesideTheReusedOnes() throws {
        guard Privileges.require() else { return }
        let root = try TestPinRoot()
        let (first, _, _) = try Datapath.load(pinningUnder: root.path, migrate: false)
        try first.conntrack.update(key: [UInt8](repeating: 7, count: ABISizes.conntrackKey), value: [UInt8](repeating: 1, count: ABISizes.conntrackValue))
        #expect(unlink(Datapath.mapPin(root.path, "coarse_clock")) == 0)

        let (second, report, _) = try Datapath.load(pinningUnder: root.path, migrate: false, sameABI: true)
        #expect(report.created == ["coarse_clock"] && report.reused.count == Datapath.mapLayouts.count - 1)
        #expect(try second.conntrack.countEntries() == 1, "tracked flows survive the upgrade")
        #expect(try BPFFilesystem.pinnedMap(at: Datapath.mapPin(root.path, "coarse_clock")) != nil)
    }

    /// Every change netfence makes to pods and to grants moves its count in `generations`, as
    /// another process that mapped the pinned map sees it (the DNS proxy keeps what it read
    /// until then); an apply that changes nothing moves nothing.
    @Test func everyChangeOfPodsAndGrantsMovesItsCountWhereverTheMapIsMapped() throws {
        guard Privileges.require() else { return }
        #expect(DatapathGeneration.allCases.count == Int(NF_GENERATION_COUNT.rawValue))
        #expect(DatapathGeneration.pods.rawValue == NF_GENERATION_PODS.rawValue && DatapathGeneration.grants.rawValue == NF_GENERATION_GRANTS.rawValue)
        let root = try TestPinRoot()
        let (datapath, _, _) = try Datapath.load(pinningUnder: root.path, migrate: false)
        let elsewhere = try Datapath.open(pinnedUnder: root.path)
        func counts() -> [UInt64] { DatapathGeneration.allCases.map { elsewhere.generations[$0.rawValue] } }
        #expect(counts() == [0, 0], "a new node")

        let states: [Direction: PodState] = [.ingress: .defaultAllow, .egress: .defaultAllow]
        try datapath.apply(ifindex: 70, podID: 7, states: states, policies: [:])
        #expect(counts() == [1, 0], "a pod registered")
        try datapath.apply(ifindex: 70, podID: 7, states: states, policies: [:])
        #expect(counts() == [1, 0], "nothing changed: no count moves")
        try datapath.apply(ifindex: 70, podID: 7, states: [.ingress: .defaultDeny, .egress: .defaultAllow], policies: [:])
        #expect(counts() == [2, 0], "its record flipped")

        let address = try #require(IPAddress("198.19.12.7"))
        try datapath.write(DomainGrant(podID: 7, address: address, patterns: [DomainGrant.Pattern(pattern: 1, expiresNanoseconds: 1)]))
        #expect(counts() == [2, 1], "a grant written")
        #expect(try datapath.removeGrant(podID: 7, address: address))
        #expect(counts() == [2, 2], "a grant deleted")
        #expect(try !datapath.removeGrant(podID: 7, address: address))
        #expect(counts() == [2, 2], "none to delete")
        try datapath.write(DomainGrant(podID: 7, address: address, patterns: [DomainGrant.Pattern(pattern: 1, expiresNanoseconds: 1)]))
        try datapath.remove(ifindex: 70)
        #expect(counts() == [3, 3], "the pod removed")
        #expect(try datapath.sweep { $0 == 7 }.grants == 1)
        #expect(counts() == [3, 4], "its grant swept")
        #expect(try datapath.sweep { $0 == 7 }.grants == 0)
        #expect(counts() == [3, 4], "a sweep that deletes no grant")
        datapath.countUnseenChanges()
        #expect(counts() == [4, 5], "what a killed change wrote without counting is read again")
    }

    /// A node that ran a netfence with one event ring buffer keeps no pin of it after a load:
    /// nothing would read it again.
    @Test func aLoadRemovesThePinsOfRetiredMaps() throws {
        guard Privileges.require() else { return }
        let root = try TestPinRoot()
        try FileManager.default.createDirectory(atPath: root.path + "/maps", withIntermediateDirectories: true)
        let ring = try BPFMap(type: .ringbuf, name: "events", keySize: 0, valueSize: 0, maxEntries: 512 * 1024)
        try ring.pin(at: Datapath.mapPin(root.path, "events"))
        let scratch = try BPFMap(type: .percpuArray, name: "event_scratch", keySize: 4, valueSize: 600, maxEntries: 1)
        try scratch.pin(at: Datapath.mapPin(root.path, "event_scratch"))
        _ = try Datapath.load(pinningUnder: root.path, migrate: false)
        #expect(try BPFFilesystem.pinnedMap(at: Datapath.mapPin(root.path, "events")) == nil)
        #expect(try BPFFilesystem.pinnedMap(at: Datapath.mapPin(root.path, "event_scratch")) == nil)
        #expect(try BPFFilesystem.pinnedMap(at: Datapath.mapPin(root.path, "event_rings")) != nil)
    }

    /// Event rings of another layout (another ring size, another CPU count) are replaced without
    /// --migrate: they hold only events in flight.
    @Test func eventRingsOfAnotherLayoutAreReplaced() throws {
        guard Privileges.require() else { return }
        let root = try TestPinRoot()
        try FileManager.default.createDirectory(atPath: root.path + "/maps", withIntermediateDirectories: true)
        let older = try BPFMap(type: .array, name: "event_rings", keySize: 4, valueSize: 4096, maxEntries: 1, flags: UInt32(BPF_F_MMAPABLE))
        try older.pin(at: Datapath.mapPin(root.path, "event_rings"))
        let (datapath, report, _) = try Datapath.load(pinningUnder: root.path, migrate: false)
        #expect(report.migrated == ["event_rings"])
        #expect(try datapath.eventReader().cpus == BPFMap.possibleCPUs)
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
        // Programs pinned without a map this netfence has: another version loaded them (an upgrade before its init).
        _ = try Datapath.load(pinningUnder: root.path, migrate: false)
        unlink(Datapath.mapPin(root.path, "event_rings"))
        #expect(throws: DatapathError.otherVersion(root: root.path, missingMap: "event_rings")) { try Datapath.open(pinnedUnder: root.path) }
        _ = try Datapath.load(pinningUnder: root.path, migrate: false)
        #expect(throws: Never.self) { try Datapath.open(pinnedUnder: root.path) }
    }
}

extension Int {
    var uint32: UInt32 { UInt32(self) }
}

/// `carryOverConntrack`: a resize's two passes over the replaced table.
@Suite struct ConntrackCarryOverTests {
    static func flow(_ port: UInt16, lastSeen seconds: UInt64, revision: UInt32 = 1) -> (key: [UInt8], value: [UInt8]) {
        ConntrackEntry(ifindex: 7, family: 4, protocolNumber: 6, low: IPAddress("198.18.0.1")!, lowPort: port, high: IPAddress("198.18.0.2")!,
                       highPort: 80, lastSeenNanoseconds: seconds * 1_000_000_000, revision: revision, ruleID: 0, podID: 0, direction: .egress,
                       tier: .podDefault, firstFromHigh: false).encode()
    }

    @Test func theSecondPassKeepsWhatTheNewTableTrackedMeanwhile() throws {
        guard Privileges.require() else { return }
        let datapath = try Datapath()
        let earlier = try BPFMap(type: .lruHash, name: "conntrack", keySize: UInt32(ConntrackEntry.keySize),
                                 valueSize: UInt32(ConntrackEntry.valueSize), maxEntries: 1024)
        for (port, seconds) in [(40000, 1), (40001, 2)] {
            let (key, value) = Self.flow(UInt16(port), lastSeen: UInt64(seconds))
            try earlier.update(key: key, value: value)
        }
        // The new programs tracked 40000 again since the first pass, under revision 9.
        let newer = Self.flow(40000, lastSeen: 50, revision: 9)
        try datapath.conntrack.update(key: newer.key, value: newer.value)

        #expect(try datapath.carryOverConntrack(from: earlier, keepingNewer: true) == 1, "only the flow the table lacks")
        #expect(try datapath.conntrack.lookup(key: newer.key) == newer.value, "the newer entry stays")
        #expect(try datapath.conntrack.lookup(key: Self.flow(40001, lastSeen: 2).key) == Self.flow(40001, lastSeen: 2).value)

        #expect(try datapath.carryOverConntrack(from: earlier, keepingNewer: false) == 2, "the first pass writes every flow")
        #expect(try datapath.conntrack.lookup(key: newer.key) == Self.flow(40000, lastSeen: 1).value)
    }
}
