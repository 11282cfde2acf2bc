import BPFKit
import BPFObjects
import DatapathModel
import Foundation
import Glibc
import HostKit

/// An EKS node's network-policy datapath as the AWS agent leaves it, made with
/// netfence's stand-in programs (`bpf/aws_agent_fixture.bpf.c`): maps and
/// programs created without kernel names (as the agent's SDK creates them),
/// pinned where and as the agent pins them, the programs on the hooks the agent
/// uses, and real traffic writing the conntrack and event maps. Removes exactly
/// what it created.
public final class AWSAgentNode {
    public struct Pod {
        public let identifier: String
        public let interface: String
        /// The pod's maps by object (tries, cluster tries, pod states).
        public let maps: [AWSAgent.Object: BPFMap]
        public let ingressProgram: BPFProgram
        public let egressProgram: BPFProgram
    }

    public let root: String
    public let conntrack: BPFMap
    public let events: BPFMap
    public private(set) var pods: [Pod] = []
    private var pins: [String] = []
    private var folders: [String] = []
    private var filters: [(interface: String, namespace: NetworkNamespace, direction: TCDirection)] = []

    /// The node-wide maps, pinned as `global_aws_conntrack_map` and `global_policy_events` under `root`/maps.
    public init(root: String = AWSAgent.root) throws {
        self.root = root
        conntrack = try BPFMap(type: .lruHash, name: "", keySize: UInt32(AWSAgent.ipv4ConntrackKeyBytes),
                               valueSize: UInt32(AWSAgent.conntrackValueBytes), maxEntries: 65536)
        events = try BPFMap(type: .ringbuf, name: "", keySize: 0, valueSize: 0, maxEntries: 512 * 1024)
        // Every folder made on the way (/sys/fs/bpf/globals too) goes again with the node.
        var path = ""
        for component in root.split(separator: "/") {
            path += "/\(component)"
            if !FileManager.default.fileExists(atPath: path) { folders.append(path) }
        }
        for folder in ["\(root)/maps", "\(root)/programs"] where !FileManager.default.fileExists(atPath: folder) { folders.append(folder) }
        for folder in folders { try BPFFilesystem.makeDirectories(folder) }
        try pin(conntrack, "\(root)/maps/global_aws_conntrack_map")
        try pin(events, "\(root)/maps/global_policy_events")
    }

    private func pin(_ map: BPFMap, _ path: String) throws {
        try map.pin(at: path)
        pins.append(path)
    }

    /// A pod with the agent's maps and programs, its programs attached on `interface` in `namespace`
    /// (handle_ingress on tc egress, handle_egress on tc ingress, priority 1, handle 1).
    @discardableResult
    public func addPod(identifier: String, interface: String, in namespace: NetworkNamespace,
                       podStates: (networkPolicy: AWSPodState, clusterPolicy: AWSPodState) = (.defaultAllow, .defaultAllow)) throws -> Pod {
        var maps: [AWSAgent.Object: BPFMap] = [:]
        for object in [AWSAgent.Object.ingressMap, .egressMap] {
            maps[object] = try BPFMap(type: .lpmTrie, name: "", keySize: UInt32(AWSAgent.ipv4TrieKeyBytes),
                                      valueSize: UInt32(AWSAgent.policyValueBytes), maxEntries: 256, flags: MapFlags.noPreallocate)
        }
        for object in [AWSAgent.Object.clusterIngressMap, .clusterEgressMap] {
            maps[object] = try BPFMap(type: .lpmTrie, name: "", keySize: UInt32(AWSAgent.ipv4TrieKeyBytes),
                                      valueSize: UInt32(AWSAgent.clusterPolicyValueBytes), maxEntries: 256, flags: MapFlags.noPreallocate)
        }
        for object in [AWSAgent.Object.ingressPodStateMap, .egressPodStateMap] {
            let states = try BPFMap(type: .hash, name: "", keySize: 4, valueSize: 1, maxEntries: 2)
            try states.update(key: Self.bytes(UInt32(0)), value: [podStates.networkPolicy.rawValue])
            try states.update(key: Self.bytes(UInt32(1)), value: [podStates.clusterPolicy.rawValue])
            maps[object] = states
        }
        for (object, map) in maps { try pin(map, "\(root)/maps/\(identifier)_\(object.rawValue)") }
        let shared = maps.reduce(into: [AWSAgent.Object.conntrackMap.rawValue: conntrack, AWSAgent.Object.policyEvents.rawValue: events]) {
            $0[$1.key.rawValue] = $1.value
        }
        let object = try BPFObjectFile(bytes: EmbeddedBPFObject.aws_agent_fixture.bytes, name: "aws_agent_fixture") { spec in shared[spec.name] }
        let ingress = try object.namelessCopy(ofProgram: "handle_ingress")
        let egress = try object.namelessCopy(ofProgram: "handle_egress")
        try ingress.pin(at: "\(root)/programs/\(identifier)_handle_ingress")
        pins.append("\(root)/programs/\(identifier)_handle_ingress")
        try egress.pin(at: "\(root)/programs/\(identifier)_handle_egress")
        pins.append("\(root)/programs/\(identifier)_handle_egress")
        try TCAttachments.attach(ingress, interface: interface, direction: .egress, in: namespace, handle: 1, priority: 1)
        filters.append((interface, namespace, .egress))
        try TCAttachments.attach(egress, interface: interface, direction: .ingress, in: namespace, handle: 1, priority: 1)
        filters.append((interface, namespace, .ingress))
        let pod = Pod(identifier: identifier, interface: interface, maps: maps, ingressProgram: ingress, egressProgram: egress)
        pods.append(pod)
        return pod
    }

    /// Removes the filters, pins and folders this node made, nothing else.
    public func remove() {
        for filter in filters {
            try? TCAttachments.detach(interface: filter.interface, direction: filter.direction, in: filter.namespace, handle: 1, priority: 1)
        }
        filters = []
        pins.forEach { unlink($0) }
        pins = []
        folders.reversed().forEach { rmdir($0) }
        folders = []
    }

    deinit { remove() }

    public static func bytes<T>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value) { Array($0) } }

    /// A trie key `{u32 prefixlen; u8 ip[4]}` for `cidr`.
    public static func trieKey(_ cidr: String) -> [UInt8] {
        let parts = cidr.split(separator: "/")
        let octets = parts[0].split(separator: ".").map { UInt8($0)! }
        return bytes(UInt32(parts.count > 1 ? UInt32(parts[1])! : 32)) + octets
    }

    /// A policy value: `slots` at the given indexes (the rest empty), as the agent's Go code writes them.
    public static func trieValue(_ slots: [Int: [UInt32]], clusterPolicy: Bool) -> [UInt8] {
        let width = clusterPolicy ? 4 : 3
        var value = [UInt8](repeating: 0, count: AWSAgent.slots * width * 4)
        for (index, fields) in slots {
            for (field, number) in fields.enumerated() {
                value.replaceSubrange((index * width + field) * 4..<(index * width + field + 1) * 4, with: bytes(number))
            }
        }
        return value
    }
}
