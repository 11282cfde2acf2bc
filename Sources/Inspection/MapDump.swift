import BPFKit
import DatapathModel
import Foundation
import HostKit

/// A map whose layout is not the one its name promises: refused with what differs, never read past.
public struct LayoutMismatch: Error, CustomStringConvertible {
    public let description: String
}

/// A map to dump, and how it was named.
public struct DumpTarget {
    public let map: BPFMap
    public let info: MapInfo
    /// Where it is pinned, when it was found by pin.
    public let pin: String?

    public init(map: BPFMap, info: MapInfo, pin: String?) {
        self.map = map
        self.info = info
        self.pin = pin
    }
}

public enum MapLayouts {
    /// netfence's maps by kernel name: type, key and value size (from the ABI header).
    static let netfence: [String: (type: MapType, key: Int, value: Int)] = [
        "conntrack": (.lruHash, ConntrackEntry.keySize, ConntrackEntry.valueSize),
        "pods": (.hash, 4, PodRecord.size),
        "revisions": (.array, 4, 4),
        "policies": (.arrayOfMaps, 4, 4),
        "policy_digests": (.array, 4, TrieDigestRecord.size),
        "settings": (.array, 4, ABISizes.settings),
        "counters": (.percpuArray, 4, ABISizes.packetCounter),
        "stats": (.percpuArray, 4, 8),
        "fragments": (.lruHash, ABISizes.fragmentKey, ABISizes.fragmentValue),
        "nf_pod_policy": (.lpmTrie, LPMKeyCodec.size, RuleSetCodec.size),
        "pod_event_level": (.array, 4, ABISizes.podEventLevel),  // pod_event_levels, cut to 15 by the kernel
        "event_limits": (.array, 4, ABISizes.eventLimit),
        "event_rings": (.array, 4, ABISizes.eventRing),
        "generations": (.array, 4, 8),
    ]

    /// The layout that decodes `target`: netfence's maps by kernel name, the AWS agent's by
    /// pin or kernel name; each checked against the map's own type and sizes. Anything else
    /// by its BTF when it has one; else (or with `raw`) as hex.
    public static func layout(for target: DumpTarget, context: DecodeContext, raw: Bool = false) throws -> MapLayout {
        let info = target.info
        if info.type.hasNoKeys {
            throw LayoutMismatch(description: "map \(info.id) (\(info.name)) is a \(info.type) map: it has no entries to dump"
                                 + (info.type == .ringbuf ? "; read events with 'netfence ebpf events'" : ""))
        }
        if raw { return HexLayout() }
        let pinName = target.pin.map { ($0 as NSString).lastPathComponent } ?? ""
        if let expected = netfence[info.name] {
            try check(info, is: "netfence's \(info.name)", type: expected.type, keys: [expected.key], values: [expected.value])
            switch info.name {
            case "conntrack": return ConntrackLayout(context: context)
            case "pods": return PodsLayout(context: context)
            case "revisions": return RevisionsLayout(context: context)
            case "policies": return PoliciesLayout(context: context, roles: try context.readTrieRoles(info.id))
            case "policy_digests": return PolicyDigestsLayout()
            case "settings": return SettingsLayout()
            case "counters": return CountersLayout(context: context)
            case "stats": return StatsLayout(context: context)
            case "fragments": return FragmentsLayout(context: context)
            case "pod_event_level": return PodEventLevelsLayout(context: context)
            case "event_limits": return EventLimitsLayout(context: context)
            case "event_rings": return EventRingsLayout()
            case "generations": return GenerationsLayout()
            default: return PolicyTrieLayout(context: context)
            }
        }
        // The AWS agent's maps are nameless on a real node: the pin says what they are (a kernel name, where one exists, is cut to 15).
        if let object = AWSAgent.Pin(path: pinName)?.object ?? AWSAgent.Object(kernelName: info.name) {
            switch object {
            case .clusterIngressMap, .clusterEgressMap:
                try check(info, is: "the AWS agent's cluster-policy trie", type: .lpmTrie, keys: [AWSAgent.ipv4TrieKeyBytes, AWSAgent.ipv6TrieKeyBytes],
                          values: [AWSAgent.clusterPolicyValueBytes])
                return AWSPolicyLayout(context: context, clusterPolicy: true)
            case .ingressMap, .egressMap:
                try check(info, is: "the AWS agent's policy trie", type: .lpmTrie, keys: [AWSAgent.ipv4TrieKeyBytes, AWSAgent.ipv6TrieKeyBytes],
                          values: [AWSAgent.policyValueBytes])
                return AWSPolicyLayout(context: context, clusterPolicy: false)
            case .ingressPodStateMap, .egressPodStateMap:
                try check(info, is: "the AWS agent's pod state", type: .hash, keys: [4], values: [1])
                return AWSPodStateLayout()
            case .conntrackMap:
                try check(info, is: "the AWS agent's conntrack", type: .lruHash, keys: [AWSAgent.ipv4ConntrackKeyBytes, AWSAgent.ipv6ConntrackKeyBytes],
                          values: [AWSAgent.conntrackValueBytes])
                return AWSConntrackLayout(context: context)
            case .policyEvents, .ingressProgram, .egressProgram:
                break  // a ring buffer (refused above), or not a map
            }
        }
        if info.btfID != 0, info.btfValueTypeID != 0, let btf = try? BTF(kernelID: info.btfID) {
            return BTFLayout(btf: btf, info: info)
        }
        return HexLayout()
    }

