import BPFObjects
import Foundation
import Glibc
import HostKit
import NodeNetwork
import Testing
import TestSupport

@testable import BPFKit

/// An Ethernet + IPv4 + UDP frame from 198.18.0.2 to 198.18.0.1 (checksums unchecked by tc).
let udpFrame: [UInt8] = [
    0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00,
    0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 2, 198, 18, 0, 1,
    0x30, 0x39, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4,
]

@Suite struct ProgramTests {
    @Test func theDemoObjectLoadsAndReportsItsInfo() throws {
        guard Privileges.require() else { return }
        let object = try BPFObjectFile(bytes: EmbeddedBPFObject.demo.bytes, name: "demo")
        let program = try object.program(named: "demo_ingress")
        let map = try object.map(named: "demo_packets")
        let info = try program.info()
        #expect(info.type == .schedCls)
        #expect(info.type.description == "sched_cls")
        #expect(info.name == "demo_ingress")
        #expect(info.tag.count == 16)
        #expect(info.mapIDs == [try map.info().id])
        let loaded = HostClock.boot.date(info.loadTimeNanoseconds)
        #expect(abs(loaded.timeIntervalSinceNow) < 60)
        let mapInfo = try map.info()
        #expect(mapInfo.type == .hash && mapInfo.keySize == 8 && mapInfo.valueSize == 16 && mapInfo.maxEntries == 1024)
    }

    @Test func testRunsCountPacketsAndStatisticsSeeThem() throws {
        guard Privileges.require() else { return }
        let object = try BPFObjectFile(bytes: EmbeddedBPFObject.demo.bytes, name: "demo")
        let program = try object.program(named: "demo_egress")
        let counters = try object.map(named: "demo_packets")
        let result: BPFProgram.TestRunResult
        do {
            let session = try StatisticsSession()
            result = try program.testRun(packet: udpFrame, repeat: 10, ifindex: 1)
            withExtendedLifetime(session) {}
        }
        #expect(result.verdict == 0, "TC_ACT_OK")
        #expect(try counters.countEntries() == 1)
        let info = try program.info()
        #expect(info.runCount >= 10)
        #expect(info.runTimeNanoseconds > 0)
    }

