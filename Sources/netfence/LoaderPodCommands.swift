import BPFKit
import CommandTree
import DatapathModel
import Foundation
import HostKit
import Loader
import PolicyInput

/// Checks shared by the commands that open the loader.
enum LoaderAccess {
    /// The loader, to read.
    static func open(_ context: CommandContext) throws -> Loader {
        try NodeAccess.requirePrivileges(context)
        try NodeAccess.requireBPFFilesystem(context)
        return try Loader(root: context.pinRoot)
    }

    /// The loader, to change the node: waits for another writer up to --wait-timeout.
    static func openForChanges(_ context: CommandContext) throws -> Loader {
        try NodeAccess.requirePrivileges(context)
        try NodeAccess.requireBPFFilesystem(context)
        return try Loader.openForChanges(root: context.pinRoot, waitingUpTo: context.parsed[LockWait.timeout])
    }
}

/// `netfence loader attach`.
struct LoaderAttachCommand: Command {
    static let configuration = CommandConfiguration(
        name: "attach",
        abstract: "Attach the datapath to a pod's host veth and enforce what selects the pod.",
        discussion: """
            Attaches the shared programs (no verifier run) to both tc hooks of IFACE, registers the pod and applies \
            every applied object that selects it. Idempotent; a pod attached elsewhere before is moved. --netns names \
            the ip-netns namespace IFACE lives in (entered without remounting /sys).
            """)

    static let pod = Option<PodReference?>(long: "pod", help: "The pod, as NAMESPACE/NAME.", default: nil, showDefault: false)
    static let interface = Option<String?>(long: "iface", valueName: "name", help: "The pod's host veth.", default: nil, showDefault: false)
    static let netns = Option<String?>(long: "netns", valueName: "name", help: "The network namespace IFACE lives in (ip netns name).",
                                       default: nil, showDefault: false)
    static let ingressDefault = Option<PodDefault>(long: "ingress-default", help: "Ingress when nothing selects the pod.", default: .allow)
    static let egressDefault = Option<PodDefault>(long: "egress-default", help: "Egress when nothing selects the pod.", default: .allow)
    static let arguments = [pod.definition, interface.definition, netns.definition, ingressDefault.definition, egressDefault.definition,
                            LockWait.timeout.definition]

    let parsed: ParsedArguments
    init(parsed: ParsedArguments) { self.parsed = parsed }

    func validate() throws {
        if parsed[Self.pod] == nil { throw UsageError("missing --pod NAMESPACE/NAME") }
        if parsed[Self.interface] == nil { throw UsageError("missing --iface NAME") }
    }

    func run(_ context: CommandContext) throws {
        let loader = try LoaderAccess.openForChanges(context)
        let pod = parsed[Self.pod]!
        let report = try loader.attach(pod, interface: parsed[Self.interface]!, netns: parsed[Self.netns],
                                       defaults: [.ingress: parsed[Self.ingressDefault], .egress: parsed[Self.egressDefault]])
        switch context.outputFormat {
        case .json:
            context.print(try JSONOutput.encode(AttachSummary(pod: pod.description, interface: parsed[Self.interface]!, ifindex: report.ifindex,
                                                              podID: report.podID, revision: report.revision,
                                                              objects: report.objects.map(\.description), moved: report.moved)))
        case .table:
            context.print(TerminalText.escaped("\(report.moved ? "Moved" : "Attached") \(pod) on \(parsed[Self.interface]!) (ifindex \(report.ifindex)): "
                + "pod id \(report.podID), revision \(report.revision), \(report.objects.count) object(s) select it"))
        }
    }
}

/// `netfence loader detach`.
struct LoaderDetachCommand: Command {
    static let configuration = CommandConfiguration(
        name: "detach",
        abstract: "Remove a pod's filters, policy and conntrack entries, and forget it.")

    static let pod = Option<PodReference?>(long: "pod", help: "The pod, as NAMESPACE/NAME.", default: nil, showDefault: false)
    static let arguments = [pod.definition, LockWait.timeout.definition]

    let pod: PodReference?
    init(parsed: ParsedArguments) { pod = parsed[Self.pod] }

    func validate() throws {
        if pod == nil { throw UsageError("missing --pod NAMESPACE/NAME") }
    }

    func run(_ context: CommandContext) throws {
        let loader = try LoaderAccess.openForChanges(context)
        try loader.detach(pod!)
        switch context.outputFormat {
        case .json: context.print(try JSONOutput.encode(["detached": pod!.description]))
        case .table: context.print(TerminalText.escaped("Detached \(pod!)"))
        }
    }
}

/// Commands that take `-f FILE|-` (apply, delete): the option and its check.
protocol PolicyFileCommand: Command {
    var file: String? { get }
}

