import BPFKit
import DatapathModel
import Foundation
import Loader

/// What runs for one pod in one direction (from the pod's point of view): the
/// program on its host interface and the maps it uses, as `ebpf loaded-ebpfdata`
/// (aws-eks-na-cli's spelling) lists them, for netfence's pods and the AWS agent's.
public struct PodProgramData: Sendable, Encodable {
    public struct MapData: Sendable, Encodable {
        public let id: UInt32
        public let name: String
        public let type: String
    }

    /// `netfence` or `aws`.
    public let owner: String
    /// `namespace/name` (netfence), or the AWS agent's pod identifier.
    public let pod: String
    public let direction: String
    /// Where the program is attached: interface, its network namespace, and the tc hook.
    public let interface: String?
    public let networkNamespace: String?
    public let hook: String?
    public let programID: UInt32?
    public let programName: String?
    public let pin: String?
    public let maps: [MapData]
    /// netfence: the pod's live policy trie in this direction (nil when nothing selects it).
    public let policyTrieID: UInt32?
}

public enum LoadedData {
    /// Every attached netfence pod (when `loader` is given) and every program the AWS
    /// agent pinned under `awsRoot`/programs, each direction once; netfence's first.
    public static func collect(loader: Loader?, awsRoot: String = AWSAgent.root) throws -> [PodProgramData] {
        let attachments = TCAttachments.scan()
        let lookups = Lookups(pins: try PinIndex(roots: ["\(awsRoot)/maps"]).maps)
        return try netfencePods(loader, attachments, lookups) + awsPrograms(under: "\(awsRoot)/programs", attachments, lookups)
    }

    /// Programs and maps read once per listing: every netfence pod shares the same two programs and their maps.
    private final class Lookups {
        private var programs: [UInt32: ProgramInfo?] = [:]
        private var maps: [UInt32: PodProgramData.MapData?] = [:]
        /// The AWS agent's map pins by id: its maps have no kernel names, their pins do.
        private let pins: [UInt32: [String]]

        init(pins: [UInt32: [String]]) { self.pins = pins }

        func program(_ id: UInt32) -> ProgramInfo? {
            if let known = programs[id] { return known }
            let info = try? BPFProgram(id: id).info()
            programs[id] = info
            return info
        }

        /// Maps by id, with their names and types; one unloaded meanwhile is left out.
        func maps(_ ids: [UInt32]) -> [PodProgramData.MapData] {
            ids.compactMap { id in
                if let known = maps[id] { return known }
                let pinned = pins[id]?.lazy.compactMap(AWSAgent.Pin.init(path:)).first?.object.rawValue
                let map = (try? BPFMap(id: id).info()).map {
                    PodProgramData.MapData(id: id, name: $0.name.isEmpty ? pinned ?? "" : $0.name, type: $0.type.description)
                }
                maps[id] = map
                return map
            }
        }
    }

    private static func netfencePods(_ loader: Loader?, _ attachments: [ProgramAttachment], _ lookups: Lookups) throws -> [PodProgramData] {
        guard let loader else { return [] }
        let records = try loader.liveRecords()
        // A pod registered without --netns has its interface in this process's namespace, named as the scan names it.
        let ownNamespace = NetworkNamespace.all().first(where: \.isCurrent)?.name
        let attachedBy = try loader.attachment()
        let programIDs = try loader.datapath.programIDsByHook()
        return try loader.state.pods().sorted { ($0.value.namespace, $0.value.name) < ($1.value.namespace, $1.value.name) }
            .flatMap { podID, pod in
                try Direction.allCases.map { direction in
                    // The host veth's tc ingress sees what the pod sends (its egress), tc egress what it receives.
                    let hook: TCDirection = direction == .egress ? .ingress : .egress
                    // Midway through an init that moved pods to links, both may be there: the link runs (first).
                    let matches = attachments.filter {
                        $0.interface == pod.interface && $0.ifindex == pod.ifindex && $0.direction == hook
                            && $0.namespace == (pod.netns.isEmpty ? ownNamespace : pod.netns)
                            && ($0.kind == .tc ? $0.handle == Loader.filterHandle && $0.priority == Loader.filterPriority
                                : $0.kind == .tcx && $0.programID == programIDs[hook])
                    }
                    let attachment = matches.first { $0.kind == .tcx } ?? matches.first
                    let program = attachment.flatMap { lookups.program($0.programID) }
                    let trie = try records[podID].flatMap { try loader.datapath.trieID($0, direction: direction) }
                    return PodProgramData(owner: "netfence", pod: pod.pod.description, direction: direction.description,
                                          interface: pod.interface, networkNamespace: attachment?.namespace ?? (pod.netns.isEmpty ? nil : pod.netns),
                                          hook: "\(attachment?.kind.rawValue ?? attachedBy.newPodHookKind.rawValue) \(hook.rawValue)", programID: program?.id, programName: program?.name, pin: nil,
                                          maps: lookups.maps(program?.mapIDs ?? []), policyTrieID: trie)
                }
            }
    }

    /// The AWS agent pins `<pod identifier>_handle_ingress` / `_handle_egress` per pod.
    private static func awsPrograms(under folder: String, _ attachments: [ProgramAttachment], _ lookups: Lookups) throws -> [PodProgramData] {
        try BPFFilesystem.pinnedObjects(under: folder).compactMap { pinned in
            guard pinned.kind == .program else { return nil }
            let file = (pinned.path as NSString).lastPathComponent
            let pin = AWSAgent.Pin(path: pinned.path)
            let info = try BPFProgram(descriptor: pinned.descriptor).info()
            let attachment = attachments.first { $0.programID == info.id }
            return PodProgramData(owner: "aws", pod: pin?.podIdentifier ?? file,
                                  direction: pin?.direction?.description ?? "-", interface: attachment?.interface, networkNamespace: attachment?.namespace,
                                  hook: attachment.map { "\($0.kind.rawValue) \($0.direction.rawValue)" }, programID: info.id,
                                  programName: info.name.isEmpty ? pin?.object.rawValue : info.name,
                                  pin: pinned.path, maps: lookups.maps(info.mapIDs), policyTrieID: nil)
        }
    }
}
