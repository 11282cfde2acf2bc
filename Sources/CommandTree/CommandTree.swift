import Foundation

/// The whole command line: a root command, options accepted at every level,
/// and the version. Parses, dispatches, and prints help and usage errors.
public struct CommandTree: Sendable {
    /// Exit status of a usage error (BSD's EX_USAGE).
    public static let usageExitCode: Int32 = 64
    /// Exit status of a runtime failure.
    public static let failureExitCode: Int32 = 1

    public static let helpFlag = Flag(short: "h", long: "help", help: "Show help information.")
    public static let versionFlag = Flag(long: "version", help: "Show the version.")

    public let root: any Command.Type
    /// Options every command accepts, anywhere on the line.
    public let globals: [ArgumentDefinition]
    public let version: String
    /// The option whose value `json` makes errors JSON too (`-o json`), as bpftool `-j` does.
    public let outputFormat: ArgumentDefinition?

    public init(root: any Command.Type, globals: [ArgumentDefinition], version: String, outputFormat: ArgumentDefinition? = nil) {
        self.root = root
        self.globals = globals
        self.version = version
        self.outputFormat = outputFormat
    }

    /// Whether the words ask for JSON output: errors then go to standard error as one JSON object.
    func wantsJSON(_ arguments: [String]) -> Bool {
        guard let option = outputFormat else { return false }
        var index = 0
        while index < arguments.count {
            let word = arguments[index]
            if word == "--" { return false }
            let spelled = word == "--\(option.long)" || option.short.map { word == "-\($0)" } == true
            if spelled, index + 1 < arguments.count, arguments[index + 1] == "json" { return true }
            if word == "--\(option.long)=json" || option.short.map({ word == "-\($0)json" }) == true { return true }
            index += 1
        }
        return false
    }

    /// `{"error":"…","exitCode":1}`: an error as a script reads it.
    static func jsonError(_ message: String, exitCode: Int32, usage: String? = nil) -> String {
        var text = "{\"error\":\(Self.quoted(message)),\"exitCode\":\(exitCode)"
        if let usage { text += ",\"usage\":\(Self.quoted(usage))" }
        return text + "}\n"
    }