extension PolicyFileCommand {
    static var arguments: [ArgumentDefinition] { [PolicyFileInput.file.definition, LockWait.timeout.definition] }

    func validate() throws {
        if file == nil { throw UsageError("missing -f FILE (or -f - for standard input)") }
    }
}

/// Reads `-f FILE` or `-f -` and parses it; the shared part of apply and delete.
struct PolicyFileInput {
    static let file = Option<String?>(short: "f", long: "filename", valueName: "file",
                                      help: "PolicyEndpoint / ClusterPolicyEndpoint objects, JSON or YAML; - reads standard input.",
                                      default: nil, showDefault: false, completion: .file)

    static func read(_ path: String) throws -> ParsedPolicies {
        let name = path == "-" ? "standard input" : path
        let contents: InputFile.Contents
        do {
            contents = try InputFile.read(path, limit: PolicyDocumentParser.maximumInputBytes)
        } catch let error as SystemError {
            let hint = error.errno == EISDIR ? "give a file, not a folder" : error.errno == ENOENT ? "check the path" : "check the path and its permissions"
            throw RuntimeError("cannot read \(name): \(Errno.describe(error.errno))", hint: "\(hint); nothing was applied")
        }
        do {
            return try PolicyDocumentParser.parse(bytes: contents.bytes)
        } catch {
            throw RuntimeError("\(name): \(error.description)", hint: "nothing was applied")
        }
    }
}

/// What `loader attach -o json` prints.
struct AttachSummary: Encodable {
    let pod: String
    let interface: String
    let ifindex: UInt32
    let podID: UInt32
    let revision: UInt32
    let objects: [String]
    let moved: Bool
}

/// What `loader apply -o json` and `loader delete -o json` print: the objects
/// changed, each pod's new revision, and what was said on the way.
struct ChangeSummary: Encodable {
    struct PodRevision: Encodable {
        let pod: PodReference
        let revision: UInt32
    }

    let objects: [String]
    let pods: [PodRevision]
    let warnings: [String]

    init(objects: [ObjectKey], pods: [(pod: PodReference, revision: UInt32)], warnings: [String]) {
        self.objects = objects.map(\.description)
        self.pods = pods.map { PodRevision(pod: $0.pod, revision: $0.revision) }
        self.warnings = warnings
    }
}

/// Objects named in one line: every one of a few, a count and the first and last of many.
enum ObjectList {
    static let listedInFull = 10

    static func summary(_ keys: [ObjectKey]) -> String {
        guard keys.count > listedInFull, let first = keys.first, let last = keys.last else {
            return keys.map(\.description).joined(separator: ", ")
        }
        return "\(keys.count) objects (\(first) … \(last))"
    }
}

/// `netfence loader apply -f`.
struct LoaderApplyCommand: PolicyFileCommand {
    static let configuration = CommandConfiguration(
        name: "apply",
        abstract: "Apply PolicyEndpoint and ClusterPolicyEndpoint objects (JSON or YAML, as kubectl prints them).",
        discussion: """
            Accepts single objects, ...List objects and multi-document YAML. Re-applying an object (same kind, \
            namespace, name) replaces its previous version; a pod's policy is the union of every object that selects \
            it; objects selecting pods not attached here take effect when they attach. The whole input is checked \
            first: one invalid field, or a pod whose policy would not fit the datapath, and nothing is applied. Each \
            pod's policy is replaced atomically.
            """)

    let file: String?
    init(parsed: ParsedArguments) { file = parsed[PolicyFileInput.file] }

    func run(_ context: CommandContext) throws {
        let input = try PolicyFileInput.read(file!)
        for warning in input.warnings { context.warn(warning) }
        let report = input.objects.isEmpty ? Loader.ApplyReport() : try LoaderAccess.openForChanges(context).apply(input)
        switch context.outputFormat {
        case .json:
            context.print(try JSONOutput.encode(ChangeSummary(objects: report.objects, pods: report.pods, warnings: input.warnings)))
        case .table:
            context.print(input.objects.isEmpty ? "Nothing to apply: the input's List has no items" : "Applied \(ObjectList.summary(report.objects))")
            for (pod, revision) in report.pods { context.print(TerminalText.escaped("  \(pod): revision \(revision)")) }
        }
    }
}

/// `netfence loader delete -f`.
struct LoaderDeleteCommand: PolicyFileCommand {
    static let configuration = CommandConfiguration(
        name: "delete",
        abstract: "Remove applied objects (named by the same input apply took).")

    let file: String?
    init(parsed: ParsedArguments) { file = parsed[PolicyFileInput.file] }

