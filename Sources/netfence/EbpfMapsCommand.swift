import BPFKit
import CommandTree
import Foundation
import Inspection

/// `netfence ebpf maps`: the maps on this node, how full they are and who uses them.
struct EbpfMapsCommand: Command {
    static let configuration = CommandConfiguration(
        name: "maps", aliases: ["m"],
        abstract: "List eBPF maps: type, sizes, entries and fill, pins and the programs using them.",
        discussion: """
            By default lists the maps pinned under the bpffs root and the maps netfence's pinned programs use; \
            --all lists every map on the host, and ids list just those. ENTRIES is counted with batch lookups \
            where the map type supports them, else key by key; ring buffers and queues have no entries to count (-), \
            and arrays are never "full" (-). Pins are looked up under the bpffs root and --aws-root: a map the AWS \
            agent pinned shows its pin's name where it has no kernel name, and its pod and direction (AWS POD).
            """,
        subcommands: [EbpfMapsDumpCommand.self])

    static let all = Flag(long: "all", help: "List every map on the host, not only netfence's.")
    static let ids = Positionals<UInt32>(name: "id", help: "Show only the maps with these ids.")
    static let arguments = [all.definition, ids.definition, AWSRoot.option.definition]

    let listAll: Bool
    let mapIDs: [UInt32]
    let awsRoot: String

    init(parsed: ParsedArguments) {
        listAll = parsed[Self.all]
        mapIDs = parsed[Self.ids]
        awsRoot = parsed[AWSRoot.option]
    }

    func validate() throws {
        if listAll, !mapIDs.isEmpty { throw UsageError("--all and map ids exclude each other") }
    }

    func run(_ context: CommandContext) throws {
        if context.naCli != nil {
            try NodeAccess.requirePrivileges(context)
            return context.write(TerminalText.escaped(try NaCliText.maps(), keepingLineBreaks: true))
        }
        let selection = try Listing.selection(context, listAll: listAll, ids: mapIDs)
        let records = try Listing.load("map", context) {
            try LoadedObjects.maps(selection, pinRoot: context.pinRoot.path, otherPinRoots: [awsRoot])
        }
        let headers = ["ID", "TYPE", "NAME", "KEY", "VALUE", "MAX", "ENTRIES", "FILL", "AWS POD", "PINNED", "USED BY"]
        try Listing.print(records.map(MapRow.init), selection: selection, noun: "maps", context: context, headers: headers) { row in
            [String(row.id), row.type, row.displayName, "\(row.keySize)B", "\(row.valueSize)B", String(row.maxEntries),
             row.entries.map(String.init) ?? "-", row.fillPercent.map { String(format: "%.1f%%", $0) } ?? "-", row.aws?.summary ?? "-",
             row.pinned.isEmpty ? "-" : row.pinned.joined(separator: ","), Format.ids(row.programIDs)]
        }
    }
}

/// One map as `-o json` prints it; the field names are a stable interface.
struct MapRow: Encodable {
    let id: UInt32
    let type: String
    let name: String
    let keySize: UInt32
    let valueSize: UInt32
    let maxEntries: UInt32
    let flags: UInt32
    let entries: Int?
    let fillPercent: Double?
    let pinned: [String]
    let programIDs: [UInt32]
    /// The AWS agent's object this is, from its pin.
    let aws: AWSPinLabel?

    /// The kernel name, else (a nameless map) the name of the AWS agent's pin.
    var displayName: String { name.isEmpty ? aws?.object ?? "-" : name }

    init(_ record: MapRecord) {
        id = record.info.id
        type = record.info.type.description
        name = record.info.name
        keySize = record.info.keySize
        valueSize = record.info.valueSize
        maxEntries = record.info.maxEntries
        flags = record.info.flags
        entries = record.entries
        fillPercent = record.fillPercent.map { ($0 * 10).rounded() / 10 }
        pinned = record.pins
        programIDs = record.programIDs
        aws = AWSPinLabel(pins: record.pins)
    }
}
