/// Shell completion scripts for bash, zsh and fish, generated from the tree.
public enum Shell: String, CaseIterable, Sendable, ArgumentValue {
    case bash, zsh, fish
    public static var defaultValueName: String { "shell" }
}

/// One command of the tree with what completion needs about it.
struct CompletionNode {
    /// `netfence ebpf progs`
    let path: String
    /// Words that lead here from the parent's path (name and aliases).
    let spellings: [String]
    let parentPath: String?
    let abstract: String
    let subcommands: [(name: String, abstract: String)]
    let options: [ArgumentDefinition]
}

extension CommandTree {
    /// The completion script for `shell`.
    public func completionScript(for shell: Shell) -> String {
        switch shell {
        case .bash: bashCompletion()
        case .zsh: zshCompletion()
        case .fish: fishCompletion()
        }
    }

    /// Every visible command, depth first, with the options it accepts (globals included).
    func completionNodes() -> [CompletionNode] {
        var nodes: [CompletionNode] = []
        func visit(_ path: [any Command.Type], parent: String?) {
            let command = path.last!
            let visible = command.configuration.subcommands.filter { !$0.configuration.isHidden }
            nodes.append(CompletionNode(
                path: commandPath(path), spellings: [command.configuration.name] + command.configuration.aliases,
                parentPath: parent, abstract: command.configuration.abstract,
                subcommands: visible.map { ($0.configuration.name, $0.configuration.abstract) },
                options: definitions(along: path).filter { $0.kind == .flag || $0.kind == .option }))
            for sub in visible { visit(path + [sub], parent: commandPath(path)) }
        }
        visit([root], parent: nil)
        return nodes
    }

    /// Options that take a value, with their completion, once per long name.
    private func valueOptions() -> [ArgumentDefinition] {
        var seen = Set<String>()
        return completionNodes().flatMap(\.options).filter { $0.kind == .option && seen.insert($0.long).inserted }
    }

    private var name: String { root.configuration.name }
    private var functionName: String { "_" + name.replacingOccurrences(of: "-", with: "_") }

    private func spellings(_ option: ArgumentDefinition) -> [String] {
        (option.short.map { ["-\($0)"] } ?? []) + ["--\(option.long)"]
    }

    /// The body of the bash/zsh loop over typed words: skip an option's value,
    /// and follow a subcommand name or alias to the command's path.
    private func shellPathStep(word: String) -> String {
        var out = "        case \"\(word)\" in\n"
        let valueSpellings = valueOptions().flatMap(spellings)
        if !valueSpellings.isEmpty {
            out += "            \(valueSpellings.joined(separator: "|"))) ((i++)); continue ;;\n"
        }
        out += "        esac\n        case \"$path \(word)\" in\n"
        for node in completionNodes() {
            guard let parent = node.parentPath else { continue }
            let patterns = node.spellings.map { "\"\(parent) \($0)\"" }.joined(separator: "|")
            out += "            \(patterns)) path=\"\(node.path)\" ;;\n"
        }
        return out + "        esac\n"
    }

    /// A bash/zsh `case` that completes the value of the option just typed, with
    /// `action` giving each option's shell command.
    private func shellValueCases(previousWord: String, action: (ArgumentDefinition) -> String) -> String {
        var out = "    case \"\(previousWord)\" in\n"
        for option in valueOptions() {
            out += "        \(spellings(option).joined(separator: "|"))) \(action(option)); return ;;\n"
        }
        return out + "    esac\n"
    }

    // MARK: bash

