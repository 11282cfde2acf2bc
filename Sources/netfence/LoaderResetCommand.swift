import CommandTree
import Loader

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
