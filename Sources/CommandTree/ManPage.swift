/// The roff man page (section 8), generated from the tree.
extension CommandTree {
    /// The whole page: name, synopsis, every command with its usage and options,
    /// environment and exit status. No date, so regenerating is reproducible.
    public func manPage(section: Int = 8) -> String {
        let name = root.configuration.name
        var out = """
            .\\" Generated from the command tree by '\(name) man'; do not edit.
            .TH \(name.uppercased()) \(section) "" "\(name) \(version)" "System Administration"
            .SH NAME
            \(name) \\- \(roff(root.configuration.abstract))
            .SH SYNOPSIS
            .B \(name)
            [\\fIglobal options\\fR] \\fIcommand\\fR [\\fIoptions\\fR] [\\fIarguments\\fR]
            .SH DESCRIPTION
            \(paragraphs(root.configuration.discussion))
            .SH GLOBAL OPTIONS

            """
        for option in globals + [Self.helpFlag.definition, Self.versionFlag.definition] {
            out += item(option)
        }
        out += ".SH COMMANDS\n"
        var environment: [ArgumentDefinition] = globals.filter { $0.environment != nil }
        func visit(_ path: [any Command.Type]) {
            let command = path.last!
            if path.count > 1 {
                let aliases = command.configuration.aliases
                out += ".SS \"\(commandPath(path))\"\n"
                out += roff(command.configuration.abstract)
                out += aliases.isEmpty ? "\n" : " Alias: \(aliases.map { "\\fB\($0)\\fR" }.joined(separator: ", ")).\n"
                if !command.configuration.discussion.isEmpty {
                    out += ".PP\n" + paragraphs(command.configuration.discussion) + "\n"
                }
                out += ".PP\n.B Usage:\n\(roff(usageLine(path)))\n"
                for argument in command.arguments {
                    out += item(argument)
                    if argument.environment != nil { environment.append(argument) }
                }
            }
            for sub in command.configuration.subcommands where !sub.configuration.isHidden { visit(path + [sub]) }
        }
        visit([root])
        if !environment.isEmpty {
            out += ".SH ENVIRONMENT\n"
            for option in environment {
                out += ".TP\n.B \(option.environment!)\nThe default of \\fB\\-\\-\(option.long)\\fR.\n"
            }
        }
        out += """
            .SH EXIT STATUS
            .TP
            .B 0
            Success.
            .TP
            .B 1
            The command failed; one line on standard error says what failed and what to do.
            .TP
            .B 64
            The command line was wrong (unknown command or option, malformed value); the usage follows the error.

            """
        return out
    }

    private func item(_ definition: ArgumentDefinition) -> String {
        let label: String
        switch definition.kind {
        case .flag: label = spelled(definition)
        case .option: label = spelled(definition) + " \\fI\(definition.valueName)\\fR"
        case .positional(let repeating): label = "\\fI\(definition.long)\\fR" + (repeating ? " ..." : "")
        }
        return ".TP\n\(label)\n\(roff(helpText(definition)))\n"
    }

    private func spelled(_ definition: ArgumentDefinition) -> String {
        (definition.short.map { "\\fB\\-\($0)\\fR, " } ?? "") + "\\fB\\-\\-\(roff(definition.long))\\fR"
    }

    private func paragraphs(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.isEmpty ? ".PP" : roff(String($0)) }.joined(separator: "\n")
    }

    /// Escapes text for roff: backslashes, hyphens, and a leading dot or quote.
    private func roff(_ text: String) -> String {
        let escaped = text.replacingOccurrences(of: "\\", with: "\\e").replacingOccurrences(of: "-", with: "\\-")
        return escaped.hasPrefix(".") || escaped.hasPrefix("'") ? "\\&" + escaped : escaped
    }
}
