import BPFKit
import CommandTree
import Datapath
import DatapathModel
import Foundation
import Loader

/// `netfence loader`: how a node agent drives the datapath.
struct LoaderCommand: Command {
    static let configuration = CommandConfiguration(
        name: "loader",
        abstract: "Load the datapath and report its state (what a node agent runs).",
        discussion: "State lives in bpffs under the pin root, so any later process sees it.",
        subcommands: [LoaderInitCommand.self, LoaderAttachCommand.self, LoaderApplyCommand.self, LoaderDeleteCommand.self,
                      LoaderDetachCommand.self, LoaderStatusCommand.self, LoaderResetCommand.self])

    init(parsed: ParsedArguments) {}
}

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
    static let arguments = [migrate.definition]

    let migrate: Bool
    init(parsed: ParsedArguments) { migrate = parsed[Self.migrate] }

    func run(_ context: CommandContext) throws {
        try NodeAccess.requirePrivileges(context)
        if context.bpffsRoot.hasPrefix(BPFFilesystem.defaultMountPoint + "/") {
            try BPFFilesystem.mountIfNeeded()
        }
        try NodeAccess.requireBPFFilesystem(context)
        let (loader, report) = try Loader.initialize(root: context.bpffsRoot, migrate: migrate)
        let datapath = loader.datapath
        let summary = InitSummary(root: context.bpffsRoot, programIDs: [
            "nf_to_pod": try datapath.toPod.info().id, "nf_from_pod": try datapath.fromPod.info().id,
        ], reused: report.maps.reused.sorted(), created: report.maps.created.sorted(), migrated: report.maps.migrated.sorted(),
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
            if !summary.reattached.isEmpty { context.print("New programs on the interfaces of: \(summary.reattached.joined(separator: ", "))") }
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
    let reattached: [String]
}

/// `netfence loader status`: the loaded datapath, its maps and registered pods.
struct LoaderStatusCommand: Command {
    static let configuration = CommandConfiguration(
        name: "status",
        abstract: "Show the loaded datapath: programs, global map fill, registered pods.")

    init(parsed: ParsedArguments) {}

    func run(_ context: CommandContext) throws {
        try NodeAccess.requirePrivileges(context)
        try NodeAccess.requireBPFFilesystem(context)
        let datapath = try Datapath.open(pinnedUnder: context.bpffsRoot)
        let maps = try [("pods", datapath.pods), ("conntrack", datapath.conntrack), ("fragments", datapath.fragments)].map { name, map in
            MapFill(name: name, entries: try map.countEntries() ?? 0, maxEntries: Int(try map.info().maxEntries))
        }
        let pods = try datapath.registeredPods().map { PodStatus(ifindex: $0.ifindex, record: $0.record) }
        let status = LoaderStatus(root: context.bpffsRoot, programIDs: [
            "nf_to_pod": try datapath.toPod.info().id, "nf_from_pod": try datapath.fromPod.info().id,
        ], maps: maps, pods: pods)
        switch context.outputFormat {
        case .json:
            context.print(try JSONOutput.encode(status))
        case .table:
            context.print("Datapath under \(status.root): nf_to_pod id \(status.programIDs["nf_to_pod"]!), "
                + "nf_from_pod id \(status.programIDs["nf_from_pod"]!)\n")
            var mapTable = Table(headers: ["MAP", "ENTRIES", "MAX", "FILL"])
            for map in maps { mapTable.append([map.name, String(map.entries), String(map.maxEntries), String(format: "%.1f%%", map.fillPercent)]) }
            context.print(mapTable.render() + "\n")
            if pods.isEmpty {
                context.print("No pods registered.")
            } else {
                var podTable = Table(headers: ["IFINDEX", "POD ID", "REVISION", "INGRESS", "EGRESS"])
                for pod in pods { podTable.append([String(pod.ifindex), String(pod.podID), String(pod.revision), pod.ingress, pod.egress]) }
                context.print(podTable.render())
            }
        }
    }
}

struct MapFill: Encodable {
    let name: String
    let entries: Int
    let maxEntries: Int
    var fillPercent: Double { maxEntries == 0 ? 0 : Double(entries) * 100 / Double(maxEntries) }

    enum CodingKeys: String, CodingKey { case name, entries, maxEntries, fillPercent }
    func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(entries, forKey: .entries)
        try container.encode(maxEntries, forKey: .maxEntries)
        try container.encode((fillPercent * 10).rounded() / 10, forKey: .fillPercent)
    }
}

struct PodStatus: Encodable {
    let ifindex: UInt32
    let podID: UInt32
    let revision: UInt32
    let ingress: String
    let egress: String

    init(ifindex: UInt32, record: PodRecord) {
        self.ifindex = ifindex
        podID = record.podID
        revision = record.revision
        ingress = record.states[.ingress, default: .defaultAllow].name
        egress = record.states[.egress, default: .defaultAllow].name
    }
}

struct LoaderStatus: Encodable {
    let root: String
    let programIDs: [String: UInt32]
    let maps: [MapFill]
    let pods: [PodStatus]
}

extension PodState {
    /// How status prints it.
    var name: String {
        switch self {
        case .defaultAllow: "default-allow"
        case .defaultDeny: "default-deny"
        case .policiesApplied: "policies-applied"
        }
    }
}
