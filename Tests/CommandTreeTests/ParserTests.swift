import CommandTree
import Testing

/// A small tree that exercises every kind of definition, independent of netfence's commands.
enum Color: String, CaseIterable, ArgumentValue {
    case red, green
    static var defaultValueName: String { "color" }
}

struct Tool: Command {
    static let configuration = CommandConfiguration(name: "tool", abstract: "A tool.", subcommands: [Group.self])
    static let verbose = Option<String>(short: "v", long: "level", help: "Level.", default: "low", environment: "TOOL_LEVEL")
    static let tree = CommandTree(root: Tool.self, globals: [verbose.definition], version: "9.9")
    init(parsed: ParsedArguments) {}
}

struct Group: Command {
    static let configuration = CommandConfiguration(name: "group", aliases: ["g"], abstract: "A group.",
                                                    subcommands: [Leaf.self, Hidden.self, Needy.self])
    static let filter = Option<String>(long: "filter", help: "A filter of the group's own.", default: "")
    static let arguments = [filter.definition]
    init(parsed: ParsedArguments) {}
}

/// A command with a required option: the type is not optional, and the parser refuses a line without it.
struct Needy: Command {
    static let configuration = CommandConfiguration(name: "needy", abstract: "Needs a name.")
    static let name = Option<String>(long: "name", help: "The name.")
    static let arguments = [name.definition]
    let name: String
    init(parsed: ParsedArguments) { name = parsed[Self.name] }
    func run(_ context: CommandContext) throws { context.print("name=\(name)") }
}

struct Hidden: Command {
    static let configuration = CommandConfiguration(name: "hidden", abstract: "Hidden.", isHidden: true)
    init(parsed: ParsedArguments) {}
    func run(_ context: CommandContext) throws { context.print("hidden ran") }
}

struct Leaf: Command {
    static let configuration = CommandConfiguration(name: "leaf", aliases: ["l"], abstract: "A leaf.")
    static let all = Flag(short: "a", long: "all", help: "All.")
    static let quiet = Flag(short: "q", long: "quiet", help: "Quiet.")
    static let count = Option<Int>(short: "n", long: "count", help: "Count.", default: 3, environment: "TOOL_COUNT")
    static let color = Option<Color?>(long: "color", help: "Color.", default: nil, showDefault: false)
    static let items = Positionals<Int>(name: "item", help: "Items.")
    static let arguments = [all.definition, quiet.definition, count.definition, color.definition, items.definition]

    let parsed: ParsedArguments
    init(parsed: ParsedArguments) { self.parsed = parsed }

    func validate() throws {
        if parsed[Self.count] > 100 { throw UsageError("--count must be at most 100") }
    }

    func run(_ context: CommandContext) throws {
        if parsed[Self.count] == 13 { throw RuntimeError("unlucky count", hint: "pick another") }
        context.print("all=\(parsed[Self.all]) quiet=\(parsed[Self.quiet]) count=\(parsed[Self.count]) "
            + "color=\(parsed[Self.color]?.rawValue ?? "none") items=\(parsed[Self.items]) level=\(parsed[Tool.verbose])")
    }
}

/// Runs the fixture tree and returns status, stdout, stderr.
func run(_ words: [String], environment: [String: String] = [:]) -> (Int32, String, String) {
    var out = "", err = ""
    let status = Tool.tree.run(words, environment: environment, standardOutput: OutputSink { out += String(decoding: $0, as: UTF8.self) },
                                standardError: OutputSink { err += String(decoding: $0, as: UTF8.self) })
    return (status, out, err)
}

@Suite struct ParserTests {
    @Test func defaultsApplyWhenNothingIsGiven() {
        #expect(run(["group", "leaf"]) == (0, "all=false quiet=false count=3 color=none items=[] level=low\n", ""))
    }

    @Test func longShortInlineAndClusteredSpellingsAllParse() {
        let expected = "all=true quiet=true count=7 color=green items=[1, 2] level=high\n"
        #expect(run(["group", "leaf", "--all", "--quiet", "--count", "7", "--color=green", "1", "2", "--level", "high"]).1 == expected)
        #expect(run(["g", "l", "-aq", "-n7", "--color", "green", "1", "2", "-vhigh"]).1 == expected)
        #expect(run(["-v", "high", "g", "l", "-qan", "7", "1", "--color=green", "2"]).1 == expected)
    }

    @Test func globalOptionsWorkBeforeAndAfterTheCommand() {
        #expect(run(["--level=x", "group", "leaf"]).1.hasSuffix("level=x\n"))
        #expect(run(["group", "leaf", "--level=y"]).1.hasSuffix("level=y\n"))
    }

    /// A value from outside quoted in a command's output cannot act on the terminal: C0, DEL and C1
    /// controls print as escapes; the output's own line breaks stay.
    @Test func whatACommandPrintsCarriesNoControlCharacters() {
        #expect(run(["g", "l", "--level", "a\u{1b}[31mb\tc\u{7f}\u{9b}d\ne"]).1.hasSuffix("level=a\\x1b[31mb\\tc\\x7f\\x9bd\ne\n"))
        #expect(TerminalText.escaped("one\ntwo é ✓\n", keepingLineBreaks: true) == "one\ntwo é ✓\n", "a clean text is left as it is")
    }

    @Test func aRepeatedOptionKeepsTheLastValue() {
        #expect(run(["g", "l", "-n", "1", "-n", "2"]).1.contains("count=2"))
    }

    @Test func environmentFillsAnOptionThatWasNotGiven() {
        #expect(run(["g", "l"], environment: ["TOOL_LEVEL": "env"]).1.hasSuffix("level=env\n"))
        #expect(run(["g", "l", "--level", "flag"], environment: ["TOOL_LEVEL": "env"]).1.hasSuffix("level=flag\n"))
    }