    private static func check(_ info: MapInfo, is what: String, type: MapType, keys: [Int], values: [Int]) throws {
        guard info.type != type || !keys.contains(Int(info.keySize)) || !values.contains(Int(info.valueSize)) else { return }
        let expected = "a \(type) map, key \(keys.map { "\($0)" }.joined(separator: " or ")) B, value \(values.map { "\($0)" }.joined(separator: " or ")) B"
        throw LayoutMismatch(description: "map \(info.id) (\(info.name.isEmpty ? "no kernel name" : info.name)) is named like \(what) but is a \(info.type) map with key \(info.keySize) B "
                             + "and value \(info.valueSize) B, not \(expected); '--raw' prints its bytes")
    }

    /// Finds the map `spec` names: an id, a pin path, or a name (a pin under `pinRoot`'s maps, the
    /// AWS agent's maps folder, then any loaded map with that kernel name). A map found by id or
    /// kernel name gets its pin from `awsRoot` or `pinRoot` when it has one: the AWS agent's maps
    /// have no kernel names, so the pin is what says how to read them.
    public static func resolve(_ spec: String, pinRoot: String, awsRoot: String = AWSAgent.root) throws -> DumpTarget {
        func pinned(_ target: DumpTarget) throws -> DumpTarget {
            guard target.pin == nil else { return target }
            let index = try PinIndex(roots: [awsRoot, pinRoot])
            let pins = index.maps[target.info.id] ?? []
            return DumpTarget(map: target.map, info: target.info, pin: pins.first { AWSAgent.Pin(path: $0) != nil } ?? pins.first)
        }
        if let id = UInt32(spec) {
            let map: BPFMap
            do { map = try BPFMap(id: id) } catch let error as SystemError where error.errno == ENOENT {
                throw LayoutMismatch(description: "no map with id \(id) is loaded; list ids with 'netfence ebpf maps --all'")
            }
            return try pinned(DumpTarget(map: map, info: try map.info(), pin: nil))
        }
        if spec.hasPrefix("/") {
            guard let map = try BPFFilesystem.pinnedMap(at: spec) else {
                throw LayoutMismatch(description: "no map is pinned at \(spec); list pins with 'netfence ebpf maps'")
            }
            return DumpTarget(map: map, info: try map.info(), pin: spec)
        }
        for folder in ["\(pinRoot)/maps", "\(awsRoot)/maps"] {
            let path = "\(folder)/\(spec)"
            if !spec.contains("/"), let map = try? BPFFilesystem.pinnedMap(at: path) {
                return DumpTarget(map: map, info: try map.info(), pin: path)
            }
        }
        var found: [DumpTarget] = []
        for id in try BPFMap.allIDs() {
            guard let map = try? BPFMap(id: id), let info = try? map.info(), info.name == spec else { continue }
            found.append(DumpTarget(map: map, info: info, pin: nil))
        }
        if found.count == 1 { return try pinned(found[0]) }
        if found.isEmpty {
            throw LayoutMismatch(description: "no map named '\(spec)' is pinned under \(pinRoot)/maps or \(awsRoot)/maps, or loaded; "
                                 + "list maps with 'netfence ebpf maps --all'")
        }
        throw LayoutMismatch(description: "\(found.count) loaded maps are named '\(spec)' (ids \(found.map { "\($0.info.id)" }.joined(separator: ", "))); name one by id")
    }

    /// Streams every entry of `target` through `layout` into `writer`. Returns rows written.
    @discardableResult
    public static func dump(_ target: DumpTarget, layout: MapLayout, into writer: RecordWriter) throws -> Int {
        try target.map.forEachBatchReadingAhead { batch in
            for index in 0..<batch.count {
                layout.decode(key: batch.key(index), value: batch.value(index), into: writer)
            }
        }
        writer.finish()
        return writer.rowCount
    }
}
