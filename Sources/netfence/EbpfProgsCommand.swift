import BPFKit
import CommandTree
import Foundation
import HostKit
import Inspection

/// `netfence ebpf progs`: the programs on this node, where they are pinned and attached.
struct EbpfProgsCommand: Command {
    static let configuration = CommandConfiguration(
        name: "progs", aliases: ["p"],
        abstract: "List eBPF programs: type, name, tag, load time, maps and attachments.",
        discussion: """
            By default lists the programs pinned under the bpffs root; --all lists every program on the host, \
            and ids list just those. ATTACHED names each interface and hook a program is on (tc ingress/egress, \
            XDP), as IFACE@NETNS, across the host's network namespaces.

            --stats enables the kernel's run-time statistics (BPF_ENABLE_STATS) only while the command runs: it \
            holds them on for --stats-window seconds so traffic in that window is counted, then shows each \
            program's run count and average ns per run. Runs outside any such window are not counted.
            """)

    static let all = Flag(long: "all", help: "List every program on the host, not only netfence's.")
    static let stats = Flag(long: "stats", help: "Add run count and average ns per run.")
    static let statsWindow = Option<Double>(
        long: "stats-window", valueName: "seconds", help: "How long --stats counts runs before printing.", default: 1)
    static let ids = Positionals<UInt32>(name: "id", help: "Show only the programs with these ids.")
    static let arguments = [all.definition, stats.definition, statsWindow.definition, ids.definition, AWSRoot.option.definition]

    let listAll: Bool
    let withStats: Bool
    let window: Double
    let programIDs: [UInt32]
    let awsRoot: String

    init(parsed: ParsedArguments) {
        awsRoot = parsed[AWSRoot.option]
        listAll = parsed[Self.all]
        withStats = parsed[Self.stats]
        window = parsed[Self.statsWindow]
        programIDs = parsed[Self.ids]
    }

    func validate() throws {
        if listAll, !programIDs.isEmpty { throw UsageError("--all and program ids exclude each other") }
        if !(0...3600).contains(window) { throw UsageError("--stats-window must be between 0 and 3600 seconds") }
    }

    func run(_ context: CommandContext) throws {
        if context.naCli != nil {
            try NodeAccess.requirePrivileges(context)
            return context.write(TerminalText.escaped(try NaCliText.programs(), keepingLineBreaks: true))
        }
        let selection = try Listing.selection(context, listAll: listAll, ids: programIDs)
        var session: StatisticsSession?
        if withStats {
            session = try StatisticsSession()
            Thread.sleep(forTimeInterval: window)
        }
        let records = try Listing.load("program", context) {
            try LoadedObjects.programs(selection, pinRoot: context.pinRoot.path, otherPinRoots: [awsRoot])
        }
        withExtendedLifetime(session) {}
        let headers = ["ID", "TYPE", "NAME", "TAG", "LOADED", "MAPS", "AWS POD", "ATTACHED"] + (withStats ? ["RUNS", "AVG NS"] : [])
        try Listing.print(records.map { ProgramRow($0, withStats: withStats) }, selection: selection, noun: "programs",
                          context: context, headers: headers) { row in
            let attached = row.attachments.map(\.summary).joined(separator: ", ")
            return [String(row.id), row.type, row.displayName, row.tag, Format.time(row.loadedAt), Format.ids(row.mapIDs),
                    row.aws?.summary ?? "-", attached.isEmpty ? "-" : attached]
                + (withStats ? [row.runCount.map(String.init) ?? "-", row.averageNanoseconds.map(String.init) ?? "-"] : [])
        }
    }
}

/// One program as `-o json` prints it; the field names are a stable interface.
struct ProgramRow: Encodable {
    let id: UInt32
    let type: String
    let name: String
    let tag: String
    let loadedAt: Date
    let ownerUID: UInt32
    let mapIDs: [UInt32]
    /// Instructions the verifier processed loading it (nil: a kernel before 5.16 does not say).
    let verifiedInstructions: UInt32?
    let translatedBytes: UInt32
    let jitedBytes: UInt32
    let pinned: [String]
    let attachments: [ProgramAttachment]
    let runCount: UInt64?
    let runTimeNanoseconds: UInt64?
    let averageNanoseconds: UInt64?
    /// The AWS agent's program this is, from its pin.
    let aws: AWSPinLabel?

    /// The kernel name, else (a nameless program) the name of the AWS agent's pin.
    var displayName: String { name.isEmpty ? aws?.object ?? "-" : name }

    init(_ record: ProgramRecord, withStats: Bool) {
        let info = record.info
        id = info.id
        type = info.type.description
        name = info.name
        tag = info.tag
        loadedAt = HostClock.boot.date(info.loadTimeNanoseconds)
        ownerUID = info.ownerUID
        mapIDs = info.mapIDs
        verifiedInstructions = info.verifiedInstructions > 0 ? info.verifiedInstructions : nil
        translatedBytes = info.translatedBytes
        jitedBytes = info.jitedBytes
        pinned = record.pins
        attachments = record.attachments
        runCount = withStats ? info.runCount : nil
        runTimeNanoseconds = withStats ? info.runTimeNanoseconds : nil
        averageNanoseconds = withStats && info.runCount > 0 ? info.runTimeNanoseconds / info.runCount : nil
        aws = AWSPinLabel(pins: record.pins)
    }
}
