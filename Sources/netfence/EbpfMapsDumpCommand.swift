import BPFKit
import CommandTree
import DatapathModel
import Events
import Foundation
import HostKit
import Inspection
import Loader

/// What the three spellings of a map dump share: `ebpf maps dump`, and
/// `ebpf dump-maps` / `ebpf dump-cp-maps` as aws-eks-na-cli users type them.
enum MapDumpArguments {
    static let discussion = """
        MAP is a map id, a pin path, or a name (a pin under the root's maps folder, then under \
        /sys/fs/bpf/globals/aws/maps, then any loaded map with that kernel name); or --pod with --direction for \
        the pod's live policy trie. Decoded by what the map is: netfence's conntrack, policy tries, pods, revisions, \
        policies, settings, counters and stats, and the AWS network-policy agent's policy and cluster-policy tries, \
        pod state and conntrack. Any other map is decoded from its own BTF as bpftool formats it (fields by name, \
        enums by name, char arrays as strings, structs and unions as objects), or printed as hex without BTF; a map \
        named like a known one whose sizes differ is refused. Entries are read in batches and printed as they come (table columns have fixed widths); \
        -o json prints one array, an object per entry, with the table's columns as keys.
        """
    static let map = Positionals<String>(name: "map", help: "Map id, pin path or name.")
    static let pod = Option<PodReference?>(long: "pod", help: "Dump this pod's live policy trie (NAMESPACE/NAME).", default: nil, showDefault: false)
    static let direction = Option<Direction>(long: "direction", help: "With --pod: which trie.", default: .ingress)
    static let raw = Flag(long: "raw", help: "Print keys and values as hex, whatever the map is.")
    static let numeric = Flag(long: "numeric", help: "Numbers instead of names (pods, protocols).")
    static let perCPU = Flag(long: "per-cpu", help: "Per-CPU values one by one beside their sum.")
    static let noHeaders = Flag(long: "no-headers", help: "Leave out the table's header line.")
    static let definitions = ([map, pod, direction, raw, numeric, perCPU, noHeaders, AWSRoot.option] as [any ArgumentDefining]).map { $0.definition }

    static func validate(_ parsed: ParsedArguments) throws {
        if parsed[map].isEmpty, parsed[pod] == nil { throw UsageError("name a map (id, pin path or name) or a pod with --pod") }
        if parsed[map].count > 1 { throw UsageError("name one map") }
        if !parsed[map].isEmpty, parsed[pod] != nil { throw UsageError("a map and --pod exclude each other") }
    }

    /// The trie the datapath uses now for `pod` in `direction`.
    private static func policyTrie(of pod: PodReference, direction: Direction, loader: Loader?, context: CommandContext) throws -> DumpTarget {
        guard let loader else {
            throw RuntimeError("netfence is not loaded under \(context.pinRoot)", hint: "run 'netfence loader init' or pass --bpffs-root")
        }
        guard let map = try loader.liveTrie(of: pod, direction: direction) else {
            throw RuntimeError("pod \(pod) has no \(direction) trie (nothing selects it in that direction)")
        }
        return DumpTarget(map: map, info: try map.info(), pin: nil)
    }

    /// `--format aws-eks-na-cli`: the map by id (or pin), printed as na-cli prints it.
    static func runAsNaCli(_ parsed: ParsedArguments, _ context: CommandContext, flavor: NaCliText.Flavor, clusterPolicy: Bool) throws {
        try NodeAccess.requirePrivileges(context)
        guard let spec = parsed[map].first else { throw UsageError("aws-eks-na-cli dumps a map by id: name one") }
        let target = try MapLayouts.resolve(spec, pinRoot: context.pinRoot.path, awsRoot: parsed[AWSRoot.option])
        try NaCliText.dump(target, clusterPolicy: clusterPolicy, flavor: flavor, monotonicNow: HostClock.monotonic.nanoseconds) { context.write($0) }
    }

