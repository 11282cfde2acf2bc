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
            (its entries are lost). Programs are loaded anew and their pins replaced atomically. \
            --conntrack-entries sizes the conntrack table (the AWS agent's --conntrack-cache-table-size); \
            without it a pinned table keeps its size. A resize replaces the table and carries every tracked \
            flow over, the most recently seen first kept when the new table is smaller (flows it cannot hold \
            are re-evaluated as new flows). Each entry costs about 150 bytes of kernel memory at the most. \
            --attach says how pods' programs sit on their host veth's hooks: tc, a cls_bpf filter on clsact \
            (what 'tc filter show' lists, as the AWS agent attaches), tcx, a BPF link pinned under the root's \
            links folder (Linux 6.6 on; runs ahead of any filter and saves the classifier's layers on every \
            packet, but a new pod's links take some 70 ms to attach: the kernel waits for an RCU grace period \
            per link), or tc-then-tcx: a filter at attach, which a 'loader serve' on this root replaces with \
            links once the pod has stayed (its --tcx-after), so an attach costs a filter's price and a pod that \
            stays a link's per packet (detaching a pod on links waits for the grace periods). Later inits keep \
            the choice; a change moves every attached pod, each hook never without netfence's program.
            """)

    static let migrate = Flag(long: "migrate", help: "Replace pinned maps that do not match this netfence (their entries are lost).")
    static let conntrackEntries = Option<Int?>(long: "conntrack-entries", valueName: "n",
                                               help: "Flows the conntrack table holds (\(entriesRange.lowerBound)-\(entriesRange.upperBound); "
                                                   + "default: as pinned, else \(DatapathLimits.conntrackEntries)).",
                                               default: nil, showDefault: false)
    static let attach = Option<Attachment?>(long: "attach", help: "How pods' programs sit on their hooks (default: as the last init chose, else tc).",
                                            default: nil, showDefault: false)
    static let arguments = [migrate.definition, conntrackEntries.definition, attach.definition, LockWait.timeout.definition]
    static let entriesRange = 4_096...4_194_304

    let migrate: Bool
    let conntrackEntries: Int?
    let attachment: Attachment?
    let timeout: Double
    init(parsed: ParsedArguments) {
        migrate = parsed[Self.migrate]
        conntrackEntries = parsed[Self.conntrackEntries]
        attachment = parsed[Self.attach]
        timeout = parsed[LockWait.timeout]
    }

    func validate() throws {
        if let conntrackEntries, !Self.entriesRange.contains(conntrackEntries) {
            throw UsageError("--conntrack-entries must be between \(Self.entriesRange.lowerBound) and \(Self.entriesRange.upperBound)")
        }
    }

    func run(_ context: CommandContext) throws {
        try NodeAccess.requirePrivileges(context)
        try NodeAccess.prepareBPFFilesystem(context)
        let (loader, report) = try Loader.initialize(root: context.pinRoot, migrate: migrate, conntrackEntries: conntrackEntries,
                                                     attachment: attachment, waitingUpTo: timeout)
        let resize = report.conntrackResize
        let summary = InitSummary(root: context.pinRoot.path, programIDs: try loader.programIDs(), reused: report.maps.reused.sorted(),
                                  created: report.maps.created.sorted(),
                                  migrated: report.maps.migrated.sorted().filter { !(resize != nil && $0 == "conntrack") },
                                  attachment: report.attachment, reattached: report.reattached, conntrackEntries: report.conntrackEntries,
                                  conntrackResize: resize.map { InitSummary.Resize(from: $0.from, to: report.conntrackEntries, carriedOver: $0.carriedOver) })
        switch context.outputFormat {
        case .json:
            context.print(try JSONOutput.encode(summary))
        case .table:
            context.print("Loaded the datapath under \(summary.root): nf_to_pod id \(summary.programIDs["nf_to_pod"]!), "
                + "nf_from_pod id \(summary.programIDs["nf_from_pod"]!)")
            context.print("Pods attach through \(summary.attachment.summary)\(summary.attachment == .tc ? "" : "; links are pinned under \(summary.root)/links")")
            if !summary.reused.isEmpty { context.print("Reused pinned maps: \(summary.reused.joined(separator: ", "))") }
            if !summary.created.isEmpty { context.print("Created maps: \(summary.created.joined(separator: ", "))") }
            if !summary.migrated.isEmpty { context.print("Replaced incompatible maps: \(summary.migrated.joined(separator: ", "))") }
            if let resize = summary.conntrackResize {
                context.print("Resized conntrack from \(resize.from) to \(resize.to) entries; carried \(resize.carriedOver) tracked flows over")
            }
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
    /// How pods' programs are attached: `tc` or `tcx`.
    let attachment: Attachment
    let reattached: [PodReference]
    let conntrackEntries: Int
    let conntrackResize: Resize?

    struct Resize: Encodable {
        let from: Int
        let to: Int
        let carriedOver: Int
    }
}
