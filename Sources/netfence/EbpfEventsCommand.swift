import BPFKit
import CommandTree
import DatapathModel
import Events
import Foundation
import Glibc
import Loader

enum ColorChoice: String, CaseIterable, ArgumentValue {
    case auto, always, never
    static var defaultValueName: String { "when" }
}

/// `netfence ebpf events`: the verdict log, decoded and attributed.
struct EbpfEventsCommand: Command {
    static let configuration = CommandConfiguration(
        name: "events",
        abstract: "Show the datapath's verdict events: who, what, which policy decided.",
        discussion: """
            Reads the pinned event ring buffer. Each event: wall-clock time, pod and interface, direction, \
            source → destination with protocol, verdict, tier, the policy that decided (the PolicyEndpoint's \
            policyRef or the cluster policy's name, and the rule index; "default" when the pod default decided) and bytes.

            By default drains what is there and exits; --follow waits for more until SIGINT or SIGTERM; --count \
            waits until N events have printed (or SIGINT/SIGTERM). Filters combine with AND. -o json prints JSON Lines.

            Events the datapath could not write (the ring was full) are counted; the next reader reports them as \
            a LOST line (a {"lost": N} object in JSON), at most once a second, never silently.

            The ring buffer has one consumer at a time: two readers split the events between them.

            --aws reads the AWS network-policy agent's ring (global_policy_events under --aws-root) on an EKS node, \
            with the same filters and output; --pod takes NAMESPACE/NAME and matches the agent's pod identifier. \
            Its records carry no time (netfence shows when it read them), no rule (policy "aws-agent") and no loss \
            count (the agent counts no ring failures). If the agent itself reads the ring (its policy event logs \
            are on), each event reaches only one of the two readers: netfence says so when another process holds \
            the ring.
            """,
        subcommands: [EbpfEventsLevelCommand.self])

    static let follow = Flag(short: "f", long: "follow", help: "Keep reading until SIGINT or SIGTERM.")
    static let count = Option<Int?>(long: "count", help: "Stop after this many events.", default: nil, showDefault: false)
    static let pod = Option<PodReference?>(long: "pod", help: "Only this pod (NAMESPACE/NAME).", default: nil, showDefault: false)
    static let namespace = Option<String?>(long: "namespace", valueName: "name", help: "Only pods in this namespace.", default: nil, showDefault: false)
    static let verdict = Option<Verdict?>(long: "verdict", help: "Only allows or denies.", default: nil, showDefault: false)
    static let direction = Option<Direction?>(long: "direction", help: "Only ingress or egress.", default: nil, showDefault: false)
    static let ip = Option<IPPrefix?>(long: "ip", help: "Only events with either end in this CIDR.", default: nil, showDefault: false)
    static let port = Option<UInt32?>(long: "port", help: "Only events with either port equal to this.", default: nil, showDefault: false)
    static let proto = Option<ProtocolArgument?>(long: "proto", help: "Only this protocol (tcp, udp, sctp, icmp, icmpv6, or a number).",
                                                 default: nil, showDefault: false)
    static let tier = Option<Tier?>(long: "tier", help: "Only decisions of this tier.", default: nil, showDefault: false)
    static let policy = Option<String?>(long: "policy", valueName: "name", help: "Only decisions of this policy (namespace/name, or a cluster policy's name).",
                                        default: nil, showDefault: false)
    static let color = Option<ColorChoice>(long: "color", help: "Color verdicts: auto (on a terminal), always, never.", default: .auto)
    static let noHeaders = Flag(long: "no-headers", help: "Leave out the table's header line.")
    static let aws = Flag(long: "aws", help: "Read the AWS network-policy agent's event ring instead of netfence's.")
    static let arguments = ([follow, count, pod, namespace, verdict, direction, ip, port, proto, tier, policy, color, noHeaders, aws,
                             AWSRoot.option] as [any ArgumentDefining])
        .map(\.definition)

    let parsed: ParsedArguments
    init(parsed: ParsedArguments) { self.parsed = parsed }

    func validate() throws {
        if let count = parsed[Self.count], count < 1 { throw UsageError("--count must be at least 1") }
        if let port = parsed[Self.port], port > 65535 { throw UsageError("--port must be from 0 to 65535") }
    }

