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

            An object annotated netfence.io/mode: audit (or every object, with --audit) is stored and compiled like \
            any other but decides nothing: for each new flow it would decide otherwise, the datapath reports an \
            audit event (ebpf events --verdict audit). Re-applying it without the mark enforces it.

            --dry-run validates and compiles everything exactly as apply would and prints, per pod and direction, \
            what would change (states, prefixes and rules added and removed, capacity used) and, for each --probe \
            IP:PORT/PROTO, the verdict before and after. It changes nothing.
            """)

    static let dryRun = Flag(long: "dry-run", help: "Say what would change, change nothing.")
    static let probe = Option<ProbeFlow?>(long: "probe", valueName: "ip:port/proto",
                                          help: "With --dry-run: a flow (198.18.0.1:443/tcp, 198.18.0.1/icmp) to decide before and after; repeatable.",
                                          default: nil, showDefault: false)
    static let audit = Flag(long: "audit", help: "Apply every object in audit mode: it decides nothing, events say what it would.")
    static let arguments = [PolicyFileInput.file.definition, dryRun.definition, probe.definition, audit.definition, LockWait.timeout.definition]

    let parsed: ParsedArguments
    init(parsed: ParsedArguments) { self.parsed = parsed }

    func validate() throws {
        if !parsed.all(Self.probe).isEmpty, !parsed[Self.dryRun] { throw UsageError("--probe goes with --dry-run") }
    }

    func run(_ context: CommandContext) throws {
        var input = try PolicyFileInput.read(parsed[PolicyFileInput.file])
        if parsed[Self.audit] {
            do {
                input.objects = try input.objects.map { (object: PolicyObject) throws(PolicyInputError) in try object.with(mode: .audit) }
            } catch {
                throw RuntimeError(error.description, hint: "nothing was applied")
            }
        }
        for warning in input.warnings { context.warn(warning) }
        if parsed[Self.dryRun] { return try printPlan(input, context) }
        let report = input.objects.isEmpty ? Loader.ApplyReport() : try LoaderAccess.openForChanges(context).apply(input)
        switch context.outputFormat {
        case .json:
            context.print(try JSONOutput.encode(ChangeSummary(objects: report.objects, unchanged: report.unchanged, pods: report.pods,
                                                              warnings: input.warnings)))
        case .table:
            if input.objects.isEmpty { context.print("Nothing to apply: the input's List has no items") }
            if !report.objects.isEmpty { context.print("Applied \(ObjectList.summary(report.objects))") }
            if !report.unchanged.isEmpty { context.print("Unchanged (identical to what is applied): \(ObjectList.summary(report.unchanged))") }
            for (pod, revision) in report.pods { context.print(TerminalText.escaped("  \(pod): revision \(revision)")) }
        }
    }
}

extension LoaderApplyCommand {
    func printPlan(_ input: ParsedPolicies, _ context: CommandContext) throws {
        let plan = try LoaderAccess.open(context).plan(input, probes: parsed.all(Self.probe).compactMap { $0 },
                                                       waitingUpTo: parsed[LockWait.timeout])
        if context.outputFormat == .json { return context.print(try JSONOutput.encode(plan)) }
        var lines = ["Dry run: nothing was applied. \(plan.objects.count) object(s) checked and compiled."]
        if plan.changes.isEmpty { lines.append("No attached pod is selected by these objects (or by the versions they replace).") }
        for change in plan.changes {
            let header = "\(change.pod) \(change.direction): " + (change.stateBefore == change.stateAfter ? change.stateAfter
                : "\(change.stateBefore) → \(change.stateAfter)")
                + (change.auditStateAfter.map { "; with audit objects enforced: \($0)" } ?? "")
            lines.append("")
            lines.append(header + (change.changes ? "" : " (no change)"))
            lines.append("  prefixes \(change.prefixesBefore) → \(change.prefixesAfter) of \(change.prefixCapacity); "
                + "largest rule set \(change.largestRuleSet) of \(change.ruleCapacity)")
            for (sign, rules) in [("+", change.rulesAdded), ("-", change.rulesRemoved)] {
                for rule in rules.prefix(20) { lines.append("  \(sign) \(rule)") }
                if rules.count > 20 { lines.append("  \(sign) … and \(rules.count - 20) more rules") }
            }
            for probe in change.probes {
                lines.append("  probe \(probe.flow): " + (probe.changes ? "\(probe.before) → \(probe.after)" : "\(probe.after) (unchanged)"))
            }
        }
        context.print(lines.map(TerminalText.escaped).joined(separator: "\n"))
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
    /// Objects identical to their applied version (apply only: absent for delete).
    let unchanged: [String]?
    let pods: [PodRevision]
    let warnings: [String]

    init(objects: [ObjectKey], unchanged: [ObjectKey]? = nil, pods: [(pod: PodReference, revision: UInt32)], warnings: [String]) {
        self.objects = objects.map(\.description)
        self.unchanged = unchanged?.map(\.description)
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