    private func bashCompletion() -> String {
        var out = """
            # bash completion for \(name). Generated from the command tree by
            # '\(name) completions bash'; do not edit.
            \(functionName)() {
                local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
                local path="\(name)" i
                for ((i = 1; i < COMP_CWORD; i++)); do

            """
        out += shellPathStep(word: "${COMP_WORDS[i]}")
        out += "    done\n" + shellValueCases(previousWord: "$prev") { option in
            switch option.completion {
            case .choices(let words): "COMPREPLY=($(compgen -W \"\(words.joined(separator: " "))\" -- \"$cur\"))"
            case .file: "COMPREPLY=($(compgen -f -- \"$cur\"))"
            case .directory: "COMPREPLY=($(compgen -d -- \"$cur\"))"
            case .none: "COMPREPLY=()"
            }
        }
        out += "    case \"$path\" in\n"
        for node in completionNodes() {
            let words = node.subcommands.map(\.name) + node.options.flatMap(spellings)
            out += "        \"\(node.path)\") COMPREPLY=($(compgen -W \"\(words.joined(separator: " "))\" -- \"$cur\")) ;;\n"
        }
        out += "    esac\n}\ncomplete -F \(functionName) \(name)\n"
        return out
    }

    // MARK: zsh

    private func zshCompletion() -> String {
        var out = """
            #compdef \(name)
            # zsh completion for \(name). Generated from the command tree by
            # '\(name) completions zsh'; do not edit.
            \(functionName)() {
                local path="\(name)" i
                for ((i = 2; i < CURRENT; i++)); do

            """
        out += shellPathStep(word: "${words[i]}")
        out += "    done\n" + shellValueCases(previousWord: "${words[CURRENT-1]}") { option in
            switch option.completion {
            case .choices(let words): "compadd -- \(words.joined(separator: " "))"
            case .file: "_files"
            case .directory: "_files -/"
            case .none: "_message '\(option.valueName)'"
            }
        }
        out += "    local -a items\n    case \"$path\" in\n"
        for node in completionNodes() {
            let items = node.subcommands.map { zshItem($0.name, $0.abstract) }
                + node.options.flatMap { option in spellings(option).map { zshItem($0, option.help) } }
            out += "        \"\(node.path)\") items=(\(items.joined(separator: " "))) ;;\n"
        }
        out += "    esac\n    _describe -t commands '\(name)' items\n}\n\(functionName) \"$@\"\n"
        return out
    }

    private func zshItem(_ word: String, _ description: String) -> String {
        let text = "\(word):\(description.replacingOccurrences(of: ":", with: "\\:"))"
        return "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    // MARK: fish

    private func fishCompletion() -> String {
        let pathFunction = "__\(functionName.dropFirst())_path"
        var out = """
            # fish completion for \(name). Generated from the command tree by
            # '\(name) completions fish'; do not edit.
            function \(pathFunction)
                set -l path \(name)
                set -l skip 0
                for word in (commandline -opc)[2..-1]
                    if test $skip -eq 1
                        set skip 0
                        continue
                    end
                    switch $word

            """
        let valueSpellings = valueOptions().flatMap(spellings)
        if !valueSpellings.isEmpty {
            out += "            case \(valueSpellings.map { "'\($0)'" }.joined(separator: " "))\n                set skip 1\n                continue\n"
        }
        out += "        end\n        switch \"$path $word\"\n"
        for node in completionNodes() {
            guard let parent = node.parentPath else { continue }
            out += "            case \(node.spellings.map { "'\(parent) \($0)'" }.joined(separator: " "))\n"
            out += "                set path '\(node.path)'\n"
        }
        out += "        end\n    end\n    echo $path\nend\n\ncomplete -c \(name) -f\n"
        for node in completionNodes() {
            let condition = "-n 'test (\(pathFunction)) = \"\(node.path)\"'"
            for sub in node.subcommands {
                out += "complete -c \(name) \(condition) -a \(sub.name) -d \(fishQuote(sub.abstract))\n"
            }
            for option in node.options {
                var line = "complete -c \(name) \(condition)"
                if let short = option.short { line += " -s \(short)" }
                line += " -l \(option.long)"
                if option.kind == .option {
                    switch option.completion {
                    case .choices(let words): line += " -x -a '\(words.joined(separator: " "))'"
                    case .file: line += " -r -F"
                    case .directory: line += " -x -a '(__fish_complete_directories)'"
                    case .none: line += " -x"
                    }
                }
                out += line + " -d \(fishQuote(option.help))\n"
            }
        }
        return out
    }

    private func fishQuote(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'"
    }
}
