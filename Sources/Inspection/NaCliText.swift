import BPFKit
import DatapathModel
import Foundation

/// What `aws-eks-na-cli` prints, line for line, for the scripts that scrape it
/// (the EKS log collector greps `Map Name:` with `-A1`): its field names, order
/// and spacing (Go's Println puts a space between operands: `Map Name:  ingress_map`).
/// Where na-cli prints a wrong value this prints the right one: map names from the
/// pins where the kernel has none, IPv6 keys as IPv6, a cluster-policy key once
/// (na-cli prints it twice), and no entry of a map whose layout is not the agent's.
public enum NaCliText {
    public enum Flavor: Sendable {
        /// `aws-eks-na-cli`.
        case ipv4
        /// `aws-eks-na-cli-v6`: its dump-maps spells entries as MapWalkv6 does.
        case ipv6
    }

    static let separator = String(repeating: "=", count: 88)
    static let entryEnd = "*******************************"
    static let slotRule = "-------------------"

    /// `ebpf progs`: every program loaded.
    public static func programs() throws -> String {
        var lines = ["Programs currently loaded : "]
        for id in try BPFProgram.allIDs() {
            guard let info = try? BPFProgram(id: id).info() else { continue }
            lines += ["Type : \(info.type.rawValue) ID : \(info.id) Associated maps count : \(info.mapIDs.count)", separator]
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `ebpf maps`: every map loaded.
    public static func maps() throws -> String {
        var lines = ["Maps currently loaded : "]
        for id in try BPFMap.allIDs() {
            guard let info = try? BPFMap(id: id).info() else { continue }
            lines += ["Type : \(info.type.rawValue) ID : \(info.id)",
                      "Keysize \(info.keySize) Valuesize \(info.valueSize) MaxEntries \(info.maxEntries)", separator]
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `ebpf loaded-ebpfdata`: each of the agent's pinned programs, its pod, direction and maps.
    public static func loadedData(awsRoot: String = AWSAgent.root) throws -> String {
        let mapPins = try PinIndex(roots: ["\(awsRoot)/maps"]).maps
        var lines: [String] = []
        for pinned in try BPFFilesystem.pinnedObjects(under: "\(awsRoot)/programs") where pinned.kind == .program {
            let pin = AWSAgent.Pin(path: pinned.path)
            let info = try BPFProgram(descriptor: pinned.descriptor).info()
            lines += ["PinPath:  \(pinned.path)", "Pod Identifier : \(pin?.podIdentifier ?? "")  Direction : \(pin?.direction?.description ?? "") ",
                      "Prog ID:  \(info.id)", "Associated Maps -> "]
            for id in info.mapIDs {
                let kernelName = (try? BPFMap(id: id).info().name) ?? ""
                let name = kernelName.isEmpty ? mapPins[id]?.lazy.compactMap(AWSAgent.Pin.init(path:)).first?.object.rawValue ?? "" : kernelName
                lines += ["Map Name:  \(name)", "Map ID:  \(id)"]
            }
            lines.append(separator)
        }
        return lines.isEmpty ? "" : lines.joined(separator: "\n") + "\n"
    }

    /// `ebpf dump-maps ID` / `dump-cp-maps ID`: the agent's tries, conntrack or pod state,
    /// by what the map is (its pin, else its type and sizes), streamed to `output`.
    public static func dump(_ target: DumpTarget, clusterPolicy: Bool, flavor: Flavor, monotonicNow: UInt64,
                            output: (String) -> Void) throws {
        let info = target.info
        let object = target.pin.flatMap { AWSAgent.Pin(path: $0)?.object } ?? AWSAgent.Object(kernelName: info.name)
        if flavor == .ipv6 { output("Walking map: \(info.name.isEmpty ? object?.rawValue ?? "" : info.name) (type=\(info.type.rawValue), id=\(info.id))\n") }
        var count = 0
        switch info.type {
        case .lpmTrie:
            let cluster = clusterPolicy || object == .clusterIngressMap || object == .clusterEgressMap
            let valueBytes = cluster ? AWSAgent.clusterPolicyValueBytes : AWSAgent.policyValueBytes
            try require(info, keys: [AWSAgent.ipv4TrieKeyBytes, AWSAgent.ipv6TrieKeyBytes], value: valueBytes,
                        what: cluster ? "the AWS agent's cluster-policy trie" : "the AWS agent's policy trie")
            try target.map.forEachBatch { batch in
                for index in 0..<batch.count {
                    output(trieEntry(key: batch.key(index), value: batch.value(index), clusterPolicy: cluster, flavor: flavor))
                    count += 1
                }
            }
        case .lruHash:
            try require(info, keys: [AWSAgent.ipv4ConntrackKeyBytes, AWSAgent.ipv6ConntrackKeyBytes], value: AWSAgent.conntrackValueBytes,
                        what: "the AWS agent's conntrack")
            try target.map.forEachBatch { batch in
                for index in 0..<batch.count {
                    guard let entry = AWSConntrackEntry.decode(key: batch.key(index), value: batch.value(index)) else { continue }
                    output(conntrackEntry(entry, now: monotonicNow))
                    count += 1
                }
            }
        case .hash:
            try require(info, keys: [4], value: 1, what: "the AWS agent's pod state")
            try target.map.forEachBatch { batch in
                for index in 0..<batch.count {
                    output("Key :  \(batch.key(index).loadUnaligned(as: UInt32.self))\nState -  \(batch.value(index)[0])\n\(entryEnd)\n")
                    count += 1
                }
            }
            output(count == 0 ? "No entries found, empty HASH map (pod_state_map?)\n" : "Done reading all entries in BPF_MAP_TYPE_HASH\n")
            return
        default:
            throw LayoutMismatch(description: "unsupported map type: \(info.type.rawValue) (expected LPM_TRIE, LRU_HASH, or HASH)")
        }
        output(count == 0 ? "No Entries found, Empty map\n" : "Done reading all entries\n")
    }

    private static func require(_ info: MapInfo, keys: [Int], value: Int, what: String) throws {
        guard !keys.contains(Int(info.keySize)) || Int(info.valueSize) != value else { return }
        throw LayoutMismatch(description: "map \(info.id) is not \(what): key \(info.keySize) B and value \(info.valueSize) B, "
                             + "not key \(keys.map(String.init).joined(separator: " or ")) B and value \(value) B; nothing of it was read")
    }

    /// `TCP`, `ANY PROTOCOL`, `RESERVED`, `UNKNOWN` (na-cli's GetProtocol).
    static func protocolName(_ number: UInt32) -> String {
        switch number {
        case UInt32(IPProtocolNumber.tcp): "TCP"
        case UInt32(IPProtocolNumber.udp): "UDP"
        case UInt32(IPProtocolNumber.sctp): "SCTP"
        case UInt32(IPProtocolNumber.icmp): "ICMP"
        case AWSAgent.reservedProtocol: "RESERVED"
        case AWSAgent.anyProtocol: "ANY PROTOCOL"
        default: "UNKNOWN"
        }
    }

    private static func trieEntry(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, clusterPolicy: Bool, flavor: Flavor) -> String {
        guard let (address, family, prefixLength) = AWSTrieKey.decode(key) else { return "" }
        let text = address.text(as: family)
        var lines = [flavor == .ipv6 ? "Key : IP/Prefixlen - \(text)/\(prefixLength) " : "Key: \(text)/\(prefixLength)"]
        for (index, slot) in (AWSPolicySlot.decode(value, clusterPolicy: clusterPolicy) ?? []).enumerated() where slot.isUsed {
            switch flavor {
            case .ipv4:
                lines += [slotRule, "Entry \(index):", "Protocol  - \(protocolName(slot.protocolNumber))"]
                if let priority = slot.encodedPriority { lines.append("Priority  - \(priority)") }
                lines += ["StartPort - \(slot.startPort)", "EndPort   - \(slot.endPort)", slotRule]
            case .ipv6:
                lines += [slotRule, "Value Entry :  \(index)", "Protocol -  \(protocolName(slot.protocolNumber))", "StartPort -  \(slot.startPort)",
                          "Endport -  \(slot.endPort)", slotRule]
            }
        }
        return (lines + [entryEnd]).joined(separator: "\n") + "\n"
    }

    private static func conntrackEntry(_ entry: AWSConntrackEntry, now: UInt64) -> String {
        let address = { (value: IPAddress) in value.text(as: entry.family) }
        return ["Conntrack Key : Source IP - \(address(entry.source)) Source port - \(entry.sourcePort) Dest IP - \(address(entry.destination)) "
                    + "Dest port - \(entry.destinationPort) Protocol - \(entry.protocolNumber) Owner IP - \(address(entry.owner)) Ifindex - \(entry.ifindex)",
                "Value : ", "Conntrack Val -  \(entry.state.code)",
                "Last Seen (ns) -  \(entry.lastSeenNanoseconds)  (\(lastSeen(entry.lastSeenNanoseconds, now: now)))", entryEnd]
            .joined(separator: "\n") + "\n"
    }

    /// `1.234s ago` as na-cli writes it (Go's Duration rounded to the millisecond); `never` for 0.
    static func lastSeen(_ lastSeen: UInt64, now: UInt64) -> String {
        if lastSeen == 0 { return "never" }
        if now == 0 || lastSeen > now { return "0s ago" }
        return goDuration(milliseconds: ((now - lastSeen) + 500_000) / 1_000_000) + " ago"
    }

    /// Go's `time.Duration.String()` of a whole number of milliseconds.
    static func goDuration(milliseconds: UInt64) -> String {
        if milliseconds == 0 { return "0s" }
        if milliseconds < 1000 { return "\(milliseconds)ms" }
        let hours = milliseconds / 3_600_000, minutes = milliseconds / 60_000 % 60
        let seconds = milliseconds / 1000 % 60, fraction = milliseconds % 1000
        var text = fraction == 0 ? "\(seconds)s" : "\(seconds)." + String(String(format: "%03d", fraction).reversed().drop { $0 == "0" }.reversed()) + "s"
        if hours > 0 || minutes > 0 { text = "\(minutes)m" + text }
        if hours > 0 { text = "\(hours)h" + text }
        return text
    }
}
