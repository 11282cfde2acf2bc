import BPFKit
import CommandTree
import Datapath
import DatapathModel
import Events
import Foundation
import Glibc
import HostKit
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
            Reads the pinned event rings (one per CPU, merged by time). Each event: wall-clock time, pod and interface, direction, \
            source → destination with protocol, verdict, tier, the policy that decided (the PolicyEndpoint's \
            policyRef or the cluster policy's name, and the rule index; "default" when the pod default decided) and bytes.

            By default drains what is there and exits; --follow waits for more until SIGINT or SIGTERM; --count \
            waits until N events have printed (or SIGINT/SIGTERM). Filters combine with AND. -o json prints JSON Lines; \
            --fields keeps only the named fields of each line.

            Events the datapath could not write (their CPU's ring was full) are counted; the next reader reports them as \
            a LOST line (a {"lost": N} object in JSON), at most once a second, never silently. Events the rate limits \
            held back (ebpf events level --rate) are reported as SUPPRESSED lines ({"suppressed": {...}}) per pod and \
            direction, every 10 s.

            --pcap FILE writes the captured packets of the events (ebpf events capture) as pcapng, for tcpdump, tshark \
            or Wireshark: an interface per host veth, each packet with its original length, its time and a comment \
            naming pod, direction, verdict, tier, policy and rule. --pcap - writes it to standard output (netfence \
            ebpf events --follow --pcap - | tcpdump -r -); losses and suppressions then go to standard error. The file \
            is created with mode 0600: packets can hold secrets.

            --output-file PATH appends the events as JSON Lines to PATH instead of standard output, rotated when PATH \
            would exceed --max-size (PATH.1 the newest rotated file, up to PATH.N for --max-files N) and opened anew \
            on SIGHUP (logrotate's convention). Each event is written once: a restarted reader continues with the next \
            event (the rings keep what no reader confirmed; .PATH.cursor beside the log records what is in it), and what \
            the datapath could not keep meanwhile is a LOST line. A rotated file is fsync'd; a killed process loses \
            nothing it wrote, a power loss may lose the current file's lines since its last rotation.

            Readers do not split the events: a flow log (--output-file) is the rings' one \
            consumer (a second one is refused), and every other reader watches beside it, \
            seeing every event and taking none (one that falls a whole ring behind says \
            SKIPPED, {"skipped": N} in JSON). With no flow log running, a reader gives \
            back what it read, and the next reader starts after it.

            --aws reads the AWS network-policy agent's ring (global_policy_events under --aws-root) on an EKS node, \
            with the same filters and output; --pod takes NAMESPACE/NAME and matches the agent's pod identifier. \
            Its records carry no time (netfence shows when it read them), no rule (policy "aws-agent"), no packet and no \
            loss count (the agent counts no ring failures). If the agent itself reads the ring (its policy event logs \
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
    static let port = Option<UInt16?>(long: "port", help: "Only events with either port equal to this.", default: nil, showDefault: false)
    static let proto = Option<ProtocolArgument?>(long: "proto", help: "Only this protocol (tcp, udp, sctp, icmp, icmpv6, or a number).",
                                                 default: nil, showDefault: false)
    static let tier = Option<Tier?>(long: "tier", help: "Only decisions of this tier.", default: nil, showDefault: false)
    static let policy = Option<String?>(long: "policy", valueName: "name", help: "Only decisions of this policy (namespace/name, or a cluster policy's name).",
                                        default: nil, showDefault: false)
    static let color = Option<ColorChoice>(long: "color", help: "Color verdicts: auto (on a terminal), always, never.", default: .auto)
    static let noHeaders = Flag(long: "no-headers", help: "Leave out the table's header line.")
    static let pcap = Option<String?>(long: "pcap", valueName: "file", help: "Write the events' captured packets as pcapng to FILE (-: standard output).",
                                      default: nil, showDefault: false)
    static let outputFile = Option<String?>(long: "output-file", valueName: "path", help: "Append the events as JSON Lines to PATH, rotated by size.",
                                            default: nil, showDefault: false)
    static let maxSize = Option<ByteSize>(long: "max-size", help: "Rotate the output file before it would exceed this size.",
                                          default: ByteSize(bytes: 100 << 20))
    static let maxFiles = Option<Int>(long: "max-files", help: "Rotated output files kept (PATH.1 ... PATH.N).", default: 5)
    static let fields = Option<EventFieldList?>(long: "fields", help: "Only these fields of each JSON line (comma-separated).", default: nil,
                                                showDefault: false)
    static let aws = Flag(long: "aws", help: "Read the AWS network-policy agent's event ring instead of netfence's.")
    static let arguments = ([follow, count, pod, namespace, verdict, direction, ip, port, proto, tier, policy, color, noHeaders, pcap, outputFile,
                             maxSize, maxFiles, fields, aws, AWSRoot.option] as [any ArgumentDefining])
        .map(\.definition)

    let parsed: ParsedArguments
    init(parsed: ParsedArguments) { self.parsed = parsed }

    func validate() throws {
        if let count = parsed[Self.count], count < 1 { throw UsageError("--count must be at least 1") }
        if parsed[Self.aws] && parsed[Self.pcap] != nil { throw UsageError("--pcap needs captures: the AWS agent's events carry no packet") }
        if parsed[Self.aws] && parsed[Self.outputFile] != nil { throw UsageError("--output-file writes netfence's events (leave out --aws)") }
        if parsed[Self.outputFile] != nil && parsed[Self.pcap] == "-" {
            throw UsageError("--pcap - and --output-file both take over the output: write the pcap to a file")
        }
        if !(1...1000).contains(parsed[Self.maxFiles]) { throw UsageError("--max-files must be from 1 to 1000") }
        if parsed[Self.outputFile] == nil && (!parsed.all(Self.maxSize).isEmpty || !parsed.all(Self.maxFiles).isEmpty) {
            throw UsageError("--max-size and --max-files rotate the file of --output-file")
        }
        for path in [parsed[Self.pcap], parsed[Self.outputFile]].compactMap({ $0 }) where path != "-" && path.isEmpty {
            throw UsageError("a file path is empty")
        }
    }

    var filter: EventFilter {
        var filter = EventFilter()
        // The AWS agent names pods by its pod identifier (`client-7c79c4bf97@default`).
        filter.pod = parsed[Self.pod].map { parsed[Self.aws] ? AWSAgent.podIdentifier(namespace: $0.namespace, name: $0.name) : $0.description }
        filter.namespace = parsed[Self.namespace]
        filter.verdict = parsed[Self.verdict]
        filter.direction = parsed[Self.direction]
        filter.prefix = parsed[Self.ip]
        filter.port = parsed[Self.port]
        filter.protocolNumber = parsed[Self.proto]?.number
        filter.tier = parsed[Self.tier]
        filter.policy = parsed[Self.policy]
        return filter
    }

    func run(_ context: CommandContext) throws {
        if parsed[Self.fields] != nil, parsed[Self.outputFile] == nil, context.outputFormat != .json {
            throw UsageError("--fields selects fields of JSON lines: add -o json or --output-file")
        }
        let stream: VerdictSource
        var netfence: EventStream?
        var root: PinRoot?
        var consumerLock: FileLock?
        defer { withExtendedLifetime(consumerLock) {} }
        if parsed[Self.aws] {
            try NodeAccess.requirePrivileges(context)
            let agent = try AWSEventStream(awsRoot: parsed[AWSRoot.option])
            if !agent.otherReaders.isEmpty {
                context.warn("\(agent.otherReaders.joined(separator: ", ")) also reads the agent's event ring: each event reaches only one reader")
            }
            stream = agent
        } else {
            let loader = try LoaderAccess.open(context)
            root = loader.root
            // A flow log gives back only what it made durable: it is the rings' one consumer, and every
            // other reader watches beside it (sees every event, takes none).
            if parsed[Self.outputFile] != nil {
                do {
                    consumerLock = try loader.lockEventConsumer(timeout: 2)
                } catch {
                    guard case .timedOut = error else { throw error }
                    throw RuntimeError("another reader consumes the events under \(loader.root.path): \(error)",
                                       hint: "one --output-file reader per node; 'netfence ebpf events' without it watches beside that one")
                }
            }
            netfence = try EventStream(loader: loader, watching: parsed[Self.outputFile] == nil)
            netfence?.keepsPackets = parsed[Self.pcap] != nil
            stream = netfence!
            if parsed[Self.pcap] != nil, try loader.datapath.readSettings().snaplen == 0 {
                context.warn("the datapath captures no packets (snaplen 0): turn capture on with 'netfence ebpf events capture --snaplen 128'")
            }
        }
        let output = try EventOutput(parsed: parsed, context: context, stream: netfence, longestPodName: stream.longestPodName)
        let following = parsed[Self.follow]
        let limit = parsed[Self.count]
        let filter = filter
        if following || limit != nil { StopSignals.install() }
        if output.flowLog != nil { StopSignals.installReopen() }
        var printed = 0
        // Each drain's lines go out in one write: a write per line would cap the log far below the datapath's rate.
        // Following, a flow log's drain blocks in the kernel until a quarter of a CPU's ring waits or a quarter second
        // passes (the datapath wakes no reader for each event; the wait also notices a stop); a watcher's looks every 50 ms.
        let waiting = following || limit != nil
        var first = true
        defer { output.finish() }
        while true {
            if reopenRequested != 0 {
                reopenRequested = 0
                try output.flowLog?.reopen()
            }
            let visit = { (item: EventItem) throws in
                if let limit, printed >= limit { return }
                switch item {
                case .lost(let count): try output.lost(count)
                case .skipped(let count): try output.skipped(atMost: count)
                case .suppressed(let report):
                    if let pod = filter.pod, report.pod != pod { return }
                    try output.suppressed(report)
                case .event(let event):
                    guard filter.matches(event) else { return }
                    try output.event(event, endingAt: netfence?.recordEnd)
                    printed += 1
                }
            }
            let wait = waiting && !first ? DatapathLimits.eventReaderPollSeconds : nil
            if let netfence, output.flowLog != nil {
                // The rings give the records back only once the log has them.
                try netfence.read(lossInterval: 1, waitingUpTo: wait, visit)
                try output.flush()
                try netfence.commit()
            } else {
                try stream.drain(lossInterval: 1, waitingUpTo: wait, visit)
                try output.flush()
            }
            first = false
            if let limit, printed >= limit { return }
            if !waiting || stopRequested != 0 || context.outputReaderGone { return }
            // A reset removes the rings' pin: the map lives on while this reader holds it, but nothing writes it any more.
            if let root, !root.exists { throw LoaderError.notInitialized(root: root.path) }
        }
    }
}

/// Where `ebpf events` writes: lines on standard output (a table or JSON), or a
/// rotated JSON Lines file; and captured packets as pcapng, to a file or to
/// standard output (then reports go to standard error).
final class EventOutput {
    let context: CommandContext
    let json: Bool
    let colored: Bool
    let lines: EventLine
    let writer: EventJSONWriter
    var text = ""
    /// Lines go to standard output (not when it carries the pcap, or with a flow log).
    let linesOnStandardOutput: Bool
    let flowLog: FlowLogFile?
    let pcap: PcapngWriter?
    let pcapFile: FileDescriptor?
    let pcapPath: String?

    /// `stream`: netfence's, whose rings a flow log follows (nil for the AWS agent's).
    init(parsed: ParsedArguments, context: CommandContext, stream: EventStream?, longestPodName: Int) throws {
        self.context = context
        let pcapPath = parsed[EbpfEventsCommand.pcap]
        let outputPath = parsed[EbpfEventsCommand.outputFile]
        json = context.outputFormat == .json || outputPath != nil
        colored = switch parsed[EbpfEventsCommand.color] {
        case .always: true
        case .never: false
        case .auto: !json && isatty(STDOUT_FILENO) == 1
        }
        writer = EventJSONWriter(fields: parsed[EbpfEventsCommand.fields]?.fields)
        lines = EventLine(longestPodName: longestPodName)
        linesOnStandardOutput = pcapPath != "-" && outputPath == nil
        if let outputPath, let stream {
            let log = try FlowLogFile(path: outputPath, maxBytes: parsed[EbpfEventsCommand.maxSize].bytes,
                                      maxFiles: parsed[EbpfEventsCommand.maxFiles], ringID: stream.ringID, start: stream.committedPosition)
            if let resume = log.resumePosition { _ = stream.skip(to: resume) }
            flowLog = log
        } else {
            flowLog = nil
        }
        if let pcapPath {
            pcap = PcapngWriter()
            pcapFile = pcapPath == "-" ? nil : try FileDescriptor(creating: pcapPath, operation: "write the pcap")
            self.pcapPath = pcapPath
        } else {
            pcap = nil
            pcapFile = nil
            self.pcapPath = nil
        }
        if linesOnStandardOutput && !json && !parsed[EbpfEventsCommand.noHeaders] {
            text = lines.header + "\n"
        }
        try flush()  // the pcap's section header at once: a reader (tcpdump -r -) waits for it
    }

    func lost(_ count: UInt64) throws {
        try report(json: { $0.appendLost(count) }, line: { EventLine.lost(count, colored: $0) })
    }

    func skipped(atMost count: UInt64) throws {
        try report(json: { $0.appendSkipped(count) }, line: { EventLine.skipped(atMost: count, colored: $0) })
    }

    func suppressed(_ report: SuppressedEvents) throws {
        try self.report(json: { $0.appendSuppressed(report) }, line: { EventLine.suppressed(report, colored: $0) })
    }

    /// A loss or suppression report: a line with the others, or in the flow log at once (its count is marked
    /// reported when this returns), or on standard error when standard output carries the pcap.
    private func report(json: (EventJSONWriter) -> Void, line: (_ colored: Bool) -> String) throws {
        if linesOnStandardOutput {
            if self.json { json(writer) } else { text += line(colored) + "\n" }
        } else if let flowLog {
            json(writer)
            try writer.flush { try flowLog.append($0, endingAt: nil) }
            try flowLog.write()
        } else {
            context.warn(line(false))
        }
    }

    func event(_ event: DecodedEvent, endingAt mark: EventRingMark?) throws {
        pcap?.append(event)
        if let flowLog {
            writer.append(event)
            try writer.flush { try flowLog.append($0, endingAt: mark) }
        } else if linesOnStandardOutput {
            if json { writer.append(event) } else { text += lines.text(event, colored: colored) + "\n" }
        }
    }

    /// Writes what the last drain produced.
    func flush() throws {
        try flowLog?.write()
        if linesOnStandardOutput {
            writer.flush(to: context.write(bytes:))
            if !text.isEmpty { context.write(text) }
            text = ""
        }
        try pcap?.flush { bytes in
            if let pcapFile { try pcapFile.writeAll(bytes, path: pcapPath ?? "") } else { context.write(bytes: bytes) }
        }
    }

    /// At the end: what is pending is written, the log made durable, and events without a packet counted.
    func finish() {
        try? flowLog?.close()
        if let pcap, pcap.withoutPacket > 0 {
            context.warn("\(pcap.withoutPacket) event(s) carried no packet and are not in the pcap "
                         + "(the datapath captures denied packets; 'netfence ebpf events capture --verdict all' captures every event's)")
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