    static func run(_ parsed: ParsedArguments, _ context: CommandContext) throws {
        try NodeAccess.requirePrivileges(context)
        let loader = try? Loader(root: context.pinRoot)
        var decode = try DecodeContext(loader: loader)
        decode.numeric = parsed[numeric]
        decode.perCPU = parsed[perCPU]
        let target: DumpTarget
        if let pod = parsed[pod] {
            target = try policyTrie(of: pod, direction: parsed[direction], loader: loader, context: context)
            decode.hits = try loader?.ruleHits(of: pod, direction: parsed[direction])
        } else {
            target = try MapLayouts.resolve(parsed[map][0], pinRoot: context.pinRoot.path, awsRoot: parsed[AWSRoot.option])
        }
        if target.pin.flatMap({ AWSAgent.Pin(path: $0) })?.object == .conntrackMap || AWSAgent.Object(kernelName: target.info.name) == .conntrackMap {
            decode.awsPods = try AWSPods.byInterface(awsRoot: parsed[AWSRoot.option])  // its rows name the pod on their ifindex
        }
        let layout = try MapLayouts.layout(for: target, context: decode, raw: parsed[raw])
        let writer = RecordWriter(columns: layout.columns, format: context.outputFormat == .json ? .json : .table,
                                  headers: !parsed[noHeaders], output: context.write(bytes:))
        try MapLayouts.dump(target, layout: layout, into: writer)
        if let pin = target.pin, !FileManager.default.fileExists(atPath: pin) {
            context.warn("\(pin) was removed while dumping; shown is what the map held")
        }
    }
}

/// The three spellings are one command: the same arguments, checks and run.
protocol MapDumpCommand: Command {
    var parsed: ParsedArguments { get }
}

extension MapDumpCommand {
    static var arguments: [ArgumentDefinition] { MapDumpArguments.definitions }
    func validate() throws { try MapDumpArguments.validate(parsed) }
    func run(_ context: CommandContext) throws {
        if let flavor = context.naCli {
            return try MapDumpArguments.runAsNaCli(parsed, context, flavor: flavor, clusterPolicy: Self.self == EbpfDumpCPMapsCommand.self)
        }
        try MapDumpArguments.run(parsed, context)
    }
}

/// `netfence ebpf maps dump MAP`.
struct EbpfMapsDumpCommand: MapDumpCommand {
    static let configuration = CommandConfiguration(
        name: "dump", abstract: "Print a map's entries decoded into words.", discussion: MapDumpArguments.discussion)
    let parsed: ParsedArguments
    init(parsed: ParsedArguments) { self.parsed = parsed }
}

/// `netfence ebpf dump-maps MAP` (`d`), the aws-eks-na-cli spelling.
struct EbpfDumpMapsCommand: MapDumpCommand {
    static let configuration = CommandConfiguration(
        name: "dump-maps", aliases: ["d"], abstract: "Print a map's entries decoded into words (as 'ebpf maps dump').",
        discussion: MapDumpArguments.discussion)
    let parsed: ParsedArguments
    init(parsed: ParsedArguments) { self.parsed = parsed }
}

/// `netfence ebpf dump-cp-maps MAP` (`dcp`): cluster-policy maps, the aws-eks-na-cli spelling.
struct EbpfDumpCPMapsCommand: MapDumpCommand {
    static let configuration = CommandConfiguration(
        name: "dump-cp-maps", aliases: ["dcp"], abstract: "Print a cluster-policy map decoded into words (as 'ebpf maps dump').",
        discussion: MapDumpArguments.discussion + """


            netfence keeps a pod's cluster-policy rules (Admin, Baseline) in the same trie as its NetworkPolicy rules, \
            tier by tier; the AWS agent keeps them in cp_ingress_map / cp_egress_map.
            """)
    let parsed: ParsedArguments
    init(parsed: ParsedArguments) { self.parsed = parsed }
}
