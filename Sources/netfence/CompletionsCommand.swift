import CommandTree

/// `netfence completions SHELL`: the completion script, generated from the tree.
struct CompletionsCommand: Command {
    static let configuration = CommandConfiguration(
        name: "completions",
        abstract: "Print the completion script for bash, zsh or fish.",
        discussion: """
            Install it where your shell looks, for example:
              netfence completions bash > /etc/bash_completion.d/netfence
              netfence completions zsh > /usr/local/share/zsh/site-functions/_netfence
              netfence completions fish > ~/.config/fish/completions/netfence.fish
            """)

    static let shell = Positional<Shell>(name: "shell", help: "bash, zsh or fish.")
    static let arguments = [shell.definition]

    let shell: Shell
    init(parsed: ParsedArguments) { shell = parsed[Self.shell] }

    func run(_ context: CommandContext) throws {
        context.write(Netfence.tree.completionScript(for: shell))
    }
}