    @Test func doubleDashEndsOptions() {
        #expect(run(["g", "l", "--", "-5", "6"]).1.contains("items=[-5, 6]"))
        #expect(run(["g", "l", "-5"]).1.contains("items=[-5]"))
    }

    @Test func helpIsAvailableAtEveryLevel() {
        for words in [["--help"], ["-h"], ["group", "--help"], ["g", "leaf", "-h"], ["g", "l", "--count", "5", "--help"]] {
            let (status, out, err) = run(words)
            #expect(status == 0)
            #expect(out.hasPrefix("OVERVIEW: "))
            #expect(err.isEmpty)
        }
        #expect(run(["g", "--help"]).1.contains("SUBCOMMANDS:\n  leaf, l "))
        #expect(!run(["g", "--help"]).1.contains("hidden"))
        #expect(run(["g", "hidden"]).1 == "hidden ran\n")
    }

    @Test func versionPrintsNameAndVersion() {
        #expect(run(["--version"]) == (0, "tool 9.9\n", ""))
    }

    @Test(arguments: [
        (["g", "l", "--colour", "red"], "Error: unknown option '--colour'; did you mean '--color'?", "tool group leaf"),
        (["g", "l", "-x"], "Error: unknown option '-x'", "tool group leaf"),
        (["g", "l", "--count"], "Error: option '--count' needs a value <n>", "tool group leaf"),
        (["g", "l", "--count", "many"], "Error: 'many' is not a valid value for '--count' (expected a whole number)", "tool group leaf"),
        (["g", "l", "--color", "blue"], "Error: 'blue' is not a valid value for '--color' (one of: red, green)", "tool group leaf"),
        (["g", "l", "--all=yes"], "Error: flag '--all' takes no value", "tool group leaf"),
        (["g", "l", "seven"], "Error: 'seven' is not a valid <item> (expected a whole number)", "tool group leaf"),
        (["g", "lef"], "Error: unknown command 'lef' for 'tool group'; did you mean 'leaf'?", "tool group"),
        (["group"], "Error: 'tool group' needs a subcommand: leaf, needy", "tool group"),
        (["g", "l", "-n", "500"], "Error: --count must be at most 100", "tool group leaf"),
        (["--version=2"], "Error: flag '--version' takes no value", "tool"),
        (["g", "needy"], "Error: missing --name <value>: The name.", "tool group needy"),
        (["g", "l", "--filter", "x"], "Error: unknown option '--filter'", "tool group leaf"),
    ])
    func usageErrorsSayWhatAndWhereThenExit64(words: [String], message: String, command: String) {
        let (status, out, err) = run(words)
        #expect(status == 64)
        #expect(out.isEmpty)
        let lines = err.split(separator: "\n").map(String.init)
        #expect(lines.first == message)
        #expect(lines.count == 3)
        #expect(lines.dropFirst().first?.hasPrefix("Usage: \(command)") == true)
        #expect(lines.last == "  See '\(command) --help'.")
    }

    @Test func anEmptyEnvironmentVariableIsAValueNotTheDefault() {
        // `VAR= tool …` says something: a string option takes it, a number refuses it.
        #expect(run(["g", "l"], environment: ["TOOL_LEVEL": ""]).1.hasSuffix("level=\n"))
        let (status, _, err) = run(["g", "l"], environment: ["TOOL_COUNT": ""])
        #expect(status == 64 && err.hasPrefix("Error: '' from TOOL_COUNT is not a valid value for '--count'"))
    }

    @Test func anInvalidEnvironmentValueIsAUsageErrorNamingTheVariable() {
        let (status, _, err) = run(["g", "l"], environment: ["TOOL_COUNT": "x"])
        #expect(status == 64)
        #expect(err.hasPrefix("Error: 'x' from TOOL_COUNT is not a valid value for '--count' (expected a whole number)\n"))
    }

    @Test func runtimeErrorsAreOneLineAndExit1() {
        #expect(run(["g", "l", "-n", "13"]) == (1, "", "error: unlucky count; pick another\n"))
    }

    @Test func usageLineListsOptionsThenPositionals() {
        #expect(Tool.tree.usageLine([Tool.self, Group.self, Leaf.self])
            == "tool group leaf [--all] [--quiet] [--count <n>] [--color <color>] [<item> ...]")
        #expect(Tool.tree.usageLine([Tool.self, Group.self, Needy.self]) == "tool group needy --name <value>", "a required option has no brackets")
    }

    @Test func aRequiredOptionGivenRunsAndHelpNeedsNone() {
        #expect(run(["g", "needy", "--name", "x"]) == (0, "name=x\n", ""))
        #expect(run(["g", "needy", "--help"]).0 == 0)
    }

    /// A subcommand's help lists its own options and the globals, never its parent's; an empty default is not shown.
    @Test func helpListsOwnAndGlobalOptionsOnly() {
        let leaf = run(["g", "l", "--help"]).1
        #expect(!leaf.contains("--filter"), "the group's option is not the leaf's")
        #expect(leaf.contains("GLOBAL OPTIONS:\n  -v, --level <value>"))
        let group = run(["g", "--help"]).1
        #expect(group.contains("--filter <value>") && !group.contains("(default: )"), "\(group)")
    }
}

@Suite struct TableTests {
    @Test func columnsAlignAndTrailingSpaceIsTrimmed() {
        var table = Table(headers: ["ID", "NAME", "NOTE"])
        table.append(["1", "alpha", ""])
        table.append(["100", "b", "x"])
        #expect(table.render() == "ID   NAME   NOTE\n1    alpha\n100  b      x")
        #expect(table.render(headers: false) == "1    alpha\n100  b      x")
    }
}
