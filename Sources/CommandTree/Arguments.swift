/// A type an option or positional argument converts its text to.
public protocol ArgumentValue: Sendable {
    /// Parses one command-line word; nil when it is not a valid value.
    init?(argument: String)
    /// What the help calls the value when the definition names none (`<n>`).
    static var defaultValueName: String { get }
    /// The words completion offers, when the set is closed (an enum's cases).
    static var completionChoices: [String]? { get }
    /// What a valid word looks like, for errors: `a whole number`.
    static var expectedForm: String? { get }
}

extension ArgumentValue {
    public static var completionChoices: [String]? { nil }
    public static var expectedForm: String? { completionChoices.map { "one of: \($0.joined(separator: ", "))" } }
}

extension String: ArgumentValue {
    public init?(argument: String) { self = argument }
    public static var defaultValueName: String { "value" }
}

extension Int: ArgumentValue {
    public init?(argument: String) { self.init(argument, radix: 10) }
    public static var defaultValueName: String { "n" }
    public static var expectedForm: String? { "a whole number" }
}

extension UInt16: ArgumentValue {
    public init?(argument: String) { self.init(argument, radix: 10) }
    public static var defaultValueName: String { "n" }
    public static var expectedForm: String? { "a whole number from 0 to 65535" }
}

extension UInt32: ArgumentValue {
    public init?(argument: String) { self.init(argument, radix: 10) }
    public static var defaultValueName: String { "n" }
    public static var expectedForm: String? { "a whole number from 0 to \(UInt32.max)" }
}

extension Double: ArgumentValue {
    public init?(argument: String) {
        guard let value = Double(argument), value.isFinite else { return nil }
        self = value
    }
    public static var defaultValueName: String { "number" }
    public static var expectedForm: String? { "a number" }
}

extension Optional: ArgumentValue where Wrapped: ArgumentValue {
    public init?(argument: String) {
        guard let value = Wrapped(argument: argument) else { return nil }
        self = .some(value)
    }
    public static var defaultValueName: String { Wrapped.defaultValueName }
    public static var completionChoices: [String]? { Wrapped.completionChoices }
    public static var expectedForm: String? { Wrapped.expectedForm }
}

/// String enums with a closed set of cases parse from their raw values and complete to them.
extension ArgumentValue where Self: CaseIterable & RawRepresentable, RawValue == String {
    public init?(argument: String) { self.init(rawValue: argument) }
    public static var completionChoices: [String]? { allCases.map(\.rawValue) }
}

/// What the shell should offer for an option's value.
public enum CompletionKind: Sendable, Equatable {
    case none
    case file
    case directory
    case choices([String])
}

/// The untyped description of one flag, option or positional argument: what
/// parsing, help, completions and the man page all read.
public struct ArgumentDefinition: Sendable {
    public enum Kind: Sendable, Equatable {
        case flag
        case option
        /// A positional argument; `repeating` takes every remaining word.
        case positional(repeating: Bool)
    }

    public let kind: Kind
    public let short: Character?
    /// The long name without dashes; for positionals, the name help shows.
    public let long: String
    public let valueName: String
    public let help: String
    /// The default as help shows it, if there is one worth showing.
    public var defaultText: String? { renderDefault() }
    /// The default, the completion choices and the expected form are worked out only when help, completion
    /// or an error asks: describing values at start-up resolved their types' conformances, nearly half of a
    /// short command's process (the tree is built for every call).
    let renderDefault: @Sendable () -> String?
    /// An environment variable read when the option is not given.
    public let environment: String?
    public var completion: CompletionKind { resolveCompletion() }
    let resolveCompletion: @Sendable () -> CompletionKind
    /// Whether a positional or an option must be given.
    public let isRequired: Bool
    /// What a valid value looks like, for usage errors.
    public var expectedForm: String? { describeForm() }
    var describeForm: @Sendable () -> String? = { nil }
    /// Whether one word parses as the value type.
    let check: @Sendable (String) -> Bool

    /// `-o, --output <format>` / `--all` / `<id> ...`: the words usage and help show.
    public var synopsis: String {
        switch kind {
        case .flag: return names
        case .option: return "\(names) <\(valueName)>"
        case .positional(let repeating): return "<\(long)>" + (repeating ? " ..." : "")
        }
    }

    /// `-o, --output` or `--all`.
    public var names: String {
        (short.map { "-\($0), " } ?? "") + "--\(long)"
    }

    /// The shortest spelling for a usage line: `[-o <format>]`, `[--all]`, `<id> ...`.
    var usageToken: String {
        switch kind {
        case .flag: return "[--\(long)]"
        case .option: return isRequired ? "--\(long) <\(valueName)>" : "[--\(long) <\(valueName)>]"
        case .positional(let repeating):
            let word = "<\(long)>" + (repeating ? " ..." : "")
            return isRequired ? word : "[\(word)]"
        }
    }
}

/// Anything that carries an argument definition: lets a command list flags and
/// options of different value types together (`[a, b] as [any ArgumentDefining]`).
public protocol ArgumentDefining {
    var definition: ArgumentDefinition { get }
}

/// A boolean switch such as `--all`.
public struct Flag: Sendable, ArgumentDefining {
    public let definition: ArgumentDefinition

