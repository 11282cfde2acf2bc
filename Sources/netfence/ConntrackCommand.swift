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

            --aws reads the AWS network-policy agent's table instead (global_aws_conntrack_map under --aws-root, IPv4 \
            or IPv6 keys): each flow with its pod (the pod identifier of the agent's program on the flow's interface), \
            endpoints, owner address, the pod's network-policy and cluster-policy states the flow was allowed under \
            (decoded from the agent's one state code) and age. 'flush --aws' changes the agent's state (its next \
            packet is decided again as a new flow) and needs --yes-change-the-agent.
            """,
        subcommands: [ConntrackListCommand.self, ConntrackFlushCommand.self, ConntrackStatsCommand.self])

    init(parsed: ParsedArguments) {}
}

/// The filters `list` and `flush` share.
enum ConntrackArguments {
    static let pod = Option<PodReference?>(long: "pod", help: "Only this pod's flows (NAMESPACE/NAME).", default: nil, showDefault: false)
    static let ip = Option<IPPrefix?>(long: "ip", help: "Only flows with either end in this CIDR.", default: nil, showDefault: false)
    static let port = Option<UInt16?>(long: "port", help: "Only flows with either port equal to this.", default: nil, showDefault: false)
    static let proto = Option<ProtocolArgument?>(long: "proto", help: "Only this protocol (tcp, udp, sctp, icmp, icmpv6, or a number).",
                                                 default: nil, showDefault: false)
    static let state = Option<FlowState?>(long: "state", help: "Only flows in this state.", default: nil, showDefault: false)
    static let aws = Flag(long: "aws", help: "The AWS network-policy agent's table, not netfence's.")
    static let filters = ([pod, ip, port, proto, state, aws, AWSRoot.option] as [any ArgumentDefining]).map { $0.definition }

    static func validate(_ parsed: ParsedArguments) throws {
        if parsed[aws], parsed[state] != nil { throw UsageError("--state describes netfence's flows; the agent's have no revisions") }
    }

    /// The AWS agent's table and the filter the options describe.
    static func openAWS(_ parsed: ParsedArguments, _ context: CommandContext, numeric: Bool = false) throws -> (AWSConntrackTable, AWSConntrackTable.Filter) {
        try NodeAccess.requirePrivileges(context)
        var decode = DecodeContext()
        decode.numeric = numeric
        let table = try AWSConntrackTable(awsRoot: parsed[AWSRoot.option], context: decode)
        var filter = AWSConntrackTable.Filter()
        if let pod = parsed[pod] {
            let identifier = AWSAgent.podIdentifier(namespace: pod.namespace, name: pod.name)
            filter.ifindexes = table.interfaces(of: identifier)
            if filter.ifindexes?.isEmpty == true {
                throw RuntimeError("no program of the AWS agent for pod \(pod) (identifier \(identifier)) is attached on this node",
                                   hint: "list them with 'netfence ebpf loaded-ebpfdata'")
            }
        }
        filter.prefix = parsed[ip]
        filter.port = parsed[port]
        filter.protocolNumber = parsed[proto]?.number
        return (table, filter)
    }

    /// The table, its decoding context, and the filter the options describe.
    static func open(_ parsed: ParsedArguments, _ context: CommandContext, numeric: Bool = false) throws -> (ConntrackTable, ConntrackFilter) {
        let loader = try LoaderAccess.open(context)
        var decode = try DecodeContext(loader: loader)
        decode.numeric = numeric
        var filter = ConntrackFilter()
        if let pod = parsed[pod] {
            guard let id = try loader.state.pod(pod)?.podID else {
                throw RuntimeError("pod \(pod) is not attached on this node", hint: "list pods with 'netfence loader status'")
            }
            filter.podID = id
        }
        filter.prefix = parsed[ip]
        filter.port = parsed[port]
        filter.protocolNumber = parsed[proto]?.number
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
        let format: RecordWriter.Format = context.outputFormat == .json ? .json : .table
        let listed: Int, filtered: Bool
        if parsed[ConntrackArguments.aws] {
            let (table, filter) = try ConntrackArguments.openAWS(parsed, context, numeric: parsed[Self.numeric])
            let writer = RecordWriter(columns: table.layout.columns, format: format, headers: !parsed[Self.noHeaders], output: context.write(bytes:))
            (listed, filtered) = (try table.list(filter, into: writer), !filter.isEmpty)
        } else {
            let (table, filter) = try ConntrackArguments.open(parsed, context, numeric: parsed[Self.numeric])
            let writer = RecordWriter(columns: table.layout.columns, format: format, headers: !parsed[Self.noHeaders], output: context.write(bytes:))
            (listed, filtered) = (try table.list(filter, into: writer), !filter.isEmpty)
        }
        if listed == 0, filtered, context.outputFormat == .table {
            context.warn("no tracked connection matches the filters")
        }
    }
}

/// `netfence conntrack flush`.
struct ConntrackFlushCommand: Command {
    static let configuration = CommandConfiguration(
        name: "flush", abstract: "Remove tracked connections (all, or those the filters select); prints how many.",
        discussion: """
            A removed flow's next packet is decided again by the pod's current policy, as a new flow (within the \
            kernel tick of the flush, a few ms, a CPU's copy of the flow may still pass it: docs/datapath.md). With --aws the \
            entries go from the AWS agent's table: that changes the agent's state, and needs --yes-change-the-agent.
            """)
    static let confirm = Flag(long: "yes-change-the-agent", help: "With --aws: remove entries from the AWS agent's table.")
    static let arguments = ConntrackArguments.filters + [confirm.definition]

    let parsed: ParsedArguments
    init(parsed: ParsedArguments) { self.parsed = parsed }
    func validate() throws {
        try ConntrackArguments.validate(parsed)
        if parsed[ConntrackArguments.aws], !parsed[Self.confirm] {
            throw UsageError("flushing the AWS agent's conntrack changes its state; add --yes-change-the-agent to do it")
        }
    }

    func run(_ context: CommandContext) throws {
        let removed: Int
        if parsed[ConntrackArguments.aws] {
            let (table, filter) = try ConntrackArguments.openAWS(parsed, context)
            removed = try table.flush(filter)
        } else {
            let (table, filter) = try ConntrackArguments.open(parsed, context)
            removed = try table.flush(filter)
        }
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
    static let arguments = [ConntrackArguments.aws.definition, AWSRoot.option.definition]

    let parsed: ParsedArguments
    init(parsed: ParsedArguments) { self.parsed = parsed }

    func run(_ context: CommandContext) throws {
        let statistics = parsed[ConntrackArguments.aws]
            ? try ConntrackArguments.openAWS(parsed, context).0.statistics()
            : try ConntrackArguments.open(ParsedArguments(), context).0.statistics()
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
