import BPFKit
import CommandTree
import DatapathModel
import Foundation
import Inspection
import Loader

/// `netfence conntrack`: the datapath's connection table.
struct ConntrackCommand: Command {
    static let configuration = CommandConfiguration(
        name: "conntrack",
        abstract: "List, flush and count the datapath's tracked connections.",
        discussion: """
            One entry per flow (both directions share it), oriented as its first packet went: owning pod and \
            interface, protocol, endpoints, state (current: allowed under the pod's current policy revision; \
            stale: under an older one, decided again on its next packet; orphan: its pod is gone), the tier and \
            policy rule that allowed it, and how long ago its last packet passed.
            """,
        subcommands: [ConntrackListCommand.self, ConntrackFlushCommand.self, ConntrackStatsCommand.self])

    init(parsed: ParsedArguments) {}
}

extension FlowState: ArgumentValue {
    public static var defaultValueName: String { "state" }
}

/// The filters `list` and `flush` share.
enum ConntrackArguments {
    static let pod = Option<PodName?>(long: "pod", help: "Only this pod's flows (NAMESPACE/NAME).", default: nil, showDefault: false)
    static let ip = Option<IPPrefix?>(long: "ip", help: "Only flows with either end in this CIDR.", default: nil, showDefault: false)
    static let port = Option<UInt32?>(long: "port", help: "Only flows with either port equal to this.", default: nil, showDefault: false)
    static let proto = Option<String?>(long: "proto", valueName: "name", help: "Only this protocol (tcp, udp, sctp, icmp, icmpv6, or a number).",
                                       default: nil, showDefault: false)
    static let state = Option<FlowState?>(long: "state", help: "Only flows in this state.", default: nil, showDefault: false)
    static let filters = ([pod, ip, port, proto, state] as [any ArgumentDefining]).map { $0.definition }

    static func validate(_ parsed: ParsedArguments) throws {
        if let port = parsed[port], port > 65535 { throw UsageError("--port must be from 0 to 65535") }
        if let proto = parsed[proto], protocolNumber(proto) == nil {
            throw UsageError("--proto must be tcp, udp, sctp, icmp, icmpv6 or a number from 0 to 255, not '\(proto)'")
        }
    }

    static func protocolNumber(_ name: String) -> UInt8? {
        switch name.lowercased() {
        case "tcp": IPProtocolNumber.tcp
        case "udp": IPProtocolNumber.udp
        case "sctp": IPProtocolNumber.sctp
        case "icmp": IPProtocolNumber.icmp
        case "icmpv6": IPProtocolNumber.icmpv6
        default: UInt8(name)
        }
    }

    /// The table, its decoding context, and the filter the options describe.
    static func open(_ parsed: ParsedArguments, _ context: CommandContext, numeric: Bool = false) throws -> (ConntrackTable, ConntrackFilter) {
        let loader = try LoaderAccess.open(context)
        var decode = try InspectionAccess.decodeContext(loader)
        decode.numeric = numeric
        var filter = ConntrackFilter()
        if let pod = parsed[pod] {
            guard let id = try loader.state.pod(namespace: pod.namespace, name: pod.name)?.podID else {
                throw RuntimeError("pod \(pod) is not attached on this node", hint: "list pods with 'netfence loader status'")
            }
            filter.podID = id
        }
        filter.prefix = parsed[ip]
        filter.port = parsed[port].map { UInt16($0) }
        filter.protocolNumber = parsed[proto].flatMap(protocolNumber)
        filter.state = parsed[state]
        return (try ConntrackTable(map: loader.datapath.conntrack, context: decode), filter)
    }
}

/// `netfence conntrack list`.
struct ConntrackListCommand: Command {
    static let configuration = CommandConfiguration(
        name: "list", aliases: ["ls"], abstract: "List tracked connections, decoded; filters combine with AND.",
        discussion: "Streams the table in batches (fixed-width columns); -o json prints one array, an object per flow.")
    static let numeric = Flag(long: "numeric", help: "Numbers instead of names (pods, protocols).")
    static let noHeaders = Flag(long: "no-headers", help: "Leave out the table's header line.")
    static let arguments = ConntrackArguments.filters + [numeric.definition, noHeaders.definition]

    let parsed: ParsedArguments
    init(parsed: ParsedArguments) { self.parsed = parsed }
    func validate() throws { try ConntrackArguments.validate(parsed) }

    func run(_ context: CommandContext) throws {
        let (table, filter) = try ConntrackArguments.open(parsed, context, numeric: parsed[Self.numeric])
        let writer = RecordWriter(columns: table.layout.columns, format: context.outputFormat == .json ? .json : .table,
                                  headers: !parsed[Self.noHeaders], output: context.write(bytes:))
        let listed = try table.list(filter, into: writer)
        if listed == 0, !filter.isEmpty, context.outputFormat == .table {
            context.warn("no tracked connection matches the filters")
        }
    }
}

/// `netfence conntrack flush`.
struct ConntrackFlushCommand: Command {
    static let configuration = CommandConfiguration(
        name: "flush", abstract: "Remove tracked connections (all, or those the filters select); prints how many.",
        discussion: "A removed flow's next packet is decided again by the pod's current policy, as a new flow.")
    static let arguments = ConntrackArguments.filters

    let parsed: ParsedArguments
    init(parsed: ParsedArguments) { self.parsed = parsed }
    func validate() throws { try ConntrackArguments.validate(parsed) }

    func run(_ context: CommandContext) throws {
        let (table, filter) = try ConntrackArguments.open(parsed, context)
        let removed = try table.flush(filter)
        switch context.outputFormat {
        case .json: context.print("{\"removed\":\(removed)}")
        case .table: context.print("Removed \(removed) tracked connection\(removed == 1 ? "" : "s").")
        }
    }
}

/// `netfence conntrack stats`.
struct ConntrackStatsCommand: Command {
    static let configuration = CommandConfiguration(
        name: "stats", abstract: "Count tracked connections: entries, capacity, fill, by state, pod and protocol.")
    static let arguments: [ArgumentDefinition] = []

    init(parsed: ParsedArguments) {}

    func run(_ context: CommandContext) throws {
        let (table, _) = try ConntrackArguments.open(ParsedArguments(), context)
        let statistics = try table.statistics()
        switch context.outputFormat {
        case .json:
            context.print(try JSONOutput.encode(statistics))
        case .table:
            context.print("Entries: \(statistics.entries) of \(statistics.maximum) (\(String(format: "%.1f", statistics.fillPercent))% full)")
            for (title, counts) in [("STATE", statistics.byState), ("POD", statistics.byPod), ("PROTO", statistics.byProtocol)] where !counts.isEmpty {
                var rows = Table(headers: [title, "ENTRIES"])
                for (name, count) in counts.sorted(by: { $0.value == $1.value ? $0.key < $1.key : $0.value > $1.value }) {
                    rows.append([name, String(count)])
                }
                context.print("\n" + rows.render())
            }
        }
    }
}