    public init(short: Character? = nil, long: String, help: String) {
        definition = ArgumentDefinition(
            kind: .flag, short: short, long: long, valueName: "", help: help, renderDefault: { nil },
            environment: nil, resolveCompletion: { .none }, isRequired: false, check: { _ in true })
    }
}

/// An option that takes a value, `--name value` or `--name=value`: with a
/// default, or required (the parser refuses a command line without it).
public struct Option<Value: ArgumentValue>: Sendable, ArgumentDefining {
    public let definition: ArgumentDefinition
    /// nil: the option is required.
    let defaultValue: Value?

    /// `showDefault: false` hides a default that means "not given"; an empty default is never shown.
    public init(short: Character? = nil, long: String, valueName: String? = nil, help: String,
                default defaultValue: Value, showDefault: Bool = true, environment: String? = nil,
                completion: CompletionKind? = nil) {
        let render: @Sendable () -> String?
        if showDefault {
            render = { String(describing: defaultValue) }
        } else {
            render = { nil }
        }
        self.init(short: short, long: long, valueName: valueName, help: help, defaultValue: defaultValue,
                  renderDefault: render, environment: environment, completion: completion)
    }

    /// A required option: the command runs only when it is given.
    public init(short: Character? = nil, long: String, valueName: String? = nil, help: String, completion: CompletionKind? = nil) {
        self.init(short: short, long: long, valueName: valueName, help: help, defaultValue: nil, renderDefault: { nil }, environment: nil,
                  completion: completion)
    }

    private init(short: Character?, long: String, valueName: String?, help: String, defaultValue: Value?,
                 renderDefault: @escaping @Sendable () -> String?, environment: String?, completion: CompletionKind?) {
        self.defaultValue = defaultValue
        definition = ArgumentDefinition(
            kind: .option, short: short, long: long, valueName: valueName ?? Value.defaultValueName, help: help,
            renderDefault: { renderDefault().flatMap { $0.isEmpty ? nil : $0 } }, environment: environment,
            resolveCompletion: { completion ?? Value.completionChoices.map(CompletionKind.choices) ?? .none },
            isRequired: defaultValue == nil, describeForm: { Value.expectedForm }, check: { Value(argument: $0) != nil })
    }
}

extension Option where Value: Comparable {
    /// Refuses `value` outside `range` with the one message bounded options give:
    /// `--passes must be between 1 and 20`.
    public func check(_ value: Value, within range: ClosedRange<Value>) throws {
        guard !range.contains(value) else { return }
        throw UsageError("--\(definition.long) must be between \(range.lowerBound) and \(range.upperBound)")
    }
}

/// Positional arguments: zero or more words of one type, after the options.
public struct Positionals<Value: ArgumentValue>: Sendable, ArgumentDefining {
    public let definition: ArgumentDefinition

    public init(name: String, help: String, completion: CompletionKind = .none) {
        definition = ArgumentDefinition(
            kind: .positional(repeating: true), short: nil, long: name, valueName: name, help: help,
            renderDefault: { nil }, environment: nil, resolveCompletion: { completion }, isRequired: false,
            describeForm: { Value.expectedForm }, check: { Value(argument: $0) != nil })
    }
}

/// One positional argument that must be given.
public struct Positional<Value: ArgumentValue>: Sendable, ArgumentDefining {
    public let definition: ArgumentDefinition

    public init(name: String, help: String, completion: CompletionKind? = nil) {
        definition = ArgumentDefinition(
            kind: .positional(repeating: false), short: nil, long: name, valueName: name, help: help,
            renderDefault: { nil }, environment: nil,
            resolveCompletion: { completion ?? Value.completionChoices.map(CompletionKind.choices) ?? .none },
            isRequired: true, describeForm: { Value.expectedForm }, check: { Value(argument: $0) != nil })
    }
}

/// What the parser found, read back with the typed definitions:
/// `parsed[Self.all]`, `parsed[Self.output]`, `parsed[Self.ids]`.
public struct ParsedArguments: Sendable {
    var words: [String: [String]] = [:]
    var flags: Set<String> = []

    public init() {}

    public subscript(flag: Flag) -> Bool { flags.contains(flag.definition.long) }

    /// The last value given (options may repeat), else the environment's, else the default
    /// (a required option is there once parsing succeeded: the parser refuses a line without it).
    public subscript<Value>(option: Option<Value>) -> Value {
        words[option.definition.long]?.last.flatMap(Value.init(argument:)) ?? option.defaultValue!
    }

    /// Every value given for a repeatable option, in order (none: empty; the default is not one).
    public func all<Value>(_ option: Option<Value>) -> [Value] {
        (words[option.definition.long] ?? []).compactMap(Value.init(argument:))
    }

    public subscript<Value>(positionals: Positionals<Value>) -> [Value] {
        (words[positionals.definition.long] ?? []).compactMap(Value.init(argument:))
    }

    /// Present once parsing succeeded: the parser rejects a missing required positional.
    public subscript<Value>(positional: Positional<Value>) -> Value {
        words[positional.definition.long]!.compactMap(Value.init(argument:)).first!
    }

    /// A copy with `option` set as if `word` had been typed (one command running another).
    public func setting<Value>(_ option: Option<Value>, to word: String) -> ParsedArguments {
        var copy = self
        copy.words[option.definition.long] = [word]
        return copy
    }
}
