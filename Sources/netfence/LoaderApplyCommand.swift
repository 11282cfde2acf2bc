import CommandTree
import DatapathModel
import Glibc
import HostKit
import Loader
import PolicyInput

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

    let file: String
    init(parsed: ParsedArguments) { file = parsed[PolicyFileInput.file] }

    func run(_ context: CommandContext) throws {
        let input = try PolicyFileInput.read(file)
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

    let file: String
    init(parsed: ParsedArguments) { file = parsed[PolicyFileInput.file] }

    func run(_ context: CommandContext) throws {
        let input = try PolicyFileInput.read(file)
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

/// Commands that take `-f FILE|-` (apply, delete).
protocol PolicyFileCommand: Command {}

extension PolicyFileCommand {
    static var arguments: [ArgumentDefinition] { [PolicyFileInput.file.definition, LockWait.timeout.definition] }
}

/// Reads `-f FILE` or `-f -` and parses it; the shared part of apply and delete.
struct PolicyFileInput {
    static let file = Option<String>(short: "f", long: "filename", valueName: "file",
                                     help: "PolicyEndpoint / ClusterPolicyEndpoint objects, JSON or YAML; - reads standard input.",
                                     completion: .file)

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
