import CommandTree
import Loader

/// `netfence loader`: how a node agent drives the datapath.
struct LoaderCommand: Command {
    static let configuration = CommandConfiguration(
        name: "loader",
        abstract: "Load the datapath and report its state (what a node agent runs).",
        discussion: "State lives in bpffs under the pin root, so any later process sees it.",
        subcommands: [LoaderInitCommand.self, LoaderAttachCommand.self, LoaderApplyCommand.self, LoaderDeleteCommand.self,
                      LoaderDetachCommand.self, LoaderStatusCommand.self, LoaderReconcileCommand.self, LoaderResetCommand.self,
                      LoaderServeCommand.self])

    init(parsed: ParsedArguments) {}
}

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
