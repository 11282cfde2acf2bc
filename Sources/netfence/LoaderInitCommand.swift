import CommandTree
import DatapathModel
import Loader

/// `netfence loader init`: mount bpffs, load the programs once, pin the maps.
struct LoaderInitCommand: Command {
    static let configuration = CommandConfiguration(
        name: "init",
        abstract: "Mount bpffs if needed, load the datapath once and pin its maps and programs.",
        discussion: """
            Idempotent. Pinned maps that match this netfence are reused with their entries (conntrack and counters \
            survive); a pinned map that does not match is refused with what differs, unless --migrate replaces it \
            (its entries are lost). Programs are loaded anew and their pins replaced atomically.
            """)

    static let migrate = Flag(long: "migrate", help: "Replace pinned maps that do not match this netfence (their entries are lost).")
    static let arguments = [migrate.definition, LockWait.timeout.definition]

    let migrate: Bool
    let timeout: Double
    init(parsed: ParsedArguments) {
        migrate = parsed[Self.migrate]
        timeout = parsed[LockWait.timeout]
    }

    func run(_ context: CommandContext) throws {
        try NodeAccess.requirePrivileges(context)
        try NodeAccess.prepareBPFFilesystem(context)
        let (loader, report) = try Loader.initialize(root: context.pinRoot, migrate: migrate, waitingUpTo: timeout)
        let summary = InitSummary(root: context.pinRoot.path, programIDs: try loader.programIDs(), reused: report.maps.reused.sorted(), created: report.maps.created.sorted(), migrated: report.maps.migrated.sorted(),
           reattached: report.reattached)
        switch context.outputFormat {
        case .json:
            context.print(try JSONOutput.encode(summary))
        case .table:
            context.print("Loaded the datapath under \(summary.root): nf_to_pod id \(summary.programIDs["nf_to_pod"]!), "
                + "nf_from_pod id \(summary.programIDs["nf_from_pod"]!)")
            if !summary.reused.isEmpty { context.print("Reused pinned maps: \(summary.reused.joined(separator: ", "))") }
            if !summary.created.isEmpty { context.print("Created maps: \(summary.created.joined(separator: ", "))") }
            if !summary.migrated.isEmpty { context.print("Replaced incompatible maps: \(summary.migrated.joined(separator: ", "))") }
            if !summary.reattached.isEmpty { context.print("New programs on the interfaces of: \(summary.reattached.map(\.description).joined(separator: ", "))") }
        }
    }
}

/// What `loader init -o json` prints.
struct InitSummary: Encodable {
    let root: String
    let programIDs: [String: UInt32]
    let reused: [String]
    let created: [String]
    let migrated: [String]
    let reattached: [PodReference]
}