    @Test func openingAnUnknownIDNamesTheIDAndTheErrno() {
        guard Privileges.require() else { return }
        #expect(throws: SystemError("open program", "id 4294967295", errno: ENOENT)) { try BPFProgram(id: UInt32.max) }
        #expect(SystemError("open program", "id 4294967295", errno: ENOENT).description
            == "open program id 4294967295: No such file or directory (ENOENT)")
        #expect(SystemError("batch lookup of map", "id 3", errno: -524).description
            == "batch lookup of map id 3: operation not supported by this kernel (ENOTSUPP)")
    }

    @Test func aCorruptObjectIsRefusedWithItsName() {
        guard Privileges.require() else { return }
        do {
            _ = try BPFObjectFile(bytes: Array("not an ELF object".utf8), name: "garbage")
            Issue.record("a corrupt object loaded")
        } catch let error as SystemError {
            #expect(error.operation == "open BPF object")
            #expect(error.object == "garbage")
            #expect(error.errno != 0)
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func pinsAreWalkedWithTheirKinds() throws {
        guard Privileges.require() else { return }
        let root = try TestPinRoot()
        let object = try BPFObjectFile(bytes: EmbeddedBPFObject.demo.bytes, name: "demo")
        try FileManager.default.createDirectory(atPath: root.path + "/sub", withIntermediateDirectories: true)
        try object.program(named: "demo_ingress").pin(at: root.path + "/sub/prog")
        try object.map(named: "demo_packets").pin(at: root.path + "/map")
        let pinned = try BPFFilesystem.pinnedObjects(under: root.path)
        #expect(pinned.map(\.path) == [root.path + "/map", root.path + "/sub/prog"])
        #expect(pinned.map(\.kind) == [.map, .program])
        #expect(try BPFFilesystem.pinnedObjects(under: root.path + "/absent").isEmpty)
        #expect(BPFFilesystem.isBPFFilesystem(root.path))
        #expect(!BPFFilesystem.isBPFFilesystem("/tmp"))
    }

    @Test func aPinnedMapOfAnyKindOpensAsAMapAndAProgramNeverDoes() throws {
        guard Privileges.require() else { return }
        let root = try TestPinRoot()
        let object = try BPFObjectFile(bytes: EmbeddedBPFObject.demo.bytes, name: "demo")
        try object.program(named: "demo_ingress").pin(at: root.path + "/prog")
        let maps = [try BPFMap(type: .hash, name: "nf_test_hash", keySize: 4, valueSize: 8, maxEntries: 8),
                    try BPFMap(type: .ringbuf, name: "nf_test_ring", keySize: 0, valueSize: 0, maxEntries: 4096),
                    try BPFMap(type: .queue, name: "nf_test_queue", keySize: 0, valueSize: 8, maxEntries: 8),
                    try BPFMap(type: .percpuArray, name: "nf_test_arr", keySize: 4, valueSize: 8, maxEntries: 8)]
        for (index, map) in maps.enumerated() {
            try map.pin(at: root.path + "/map\(index)")
            let type = try map.info().type
            #expect(try BPFFilesystem.pinnedMap(at: root.path + "/map\(index)")?.info().id == map.info().id, "\(type)")
            #expect(throws: SystemError.self) { try BPFFilesystem.pinnedProgram(at: root.path + "/map\(index)") }
        }
        #expect(throws: SystemError.self) { try BPFFilesystem.pinnedMap(at: root.path + "/prog") }
        #expect(try BPFFilesystem.pinnedProgram(at: root.path + "/prog") != nil)
        #expect(try BPFFilesystem.pinnedMap(at: root.path + "/absent") == nil)
    }

    /// A throwaway pod (its host veth named `name`) and the demo object, whose `demo_ingress` counts packets.
    static func demoOnAPod(_ prefix: String) throws -> (name: String, network: PodNetwork, object: BPFObjectFile, program: BPFProgram) {
        let name = UniqueNames.make(prefix), subnet = testSubnet()
        let network = try PodNetwork(name: name, hostInterface: name, nodeAddress: subnet.node, podAddress: subnet.pod)
        let object = try BPFObjectFile(bytes: EmbeddedBPFObject.demo.bytes, name: "demo")
        return (name, network, object, try object.program(named: "demo_ingress"))
    }

    @Test func tcAttachmentsAreFoundInTheirNamespaceAndRemoved() throws {
        guard Privileges.require() else { return }
        let (name, network, _, program) = try Self.demoOnAPod("nfk")
        defer { network.remove() }
        let id = try program.info().id
        let placed = try TCAttachments.attach(program, interface: name, direction: .egress, in: network.node, handle: 1, priority: 7)
        #expect(placed.handle == 1 && placed.priority == 7)

        let found = TCAttachments.scan([network.node]).filter { $0.programID == id }
        #expect(found == [ProgramAttachment(kind: .tc, namespace: network.node.name, interface: name, ifindex: placed.ifindex,
                                            direction: .egress, priority: 7, handle: 1, programID: id)])
        #expect(found.first?.summary == "\(name)@\(network.node.name) tc/egress")

        try TCAttachments.detach(interface: name, direction: .egress, in: network.node, handle: 1, priority: 7)
        #expect(TCAttachments.scan([network.node]).filter { $0.programID == id }.isEmpty)
    }

    /// A program attached through tcx runs on the hook's packets while its link lives, ahead of a cls_bpf
    /// filter on the same hook (whose run its verdict ends), and the scan finds it as tcx beside the filter.
    @Test func tcxLinksRunWhileTheyLiveAheadOfFiltersAndAreFound() throws {
        guard Privileges.require() else { return }
        let (name, network, object, program) = try Self.demoOnAPod("nfx")
        defer { network.remove() }
        let counters = try object.map(named: "demo_packets"), id = try program.info().id
        func counted() throws -> UInt64 { try counters.entries().map { $0.value.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } }.reduce(0, +) }

        var link: TCXLink? = try TCAttachments.attachLink(program, interface: name, direction: .ingress, in: network.node)
        let placed = try TCAttachments.attach(program, interface: name, direction: .ingress, in: network.node, handle: 1, priority: 7)
        #expect(link?.ifindex == placed.ifindex)
        let found = TCAttachments.scan([network.node]).filter { $0.programID == id }
        #expect(found.map(\.kind.rawValue).sorted() == ["tc", "tcx"], "\(found)")
        #expect(found.first { $0.kind == .tcx } == ProgramAttachment(kind: .tcx, namespace: network.node.name, interface: name,
                                                                     ifindex: placed.ifindex, direction: .ingress, priority: nil, handle: nil,
                                                                     programID: id))
        try network.sendUDPFromPod(count: 1)  // the pod resolves the node's address first
        var before = try counted()
        try network.sendUDPFromPod(count: 5)
        let both = try counted() - before
        #expect(both >= 5 && both < 10, "each packet counted by the link only, not by the filter behind it too: \(both)")

        link = nil  // its last descriptor closed: detached
        #expect(TCAttachments.scan([network.node]).filter { $0.programID == id }.map(\.kind) == [.tc])
        before = try counted()
        try network.sendUDPFromPod(count: 5)
        #expect(try counted() - before >= 5, "the filter runs again")
        try TCAttachments.detach(interface: name, direction: .ingress, in: network.node, handle: 1, priority: 7)
        withExtendedLifetime(link) {}
    }

    @Test func attachingToAMissingInterfaceNamesIt() throws {
        guard Privileges.require() else { return }
        let object = try BPFObjectFile(bytes: EmbeddedBPFObject.demo.bytes, name: "demo")
        let program = try object.program(named: "demo_ingress")
        #expect(throws: SystemError("attach tc ingress program to", "nf-absent0", errno: ENODEV)) {
            try TCAttachments.attach(program, interface: "nf-absent0", direction: .ingress)
        }
    }
}
