import Foundation

/// What a command is called and says about itself, and the commands below it.
public struct CommandConfiguration: Sendable {
    public let name: String
    public let aliases: [String]
    /// One line for lists of subcommands and the man page.
    public let abstract: String
    /// Paragraphs for the command's own help, after the abstract.
    public let discussion: String
    public let subcommands: [any Command.Type]
    /// Left out of help, completions and the man page (still runs).
    public let isHidden: Bool

    public init(name: String, aliases: [String] = [], abstract: String, discussion: String = "",
                subcommands: [any Command.Type] = [], isHidden: Bool = false) {
        self.name = name
        self.aliases = aliases
        self.abstract = abstract
        self.discussion = discussion
        self.subcommands = subcommands
        self.isHidden = isHidden
    }
}

/// One node of the command tree: its configuration and signature are static, so
/// help, completions and the man page can be generated without running it.
public protocol Command: Sendable {
    static var configuration: CommandConfiguration { get }
    /// The flags, options and positionals this command accepts, in help order.
    static var arguments: [ArgumentDefinition] { get }
    /// Builds the command from parsed words (typed access through the definitions).
    init(parsed: ParsedArguments)
    /// Checks combinations the types cannot; throw ``UsageError`` (exit 64).
    func validate() throws
    /// Does the work. Throw any error for a runtime failure (exit 1).
    func run(_ context: CommandContext) throws
}

extension Command {
    public static var arguments: [ArgumentDefinition] { [] }
    public func validate() throws {}
    /// A command with subcommands that is invoked without one.
    public func run(_ context: CommandContext) throws {
        throw missingSubcommand(Self.configuration, context.commandPath)
    }
}

/// The usage error of a group command invoked without a subcommand.
func missingSubcommand(_ configuration: CommandConfiguration, _ commandPath: String) -> UsageError {
    let names = configuration.subcommands.filter { !$0.configuration.isHidden }.map { $0.configuration.name }
    return UsageError("'\(commandPath)' needs a subcommand: \(names.joined(separator: ", "))")
}

/// A mistake in how the command was typed: printed with the usage, exit 64.
public struct UsageError: Error, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A failure while doing the work: one line on stderr, exit 1. `hint` says what to do.
public struct RuntimeError: Error, CustomStringConvertible {
    public let message: String
    public let hint: String?
    public init(_ message: String, hint: String? = nil) {
        self.message = message
        self.hint = hint
    }
    public var description: String { hint.map { "\(message); \($0)" } ?? message }
}

/// Where a running command writes, and what it knows of the invocation.
public final class CommandContext {
    /// `netfence ebpf progs`: the words that chose the command.
    public let commandPath: String
    /// The parsed words, globals included.
    public let parsed: ParsedArguments
    public let environment: [String: String]
    private let standardOutput: OutputSink
    private let standardError: OutputSink
    /// Warnings (and errors) go to standard error as JSON objects: the output is JSON.
    public let jsonDiagnostics: Bool

    public init(commandPath: String, parsed: ParsedArguments, environment: [String: String],
                standardOutput: OutputSink, standardError: OutputSink, jsonDiagnostics: Bool = false) {
        self.commandPath = commandPath
        self.parsed = parsed
        self.environment = environment
        self.standardOutput = standardOutput
        self.standardError = standardError
        self.jsonDiagnostics = jsonDiagnostics
    }

    /// The same invocation and writers with other parsed words (one command running another).
    public func with(parsed: ParsedArguments) -> CommandContext {
        CommandContext(commandPath: commandPath, parsed: parsed, environment: environment,
                       standardOutput: standardOutput, standardError: standardError, jsonDiagnostics: jsonDiagnostics)
    }

    /// Writes `text` and a newline to standard output, control characters other than line
    /// breaks escaped (`TerminalText`): no name a command quotes acts on the terminal.
    public func print(_ text: String) { standardOutput.write(TerminalText.escaped(text, keepingLineBreaks: true) + "\n") }
    /// Writes `text` as it is to standard output.
    public func write(_ text: String) { standardOutput.write(text) }
    /// Writes bytes as they are to standard output (output built as bytes need not become a String).
    public func write(bytes: UnsafeRawBufferPointer) { standardOutput(bytes) }
    /// The reader of standard output went away (`… | head -1` has what it wanted): a follow loop ends.
    public var outputReaderGone: Bool { standardOutput.isReaderGone }
    /// Writes `error: text` to standard error (`{"error":…,"exitCode":…}` when diagnostics are JSON), as
    /// the tree reports a failed command: for a command that ends the process itself.
    public func reportError(_ text: String, exitCode: Int32) {
        standardError.write(jsonDiagnostics ? CommandTree.jsonError(text, exitCode: exitCode) : "error: \(TerminalText.escaped(text))\n")
    }

    /// Writes `warning: text` to standard error; the command goes on.
    public func warn(_ text: String) {
        standardError.write(jsonDiagnostics ? "{\"warning\":\(CommandTree.quoted(text))}\n" : "warning: \(TerminalText.escaped(text))\n")
    }
}
