import Foundation

/// Help text, in the layout swift-argument-parser users know.
extension CommandTree {
    /// Width help wraps to.
    static let helpWidth = 80
    /// Column where help texts start.
    static let helpColumn = 28

    /// `netfence ebpf progs [--all] [--stats] [<id> ...]`, or `<subcommand>` for groups.
    public func usageLine(_ path: [any Command.Type]) -> String {
        let command = path.last!
        var tokens = [commandPath(path)]
        if !command.configuration.subcommands.isEmpty { tokens.append("<subcommand>") }
        tokens += command.arguments.filter { $0.kind == .flag || $0.kind == .option }.map(\.usageToken)
        tokens += command.arguments.filter { $0.kind != .flag && $0.kind != .option }.map(\.usageToken)
        return tokens.joined(separator: " ")
    }

    /// The full help of the command at `path`.
    public func help(for path: [any Command.Type]) -> String {
        let command = path.last!
        let configuration = command.configuration
        var out = "OVERVIEW: \(configuration.abstract)\n\n"
        if !configuration.discussion.isEmpty {
            out += wrap(configuration.discussion, indent: 0) + "\n\n"
        }
        out += "USAGE: \(usageLine(path))\n\n"

        let positionals = command.arguments.filter { $0.kind != .flag && $0.kind != .option }
        if !positionals.isEmpty {
            out += "ARGUMENTS:\n" + positionals.map(helpRow).joined() + "\n"
        }
        let options = command.arguments.filter { $0.kind == .flag || $0.kind == .option }
        if !options.isEmpty {
            out += "OPTIONS:\n" + options.map(helpRow).joined() + "\n"
        }
        let globalRows = globals + [Self.helpFlag.definition] + (path.count == 1 ? [Self.versionFlag.definition] : [])
        out += "GLOBAL OPTIONS:\n" + globalRows.map(helpRow).joined()

        let subcommands = configuration.subcommands.filter { !$0.configuration.isHidden }
        if !subcommands.isEmpty {
            out += "\nSUBCOMMANDS:\n"
            for sub in subcommands {
                let names = ([sub.configuration.name] + sub.configuration.aliases).joined(separator: ", ")
                out += row(names, sub.configuration.abstract)
            }
            out += "\n  See '\(commandPath(path)) <subcommand> --help' for detailed help.\n"
        }
        return out
    }

    /// One definition's row: its synopsis, its help, its default and variable.
    func helpRow(_ definition: ArgumentDefinition) -> String {
        row(definition.synopsis, helpText(definition))
    }

    /// The help text with `(default: …)` and `(env: …)` appended.
    func helpText(_ definition: ArgumentDefinition) -> String {
        var text = definition.help
        if let variable = definition.environment { text += " (env: \(variable))" }
        if let value = definition.defaultText { text += " (default: \(value))" }
        return text
    }

    private func row(_ left: String, _ right: String) -> String {
        let label = "  \(left)"
        let body = wrap(right, indent: Self.helpColumn)
        if label.count + 2 > Self.helpColumn {
            return label + "\n" + String(repeating: " ", count: Self.helpColumn) + body + "\n"
        }
        return label.padding(toLength: Self.helpColumn, withPad: " ", startingAt: 0) + body + "\n"
    }

    /// Word-wraps `text` to the help width; lines after the first are indented.
    /// Blank lines (paragraphs) are kept.
    func wrap(_ text: String, indent: Int) -> String {
        let width = Self.helpWidth - indent
        let pad = String(repeating: " ", count: indent)
        return text.split(separator: "\n", omittingEmptySubsequences: false).map { paragraph in
            var lines: [String] = []
            var line = ""
            for word in paragraph.split(separator: " ") {
                if !line.isEmpty, line.count + 1 + word.count > width {
                    lines.append(line)
                    line = ""
                }
                line += (line.isEmpty ? "" : " ") + word
            }
            lines.append(line)
            return lines.joined(separator: "\n" + pad)
        }.joined(separator: "\n" + pad)
    }
}
