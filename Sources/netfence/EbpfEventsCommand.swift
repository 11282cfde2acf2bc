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
        subcommands: [EbpfEventsLevelCommand.self, EbpfEventsCaptureCommand.self])

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
                case .suppressed(let report):
                    if let pod = filter.pod, report.pod != pod { return }
                    if json {
                        writer.appendSuppressed(report)
                    } else {
                        text += EventLine.suppressed(report, colored: colored) + "\n"
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

/// `netfence ebpf events level [none|deny|all|node] [--pod NS/NAME] [--rate R/s] [--node-rate R/s]`.
struct EbpfEventsLevelCommand: Command {
    static let configuration = CommandConfiguration(
        name: "level",
        abstract: "Show or choose which verdicts the datapath reports (none, deny, all), per node or pod, and its event rate limits.",
        discussion: """
            Without a level, prints the current ones. With --pod, the level applies to that pod only (debugging one \
            workload while the node stays at deny); the level node makes the pod follow the node's again. A new pod \
            follows the node's level.

            --rate limits events to R a second per pod and direction; --node-rate limits them for the whole node; \
            none removes a limit. The limits live in the datapath, before the ring: a flood from one pod cannot fill \
            the ring and push out the others' events. What a limit holds back is counted per pod, direction and \
            verdict and reported: SUPPRESSED lines in ebpf events (every 10 s), netfence_events_suppressed_total in \
            metrics, the SUPPRESSED column of loader status. Nothing is dropped silently.
            """)

    static let level = Positionals<LevelArgument>(name: "level", help: "none, deny or all (node: with --pod, follow the node's); leave out to show.")
    static let pod = Option<PodReference?>(long: "pod", help: "Set the level of this pod only (NAMESPACE/NAME).", default: nil, showDefault: false)
    static let rate = Option<EventRate?>(long: "rate", help: "At most this many events a second per pod and direction (none: no limit).",
                                         default: nil, showDefault: false)
    static let nodeRate = Option<EventRate?>(long: "node-rate", help: "At most this many events a second for the node (none: no limit).",
                                             default: nil, showDefault: false)
    static let arguments = ([level, pod, rate, nodeRate] as [any ArgumentDefining]).map(\.definition)

    let parsed: ParsedArguments
    init(parsed: ParsedArguments) { self.parsed = parsed }

    func validate() throws {
        let levels = parsed[Self.level]
        if levels.count > 1 { throw UsageError("give one level: none, deny or all") }
        if levels.first == .node && parsed[Self.pod] == nil { throw UsageError("the level node needs --pod: the node's own level is none, deny or all") }
        if parsed[Self.pod] != nil && levels.isEmpty && (parsed[Self.rate] != nil || parsed[Self.nodeRate] != nil) {
            throw UsageError("--pod sets a pod's level; rates are the node's (leave out --pod)")
        }
    }

    /// What `-o json` prints: the levels and limits now, and the node's level before when it changed.
    struct Report: Encodable {
        let eventLevel: String
        let previous: String?
        let pods: [PodLevel]
        let podEventRate: UInt32?
        let nodeEventRate: UInt32?
    }

    struct PodLevel: Encodable {
        let pod: String
        let eventLevel: String
    }

    func run(_ context: CommandContext) throws {
        let level = parsed[Self.level].first
        let changing = level != nil || parsed[Self.rate] != nil || parsed[Self.nodeRate] != nil
        let loader = try changing ? LoaderAccess.openForChanges(context) : LoaderAccess.open(context)
        var previous: EventLevel?
        if let pod = parsed[Self.pod], let level {
            if case .level(let chosen) = level { try loader.setEventLevel(chosen, for: pod) } else { try loader.setEventLevel(nil, for: pod) }
        } else if changing {
            let before = try loader.changeSettings { settings in
                if case .level(let chosen) = level { settings.eventLevel = chosen }
                if let rate = parsed[Self.rate] { settings.podEventRate = rate.perSecond }
                if let rate = parsed[Self.nodeRate] { settings.nodeEventRate = rate.perSecond }
            }
            if level != nil { previous = before.eventLevel }
        }
        let settings = try loader.datapath.readSettings()
        let pods = try loader.ownEventLevels().sorted { $0.key < $1.key }
        switch context.outputFormat {
        case .json:
            context.print(try JSONOutput.encode(Report(eventLevel: settings.eventLevel.description, previous: previous?.description,
                                                       pods: pods.map { PodLevel(pod: $0.key.description, eventLevel: $0.value.description) },
                                                       podEventRate: settings.podEventRate, nodeEventRate: settings.nodeEventRate)))
        case .table:
            func words(_ level: EventLevel) -> String { level == .none ? "no verdicts" : level == .deny ? "denies" : "every verdict" }
            var lines = ["The datapath \(previous == nil ? "" : "now ")reports \(words(settings.eventLevel)) (level \(settings.eventLevel)"
                         + (previous.map { "; was \($0)" } ?? "") + ")" + (pods.isEmpty ? "" : " for pods without their own level")]
            lines += pods.map { "\(TerminalText.escaped($0.key.description)): \(words($0.value)) (level \($0.value))" }
            func limit(_ rate: UInt32?) -> String { rate.map { "\($0) events/s" } ?? "none" }
            lines.append("Rate limits: \(limit(settings.podEventRate)) per pod and direction, \(limit(settings.nodeEventRate)) for the node")
            context.print(lines.joined(separator: "\n"))
        }
    }
}

/// `netfence ebpf events capture [--snaplen N] [--verdict deny|all]`.
struct EbpfEventsCaptureCommand: Command {
    static let configuration = CommandConfiguration(
        name: "capture",
        abstract: "Show or choose how much of each event's packet the datapath captures (ebpf events --pcap writes them).",
        discussion: """
            The datapath copies the first --snaplen bytes of the packet (from its Ethernet header; 0 turns capture off, \
            at most \(DatapathSettings.maxSnaplen)) into the event of each denied packet (and audit events), or of every \
            event with --verdict all. A new node captures 128 bytes of denied packets. Which events exist at all is the \
            event level's choice (ebpf events level). Without options, prints the current settings.
            """)

    static let snaplen = Option<Int?>(long: "snaplen", valueName: "bytes", help: "Bytes of each packet to capture (0: none).", default: nil,
                                      showDefault: false)
    static let verdict = Option<CaptureVerdicts?>(long: "verdict", help: "Capture the packets of denied events (deny) or of every event (all).",
                                                  default: nil, showDefault: false)
    static let arguments = ([snaplen, verdict] as [any ArgumentDefining]).map(\.definition)

    let parsed: ParsedArguments
    init(parsed: ParsedArguments) { self.parsed = parsed }

    func validate() throws {
        if let snaplen = parsed[Self.snaplen], !(0...DatapathSettings.maxSnaplen).contains(snaplen) {
            throw UsageError("--snaplen must be from 0 to \(DatapathSettings.maxSnaplen)")
        }
    }

    struct Report: Encodable {
        let snaplen: Int
        let verdict: String
    }

    func run(_ context: CommandContext) throws {
        let changing = parsed[Self.snaplen] != nil || parsed[Self.verdict] != nil
        let loader = try changing ? LoaderAccess.openForChanges(context) : LoaderAccess.open(context)
        if changing {
            try loader.changeSettings { settings in
                if let snaplen = parsed[Self.snaplen] { settings.snaplen = snaplen }
                if let verdict = parsed[Self.verdict] { settings.captureVerdicts = verdict }
            }
        }
        let settings = try loader.datapath.readSettings()
        switch context.outputFormat {
        case .json: context.print(try JSONOutput.encode(Report(snaplen: settings.snaplen, verdict: settings.captureVerdicts.description)))
        case .table:
            context.print(settings.snaplen == 0 ? "The datapath captures no packets (snaplen 0)"
                : "The datapath captures the first \(settings.snaplen) bytes of "
                    + (settings.captureVerdicts == .all ? "every event's packet" : "each denied packet (and audit events')"))
        }
    }
}
