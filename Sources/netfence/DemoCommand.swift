import BPFKit
import BPFObjects
import CommandTree
import Foundation
import NodeNetwork

/// `netfence demo`: a throwaway pod with the embedded demo program on its host
/// veth, traffic through it, and the introspection commands showing it all.
struct DemoCommand: Command {
    static let configuration = CommandConfiguration(
        name: "demo",
        abstract: "Run a throwaway pod with a counting tc program, show it with 'ebpf progs' and 'ebpf maps', clean up.",
        discussion: """
            Creates two network namespaces, a node and a pod, joined by a veth pair (198.18.0.1 ↔ 198.18.0.2, \
            a test range); loads the embedded demo program and its counter map, pins them under \
            BPFFS_ROOT/demo-PID, attaches them to both tc hooks of the pod's host veth; sends UDP from the pod; \
            prints 'ebpf progs' and 'ebpf maps' for the demo's pins; removes everything it created, also on failure.
            """)

    static let keep = Flag(long: "keep", help: "Leave the namespaces, filters and pins in place for a look around.")
    static let arguments = [keep.definition]

    let keepResources: Bool
    init(parsed: ParsedArguments) { keepResources = parsed[Self.keep] }

    func run(_ context: CommandContext) throws {
        try NodeAccess.requirePrivileges(context)
        if context.bpffsRoot.hasPrefix(BPFFilesystem.defaultMountPoint + "/") {
            try BPFFilesystem.mountIfNeeded()
        }
        try NodeAccess.requireBPFFilesystem(context)

        let pid = getpid()
        let pinFolder = "\(context.bpffsRoot)/demo-\(pid)"
        context.print("==> Creating a node and a pod namespace joined by a veth pair")
        let network = try PodNetwork(name: "nfdemo-\(pid)", hostInterface: "nfdemo\(pid % 100_000)",
                                     nodeAddress: "198.18.0.1", podAddress: "198.18.0.2")
        defer {
            if !keepResources {
                network.remove()
                try? FileManager.default.removeItem(atPath: pinFolder)
            }
        }

        context.print("==> Loading the embedded demo program (verifier runs once) and pinning it under \(pinFolder)")
        let object = try BPFObjectFile(bytes: EmbeddedBPFObject.demo.bytes, name: EmbeddedBPFObject.demo.name)
        try FileManager.default.createDirectory(atPath: pinFolder, withIntermediateDirectories: true)
        let counters = try object.map(named: "demo_packets")
        try counters.pin(at: "\(pinFolder)/demo_packets")
        for direction in TCDirection.allCases {
            let program = try object.program(named: "demo_\(direction.rawValue)")
            try program.pin(at: "\(pinFolder)/demo_\(direction.rawValue)")
            try TCAttachments.attach(program, interface: network.hostInterface, direction: direction, in: network.node)
        }

        context.print("==> Sending 5 UDP datagrams from the pod (\(network.podAddress)) to the node (\(network.nodeAddress))")
        try network.sendUDPFromPod(count: 5)

        let scoped = context.parsed.setting(Netfence.bpffsRoot, to: pinFolder)
        context.print("\n$ netfence ebpf progs --bpffs-root \(pinFolder)")
        try EbpfProgsCommand(parsed: scoped).run(context.with(parsed: scoped))
        context.print("\n$ netfence ebpf maps --bpffs-root \(pinFolder)")
        try EbpfMapsCommand(parsed: scoped).run(context.with(parsed: scoped))
        context.print(keepResources
            ? "\n==> Kept: namespaces \(network.node.name), \(network.pod.name); pins under \(pinFolder)"
            : "\n==> Cleaning up: namespaces, veth, filters and pins removed")
    }
}