    var filter: EventFilter {
        var filter = EventFilter()
        // The AWS agent names pods by its pod identifier (`client-7c79c4bf97@default`).
        filter.pod = parsed[Self.pod].map { parsed[Self.aws] ? AWSAgent.podIdentifier(namespace: $0.namespace, name: $0.name) : $0.description }
        filter.namespace = parsed[Self.namespace]
        filter.verdict = parsed[Self.verdict]
        filter.direction = parsed[Self.direction]
        filter.prefix = parsed[Self.ip]
        filter.port = parsed[Self.port].map { UInt16($0) }
        filter.protocolNumber = parsed[Self.proto]?.number
        filter.tier = parsed[Self.tier]
        filter.policy = parsed[Self.policy]
        return filter
    }

    func run(_ context: CommandContext) throws {
        let stream: VerdictSource
        if parsed[Self.aws] {
            try NodeAccess.requirePrivileges(context)
            let agent = try AWSEventStream(awsRoot: parsed[AWSRoot.option])
            if !agent.otherReaders.isEmpty {
                context.warn("\(agent.otherReaders.joined(separator: ", ")) also reads the agent's event ring: each event reaches only one reader")
            }
            stream = agent
        } else {
            stream = try EventStream(loader: LoaderAccess.open(context))
        }
        let json = context.outputFormat == .json
        let colored = switch parsed[Self.color] {
        case .always: true
        case .never: false
        case .auto: !json && isatty(STDOUT_FILENO) == 1
        }
        let following = parsed[Self.follow]
        let limit = parsed[Self.count]
        let filter = filter
        if following || limit != nil { StopSignals.install() }
        var printed = 0
        let writer = EventJSONWriter()
        let lines = EventLine(longestPodName: stream.longestPodName)
        var text = json || parsed[Self.noHeaders] ? "" : lines.header + "\n"
        // Each drain's lines go out in one write: a write per line would cap the log far below the datapath's rate.
        // Following, a drain blocks in the kernel until events come (or a quarter second passes, to notice a stop).
        let waiting = following || limit != nil
        var first = true
        while true {
            try stream.drain(lossInterval: 1, waitingUpTo: waiting && !first ? 0.25 : nil) { item in
                if let limit, printed >= limit { return }
                switch item {
                case .lost(let count):
                    if json {
                        writer.appendLost(count)
                    } else {
                        text += EventLine.lost(count, colored: colored) + "\n"
                    }
                case .event(let event):
                    guard filter.matches(event) else { return }
                    if json {
                        writer.append(event)
                    } else {
                        text += lines.text(event, colored: colored) + "\n"
                    }
                    printed += 1
                }
            }
            writer.flush(to: context.write(bytes:))
            if !text.isEmpty { context.write(text) }
            text = ""
            first = false
            if let limit, printed >= limit { return }
            if !waiting || stopRequested != 0 || context.outputReaderGone { return }
        }
    }
}

/// `netfence ebpf events level [none|deny|all]`.
struct EbpfEventsLevelCommand: Command {
    static let configuration = CommandConfiguration(
        name: "level",
        abstract: "Show or choose which verdicts the datapath reports: none, deny or all (no reload).",
        discussion: "Without a level, prints the current one.")

    static let level = Positionals<EventLevel>(name: "level", help: "none, deny or all; leave out to show the current level.")
    static let arguments = [level.definition]

    let levels: [EventLevel]
    init(parsed: ParsedArguments) { levels = parsed[Self.level] }

    func validate() throws {
        if levels.count > 1 { throw UsageError("give one level: none, deny or all") }
    }

    /// What `-o json` prints: the level now, and the one before when it changed.
    struct Report: Encodable {
        let eventLevel: String
        let previous: String?
    }

    func run(_ context: CommandContext) throws {
        let loader = try LoaderAccess.open(context)
        let before = try loader.datapath.eventLevel()
        if let level = levels.first { try loader.datapath.setEventLevel(level) }
        let now = levels.first ?? before
        switch context.outputFormat {
        case .json:
            context.print(try JSONOutput.encode(Report(eventLevel: now.description, previous: levels.isEmpty ? nil : before.description)))
        case .table:
            let words = now == .none ? "no verdicts" : now == .deny ? "denies" : "every verdict"
            context.print(levels.isEmpty ? "The datapath reports \(words) (level \(now))" : "The datapath now reports \(words) (level \(now); was \(before))")
        }
    }
}