    func run(_ context: CommandContext) throws {
        let input = try PolicyFileInput.read(file!)
        let report = input.objects.isEmpty ? Loader.ApplyReport() : try LoaderAccess.openForChanges(context).delete(input.objects.map(\.key))
        let missing = Set(input.objects.map(\.key)).subtracting(report.objects).sorted()
        for key in missing { context.warn("\(key) was not applied") }
        switch context.outputFormat {
        case .json:
            context.print(try JSONOutput.encode(ChangeSummary(objects: report.objects, pods: report.pods, warnings: missing.map { "\($0) was not applied" })))
        case .table:
            context.print(input.objects.isEmpty ? "Nothing to delete: the input's List has no items"
                : "Deleted \(report.objects.isEmpty ? "nothing" : ObjectList.summary(report.objects))")
            for (pod, revision) in report.pods { context.print(TerminalText.escaped("  \(pod): revision \(revision)")) }
        }
    }
}

/// `netfence loader reconcile`.
struct LoaderReconcileCommand: Command {
    static let configuration = CommandConfiguration(
        name: "reconcile",
        abstract: "Roll every pod forward to what the stored objects give it, and repair missing or stray filters.",
        discussion: """
            Compares each attached pod's live policy (its states, tries and domain rules, read back from the kernel) \
            with what the stored objects compile to, and swaps in the stored one where they differ, atomically as \
            apply does; attaches missing filters; removes netfence's filters from interfaces of no pod; drops object \
            versions a killed apply left behind. Idempotent. Every change command does this first when it finds a \
            change a kill interrupted.
            """)

    static let arguments = [LockWait.timeout.definition]

    init(parsed: ParsedArguments) {}

    func run(_ context: CommandContext) throws {
        let report = try LoaderAccess.openForChanges(context).reconcile()
        let summary = ReconcileSummary(report)
        switch context.outputFormat {
        case .json:
            context.print(try JSONOutput.encode(summary))
        case .table:
            if let interrupted = summary.interrupted { context.print("Found an interrupted \(interrupted)") }
            for pod in summary.repaired { context.print("Rolled \(pod.pod) forward: \(pod.problems.joined(separator: "; "))") }
            for pod in summary.reattached { context.print("Attached the missing filters of \(pod)") }
            for stray in summary.strayRemoved { context.print("Removed netfence's filter from \(stray) (no pod there)") }
            if summary.supersededVersions > 0 { context.print("Dropped \(summary.supersededVersions) superseded object version(s)") }
            if summary.nothingToDo { context.print("Nothing to reconcile: every pod enforces what is stored") }
        }
    }
}

/// What `loader reconcile` prints.
struct ReconcileSummary: Encodable {
    struct Repaired: Encodable {
        let pod: PodReference
        let problems: [String]
    }

    let interrupted: String?
    let repaired: [Repaired]
    let reattached: [PodReference]
    let strayRemoved: [String]
    let supersededVersions: Int
    var nothingToDo: Bool { interrupted == nil && repaired.isEmpty && reattached.isEmpty && strayRemoved.isEmpty && supersededVersions == 0 }

    init(_ report: Loader.ReconcileReport) {
        interrupted = report.interrupted.map { "\($0.operation) by pid \($0.processID)" }
        repaired = report.repaired.map { Repaired(pod: $0.pod, problems: $0.problems) }
        reattached = report.reattached
        strayRemoved = report.strayRemoved
        supersededVersions = report.supersededVersions
    }
}

/// `netfence loader reset`.
struct LoaderResetCommand: Command {
    static let configuration = CommandConfiguration(
        name: "reset",
        abstract: "Remove everything netfence put on the node: filters, pods, policies, pins.",
        discussion: """
            Removes only what netfence created: the filters of attached pods and the pins of netfence's own layout \
            under the pin root (maps, programs, state). Anything else there (another tool's pins, a sibling folder) \
            stays and is listed. A folder 'loader init' never marked as a netfence root is refused; symlinks are never \
            followed.
            """)

    static let arguments = [LockWait.timeout.definition]

    let parsed: ParsedArguments
    init(parsed: ParsedArguments) { self.parsed = parsed }

    func run(_ context: CommandContext) throws {
        try NodeAccess.requirePrivileges(context)
        let root = context.pinRoot
        let report = try Loader.reset(root: root, waitingUpTo: parsed[LockWait.timeout])
        if report.absent {
            context.print("Nothing to reset: \(root) does not exist")
            return
        }
        context.print("Removed \(report.removed.count) pin(s) under \(root) and the filters of \(report.pods.count) pod(s)")
        if !report.kept.isEmpty {
            context.print("Kept what netfence did not create: \(report.kept.joined(separator: ", "))")
        }
    }
}