    static func quoted(_ text: String) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        let data = (try? encoder.encode(text)) ?? Data("\"\"".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// What a parsed command line asks for.
    public enum Invocation {
        case help(path: [any Command.Type])
        case version
        case run(path: [any Command.Type], parsed: ParsedArguments)
    }

    /// A usage error and the command it was made in (for the usage line).
    public struct ParseFailure: Error {
        public let error: UsageError
        public let path: [any Command.Type]
    }

    /// Parses `arguments` (without the program name) and runs the chosen command,
    /// writing through the two closures. Returns the exit status.
    public func run(_ arguments: [String], environment: [String: String] = ProcessEnvironment.variables,
                    standardOutput: OutputSink, standardError: OutputSink) -> Int32 {
        let invocation: Invocation
        let json = wantsJSON(arguments)
        func usageFailure(_ error: UsageError, _ path: [any Command.Type]) -> Int32 {
            standardError.write(json ? Self.jsonError(error.message, exitCode: Self.usageExitCode, usage: usageLine(path.isEmpty ? [root] : path))
                                     : usageErrorText(error, path: path))
            return Self.usageExitCode
        }
        do {
            invocation = try parse(arguments, environment: environment)
        } catch {
            return usageFailure(error.error, error.path)
        }
        switch invocation {
        case .version:
            standardOutput.write("\(root.configuration.name) \(version)\n")
            return 0
        case .help(let path):
            standardOutput.write(help(for: path))
            return 0
        case .run(let path, let parsed):
            let command = path.last!.init(parsed: parsed)
            let context = CommandContext(commandPath: commandPath(path), parsed: parsed, environment: environment,
                                         standardOutput: standardOutput, standardError: standardError, jsonDiagnostics: json)
            do {
                try command.validate()
                try command.run(context)
                return 0
            } catch let error as UsageError {
                return usageFailure(error, path)
            } catch {
                let message = oneLine(String(describing: error))
                standardError.write(json ? Self.jsonError(message, exitCode: Self.failureExitCode) : "error: \(TerminalText.escaped(message))\n")
                return Self.failureExitCode
            }
        }
    }

    /// `Error: …`, the usage line and where help is: what a mistyped command prints.
    public func usageErrorText(_ error: UsageError, path: [any Command.Type]) -> String {
        let path = path.isEmpty ? [root] : path
        return "Error: \(TerminalText.escaped(error.message))\nUsage: \(usageLine(path))\n  See '\(commandPath(path)) --help'.\n"
    }

    /// `netfence ebpf progs`.
    public func commandPath(_ path: [any Command.Type]) -> String {
        // Not `joined`: every run needs the path, and the generic `joined` looks its witnesses up by name.
        var text = ""
        for command in path {
            if !text.isEmpty { text.append(" ") }
            text.append(contentsOf: command.configuration.name)
        }
        return text
    }

    /// The definitions the command at the end of `path` accepts: the globals, its own, and help
    /// (a subcommand does not take its parent's options: they mean nothing to it).
    func definitions(along path: [any Command.Type]) -> [ArgumentDefinition] {
        globals + path.last!.arguments + [Self.helpFlag.definition] + (path.count == 1 ? [Self.versionFlag.definition] : [])
    }

    /// Turns words into an invocation, or a usage error that names the word at fault.
    public func parse(_ arguments: [String], environment: [String: String] = [:]) throws(ParseFailure) -> Invocation {
        var path: [any Command.Type] = [root]
        var parsed = ParsedArguments()
        var positionals: [String] = []
        var wantsHelp = false
        var wantsVersion = false
        var optionsEnded = false
        var index = 0

        func fail(_ message: String) -> ParseFailure { ParseFailure(error: UsageError(message), path: path) }

        func record(_ definition: ArgumentDefinition, value: String?, spelled: String) throws(ParseFailure) {
            switch definition.kind {
            case .flag:
                if value != nil { throw fail("flag '\(spelled)' takes no value") }
                if definition.long == Self.helpFlag.definition.long { wantsHelp = true }
                else if definition.long == Self.versionFlag.definition.long { wantsVersion = true }
                else { parsed.flags.insert(definition.long) }
            case .option:
                guard let value else { throw fail("option '\(spelled)' needs a value <\(definition.valueName)>") }
                guard definition.check(value) else {
                    throw fail("'\(value)' is not a valid value for '\(spelled)'\(choicesText(definition))")
                }
                parsed.words[definition.long, default: []].append(value)
            case .positional:
                break
            }
        }

        while index < arguments.count {
            let word = arguments[index]
            index += 1
            let definitions = definitions(along: path)
            if optionsEnded || word == "-" || !word.hasPrefix("-") || isNegativeNumber(word) {
                if !optionsEnded, positionals.isEmpty, let sub = subcommand(named: word, of: path.last!) {
                    path.append(sub)
                } else if !optionsEnded, positionals.isEmpty, !path.last!.configuration.subcommands.isEmpty,
                          path.last!.arguments.allSatisfy({ $0.kind == .flag || $0.kind == .option }) {
                    let known = path.last!.configuration.subcommands.filter { !$0.configuration.isHidden }
                        .flatMap { [$0.configuration.name] + $0.configuration.aliases }
                    throw fail("unknown command '\(word)' for '\(commandPath(path))'\(suggestion(word, among: known))")
                } else {
                    positionals.append(word)
                }
            } else if word == "--" {
                optionsEnded = true
            } else if word.hasPrefix("--") {
                let body = word.dropFirst(2)
                let name = String(body.prefix { $0 != "=" })
                let inlineValue = body.contains("=") ? String(body.drop { $0 != "=" }.dropFirst()) : nil
                guard let definition = definitions.first(where: { $0.kind != .positional(repeating: true) && $0.kind != .positional(repeating: false) && $0.long == name }) else {
                    let known = definitions.filter { $0.kind == .flag || $0.kind == .option }.map { "--\($0.long)" }
                    throw fail("unknown option '--\(name)'\(suggestion("--\(name)", among: known))")
                }
                var value = inlineValue
                if definition.kind == .option, value == nil, index < arguments.count {
                    value = arguments[index]
                    index += 1
                }
                try record(definition, value: value, spelled: "--\(name)")
            } else {
                var letters = Substring(word.dropFirst())
                while let letter = letters.first {
                    letters = letters.dropFirst()
                    guard let definition = definitions.first(where: { $0.short == letter }) else {
                        throw fail("unknown option '-\(letter)'")
                    }
                    var value: String?
                    if definition.kind == .option {
                        if !letters.isEmpty {
                            value = String(letters)
                            letters = ""
                        } else if index < arguments.count {
                            value = arguments[index]
                            index += 1
                        }
                    }
                    try record(definition, value: value, spelled: "-\(letter)")
                }
            }
        }
        if wantsHelp { return .help(path: path) }
        if wantsVersion { return .version }

        try assign(positionals, to: path.last!.arguments, into: &parsed, fail: fail)
        for definition in definitions(along: path) where definition.kind == .option && parsed.words[definition.long] == nil {
            // Set but empty is a value too: `VAR= netfence …` must not silently mean the default.
            guard let variable = definition.environment, let value = environment[variable] else { continue }
            guard definition.check(value) else {
                throw fail("'\(value)' from \(variable) is not a valid value for '--\(definition.long)'\(choicesText(definition))")
            }
            parsed.words[definition.long] = [value]
        }
        for definition in path.last!.arguments where definition.kind == .option && definition.isRequired && parsed.words[definition.long] == nil {
            throw fail("missing --\(definition.long) <\(definition.valueName)>: \(definition.help)")
        }
        return .run(path: path, parsed: parsed)
    }

    private func assign(_ positionals: [String], to arguments: [ArgumentDefinition], into parsed: inout ParsedArguments,
                        fail: (String) -> ParseFailure) throws(ParseFailure) {
        var remaining = positionals[...]
        for definition in arguments {
            guard case .positional(let repeating) = definition.kind else { continue }
            let taken = repeating ? Array(remaining) : Array(remaining.prefix(1))
            remaining = remaining.dropFirst(taken.count)
            if taken.isEmpty, definition.isRequired { throw fail("missing <\(definition.long)>: \(definition.help)") }
            for word in taken where !definition.check(word) {
                throw fail("'\(word)' is not a valid <\(definition.long)>\(choicesText(definition))")
            }
            if !taken.isEmpty { parsed.words[definition.long] = taken }
        }
        if let extra = remaining.first { throw fail("unexpected argument '\(extra)'") }
    }

    private func subcommand(named word: String, of command: any Command.Type) -> (any Command.Type)? {
        command.configuration.subcommands.first { $0.configuration.name == word || $0.configuration.aliases.contains(word) }
    }

    private func isNegativeNumber(_ word: String) -> Bool {
        word.count > 1 && Double(word) != nil
    }

    private func choicesText(_ definition: ArgumentDefinition) -> String {
        if case .choices(let choices) = definition.completion { return " (one of: \(choices.joined(separator: ", ")))" }
        return definition.expectedForm.map { " (expected \($0))" } ?? ""
    }

    private func oneLine(_ text: String) -> String {
        text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
    }
}

/// `; did you mean 'progs'?` when one known word is at most two edits away.
func suggestion(_ word: String, among candidates: [String]) -> String {
    let scored = candidates.map { ($0, editDistance(word, $0)) }.filter { $0.1 <= 2 }
    guard let best = scored.min(by: { $0.1 < $1.1 }) else { return "" }
    return "; did you mean '\(best.0)'?"
}

func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    var previous = Array(0...b.count)
    for (i, x) in a.enumerated() {
        var current = [i + 1]
        for (j, y) in b.enumerated() {
            current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1)))
        }
        previous = current
    }
    return previous[b.count]
}
