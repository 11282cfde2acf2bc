import CommandTree
import Foundation
import Testing
import TestSupport

@testable import netfence

/// Every visible command of the tree, as the paths that reach it.
func visiblePaths(_ path: [any Command.Type] = [Netfence.self]) -> [[any Command.Type]] {
    [path] + path.last!.configuration.subcommands.filter { !$0.configuration.isHidden }.flatMap { visiblePaths(path + [$0]) }
}

func runTree(_ words: [String]) -> (status: Int32, out: String, err: String) {
    var out = "", err = ""
    let status = Netfence.tree.run(words, environment: [:], standardOutput: OutputSink { out += String(decoding: $0, as: UTF8.self) },
                                   standardError: OutputSink { err += String(decoding: $0, as: UTF8.self) })
    return (status, out, err)
}

@Suite struct GeneratedFilesTests {
    @Test(arguments: Shell.allCases)
    func committedCompletionScriptsMatchTheTree(shell: Shell) {
        let file = ["bash": "completions/netfence.bash", "zsh": "completions/_netfence", "fish": "completions/netfence.fish"][shell.rawValue]!
        Snapshot.expect(Netfence.tree.completionScript(for: shell), matches: file)
    }

    @Test func committedManPageMatchesTheTree() {
        Snapshot.expect(Netfence.tree.manPage(), matches: "docs/netfence.8")
    }

    @Test func completionAndManCommandsPrintTheSameFiles() {
        #expect(runTree(["completions", "zsh"]).out == Netfence.tree.completionScript(for: .zsh))
        #expect(runTree(["man"]).out == Netfence.tree.manPage())
    }

    @Test func helpOfEveryCommandMatchesItsSnapshot() {
        for path in visiblePaths() {
            let words = path.dropFirst().map { $0.configuration.name }
            let result = runTree(words + ["--help"])
            #expect(result.status == 0)
            let name = (["netfence"] + words).joined(separator: "-")
            Snapshot.expect(result.out, matches: "Tests/NetfenceTests/Snapshots/help-\(name).txt")
        }
    }

    @Test func helpTextsHaveNoStrayLineContinuations() {
        for path in visiblePaths() {
            let help = runTree(path.dropFirst().map { $0.configuration.name } + ["--help"]).out
            #expect(!help.contains("\\\n"), "\(path.map { $0.configuration.name }.joined(separator: " ")) help has a backslash at a line end")
        }
        #expect(!Netfence.tree.manPage().contains("\\e\n"), "man page has a backslash at a line end")
    }

    /// The man page and each command's help describe the same tree: every command,
    /// alias, option and positional appears in both.
    @Test func manPageAndHelpDescribeTheSameTree() {
        let man = Netfence.tree.manPage()
        for path in visiblePaths() {
            let words = path.dropFirst().map { $0.configuration.name }
            let help = runTree(words + ["--help"]).out
            let command = path.last!
            if path.count > 1 {
                #expect(man.contains(".SS \"\((["netfence"] + words).joined(separator: " "))\""))
                let parentHelp = runTree(Array(words.dropLast()) + ["--help"]).out
                let names = ([command.configuration.name] + command.configuration.aliases).joined(separator: ", ")
                #expect(parentHelp.contains("\n  \(names) "), "\(names) is listed in its parent's help")
            }
            for argument in command.arguments {
                let roffName = argument.kind == .flag || argument.kind == .option
                    ? "\\fB\\-\\-\(argument.long.replacingOccurrences(of: "-", with: "\\-"))\\fR" : "\\fI\(argument.long)\\fR"
                #expect(man.contains(roffName), "man page lists \(argument.long)")
                #expect(help.contains(argument.synopsis), "help lists \(argument.synopsis)")
            }
        }
    }

    @Test(arguments: [
        (["ebpf", "prgs"], "unknown-command"),
        (["ebpf", "progs", "--al"], "unknown-option"),
        (["ebpf", "progs", "abc"], "malformed-id"),
        (["ebpf", "maps", "-o", "yaml"], "bad-output-format"),
        (["ebpf"], "missing-subcommand"),
        (["ebpf", "progs", "--all", "7"], "all-and-ids"),
        (["completions", "tcsh"], "bad-shell"),
        (["loader", "attach", "--pod", "Shop/web_0", "--iface", "veth0"], "pod-not-a-kubernetes-name"),
    ])
    func usageErrorsMatchTheirSnapshots(words: [String], name: String) {
        let result = runTree(words)
        #expect(result.status == 64)
        #expect(result.out.isEmpty)
        Snapshot.expect(result.err, matches: "Tests/NetfenceTests/Snapshots/error-\(name).txt")
    }
}
