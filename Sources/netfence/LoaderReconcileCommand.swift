import CommandTree
import Datapath
import DatapathModel
import Loader

/// `netfence loader reconcile`.
struct LoaderReconcileCommand: Command {
    static let configuration = CommandConfiguration(
        name: "reconcile",
        abstract: "Roll every pod forward to what the stored objects give it, and repair missing or stray filters.",
        discussion: """
            Compares each attached pod's live policy (its states, tries and domain rules, read back from the kernel) \
            with what the stored objects compile to, and swaps in the stored one where they differ, atomically as \
            apply does; attaches missing filters; removes netfence's filters from interfaces of no pod; drops object \
            versions a killed apply left behind; sweeps what detached pods left (their conntrack entries, domain \
            grants and rule hits, which detach leaves for one sweep every 64 detaches) and frees their pod ids. \
            Idempotent. Every change command does this first when it finds a change a kill interrupted.
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
            for link in summary.strayLinksUnpinned { context.print("Unpinned \(link), which attached netfence's program for no pod") }
            if summary.supersededVersions > 0 { context.print("Dropped \(summary.supersededVersions) superseded object version(s)") }
            if summary.orphanedTries > 0 { context.print("Deleted \(summary.orphanedTries) trie(s) no pod reads (an interrupted change built them)") }
            if summary.strayDomainRules > 0 {
                context.print("Deleted \(summary.strayDomainRules) domain rule set(s) no pod reads (an interrupted change wrote them)")
            }
            if summary.sweptPods > 0 || summary.swept != Datapath.Sweep() {
                let swept = summary.swept
                context.print("Swept \(summary.sweptPods) detached pod(s): \(swept.flows) flow(s), \(swept.grants) domain grant(s) "
                    + "and \(swept.ruleHits) rule hit(s) named a pod id no attached pod holds")
            }
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
    /// tcx links pinned for no attached pod, unpinned (which detached them).
    let strayLinksUnpinned: [String]
    let supersededVersions: Int
    let orphanedTries: Int
    let strayDomainRules: Int
    /// Detached pods whose ids were freed, and what named ids of no attached pod.
    let sweptPods: Int
    let swept: Datapath.Sweep
    var nothingToDo: Bool {
        interrupted == nil && repaired.isEmpty && reattached.isEmpty && strayRemoved.isEmpty && strayLinksUnpinned.isEmpty && supersededVersions == 0 && orphanedTries == 0
            && strayDomainRules == 0 && sweptPods == 0 && swept == Datapath.Sweep()
    }

    init(_ report: Loader.ReconcileReport) {
        interrupted = report.interrupted.map { "\($0.operation) by pid \($0.processID)" }
        repaired = report.repaired.map { Repaired(pod: $0.pod, problems: $0.problems) }
        reattached = report.reattached
        strayRemoved = report.strayRemoved
        strayLinksUnpinned = report.strayLinksUnpinned
        supersededVersions = report.supersededVersions
        orphanedTries = report.orphanedTries
        strayDomainRules = report.strayDomainRules
        sweptPods = report.sweptPods
        swept = report.swept
    }
}
