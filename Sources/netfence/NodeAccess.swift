import BPFKit
import CommandTree
import DatapathModel
import Foundation
import HostKit

/// What a command needs of the node before it touches the kernel, checked up
/// front so the failure says what to do instead of surfacing as an errno.
enum NodeAccess {
    /// Root, or at least CAP_BPF and CAP_SYS_ADMIN.
    static func requirePrivileges(_ context: CommandContext) throws {
        let capabilities = Capabilities.current()
        guard capabilities.bpf, capabilities.sysAdmin else {
            throw RuntimeError("'\(context.commandPath)' needs CAP_BPF and CAP_SYS_ADMIN",
                               hint: "run it as root, e.g. 'sudo \(context.commandPath)'")
        }
    }

    /// The pin root lies on bpffs, or does not exist yet below a bpffs mount.
    static func requireBPFFilesystem(_ context: CommandContext) throws {
        let root = context.pinRoot
        do {
            try root.requireMounted()
        } catch {
            throw RuntimeError(
                error.description,
                hint: root.path.hasPrefix(BPFFilesystem.defaultMountPoint + "/")
                    ? "mount it with 'mount -t bpf bpf \(BPFFilesystem.defaultMountPoint)' ('netfence loader init' does this)"
                    : "choose a folder on bpffs with --bpffs-root or NETFENCE_BPFFS_ROOT")
        }
    }

    /// Mounts bpffs at /sys/fs/bpf when the pin root lies there and nothing is
    /// mounted yet, then checks the root is on bpffs (commands that create state).
    static func prepareBPFFilesystem(_ context: CommandContext) throws {
        if context.pinRoot.path.hasPrefix(BPFFilesystem.defaultMountPoint + "/") {
            try BPFFilesystem.mountIfNeeded()
        }
        try requireBPFFilesystem(context)
    }

    /// This binary's path: benchmarks run it as the operator would.
    static func executablePath() throws -> String {
        try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
    }

    /// Turns a kernel error on an explicit id into what the user should do next.
    static func explainLookup(_ error: Error, kind: String, listCommand: String) -> Error {
        guard let error = error as? SystemError else { return error }
        switch error.errno {
        case ENOENT: return RuntimeError("no \(kind) with \(error.object) is loaded", hint: "list ids with '\(listCommand) --all'")
        case EPERM, EACCES: return RuntimeError(error.description, hint: "run as root")
        default: return error
        }
    }
}

/// What `ebpf progs` and `ebpf maps` share: which objects, the checks first, and output.
enum Listing {
    /// The selection `--all` and ids describe, after the checks it needs
    /// (a pinned listing needs bpffs; every listing needs privileges).
    static func selection(_ context: CommandContext, listAll: Bool, ids: [UInt32]) throws -> ObjectSelection {
        try NodeAccess.requirePrivileges(context)
        if !listAll, ids.isEmpty { try NodeAccess.requireBPFFilesystem(context) }
        return listAll ? .all : ids.isEmpty ? .pinned : .ids(ids)
    }

    /// Runs `load`, turning a failed lookup of an explicit id into what to do next.
    static func load<Record>(_ kind: String, _ context: CommandContext, _ load: () throws -> [Record]) throws -> [Record] {
        do {
            return try load()
        } catch {
            throw NodeAccess.explainLookup(error, kind: kind, listCommand: context.commandPath)
        }
    }

    /// Prints `rows` as JSON or as a table; an empty pinned listing says where it looked.
    static func print<Row: Encodable>(_ rows: [Row], selection: ObjectSelection, noun: String, context: CommandContext,
                                      headers: [String], cells: (Row) -> [String]) throws {
        switch context.outputFormat {
        case .json:
            context.print(try JSONOutput.encode(rows))
        case .table:
            if rows.isEmpty, selection == .pinned {
                context.print("No \(noun) pinned under \(context.pinRoot); '\(context.commandPath) --all' lists every one on the host.")
                return
            }
            var table = Table(headers: headers)
            rows.forEach { table.append(cells($0)) }
            context.print(table.render())
        }
    }
}

/// Formatting shared by the listing commands.
enum Format {
    /// `2026-11-23 12:00:01` in local time, for tables.
    static func time(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        formatter.locale = Locale(identifier: "en_US_POSIX")
        return formatter.string(from: date)
    }

    /// A list of ids in ascending order, `3,7`, or `-` for none.
    static func ids(_ ids: [UInt32]) -> String {
        ids.isEmpty ? "-" : ids.sorted().map(String.init).joined(separator: ",")
    }
}

/// `--aws-root`: where the AWS network-policy agent pins (on an EKS node, /sys/fs/bpf/globals/aws).
enum AWSRoot {
    static let option = Option<String>(long: "aws-root", valueName: "path", help: "Where the AWS agent pins its programs and maps.",
                                       default: AWSAgent.root, completion: .directory)
}

/// What a listing shows of an object the AWS agent pinned: its pod and direction, from the pin
/// (its maps and programs have no kernel names on a real node).
struct AWSPinLabel: Encodable {
    let object: String
    let podIdentifier: String?
    let direction: String?

    init?(pins: [String]) {
        guard let pin = pins.lazy.compactMap(AWSAgent.Pin.init(path:)).first else { return nil }
        object = pin.object.rawValue
        podIdentifier = pin.podIdentifier
        direction = pin.direction?.description
    }

    /// `client-7c79c4bf97@default ingress`, or `node` for the node-wide maps.
    var summary: String { [podIdentifier ?? "node", direction].compactMap { $0 }.joined(separator: " ") }
}
