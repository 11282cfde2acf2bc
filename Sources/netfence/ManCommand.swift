import CommandTree

/// `netfence man`: the roff man page, generated from the tree.
struct ManCommand: Command {
    static let configuration = CommandConfiguration(
        name: "man",
        abstract: "Print the man page (roff); view it with 'netfence man | man -l -'.")

    init(parsed: ParsedArguments) {}

    func run(_ context: CommandContext) throws {
        context.write(Netfence.tree.manPage())
    }
}
