import Foundation
import Yams

/// Bytes of a policy input turned into documents (JSON or YAML values) within
/// bounds, so a hostile or broken file is refused quickly with bounded memory:
/// its size, its nesting (libyaml refuses more than 1,000 levels, Foundation's
/// JSON more than 512) and what YAML aliases expand to. One malformed document
/// fails the whole input, named by its index and position.
enum InputDocuments {
    /// The largest input read: far above any PolicyEndpoint list a cluster makes.
    static let maximumBytes = 64 << 20
    /// Nodes YAML aliases may add beyond the text itself (a "billion laughs"
    /// document expands past this within microseconds and is refused).
    static let maximumAliasExpansion = 100_000

    static func load(_ bytes: [UInt8]) throws(PolicyInputError) -> [InputValue] {
        guard bytes.count <= maximumBytes else {
            throw PolicyInputError("", "the input is larger than the \(megabytes(maximumBytes)) netfence reads; split it")
        }
        try requireText(bytes)
        guard let first = bytes.first(where: { ![0x20, 0x09, 0x0a, 0x0d].contains($0) }) else {
            throw PolicyInputError("", "the input is empty: no objects to read")
        }
        if first == UInt8(ascii: "{") || first == UInt8(ascii: "[") { return [try json(bytes)] }
        return try yaml(String(decoding: bytes, as: UTF8.self))
    }

    /// UTF-8 text without NUL: anything else is not JSON or YAML, and is named, not echoed.
    private static func requireText(_ bytes: [UInt8]) throws(PolicyInputError) {
        if let zero = bytes.firstIndex(of: 0) {
            throw PolicyInputError("", "the input is not text (a NUL byte at \(position(of: zero, in: bytes))); give JSON or YAML")
        }
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        var offset = 0
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar): offset += UTF8.width(scalar)
            case .emptyInput: return
            case .error:
                throw PolicyInputError("", "the input is not UTF-8 text (at \(position(of: offset, in: bytes))); give JSON or YAML")
            }
        }
    }

    // MARK: JSON

    private static func json(_ bytes: [UInt8]) throws(PolicyInputError) -> InputValue {
        do {
            return try JSONReader.parse(bytes)
        } catch {
            throw PolicyInputError("", "not valid JSON: \(error.message) at \(position(of: error.offset, in: bytes))")
        }
    }

    // MARK: YAML

    private static func yaml(_ text: String) throws(PolicyInputError) -> [InputValue] {
        var documents: [InputValue] = []
        var budget = maximumAliasExpansion
        let constructor = Constructor.default  // made anew on every access
        do {
            let parser = try Parser(yaml: text)
            while let root = try parser.nextRoot() {
                var anchors = Set<ObjectIdentifier>()
                documents.append(try value(root, document: documents.count, constructor: constructor, anchors: &anchors,
                                           budget: &budget, underAlias: false))
            }
        } catch let error as PolicyInputError {
            throw error
        } catch let error as YamlError {
            throw PolicyInputError("document[\(documents.count)]", describe(error))
        } catch {
            throw PolicyInputError("document[\(documents.count)]", "not valid YAML")
        }
        return documents
    }

    /// A YAML node as an ``InputValue``, scalars typed by the YAML core schema.
    /// A node whose anchor was seen before is an alias: what it adds counts
    /// against `budget`.
    private static func value(_ node: Node, document: Int, constructor: Constructor, anchors: inout Set<ObjectIdentifier>,
                              budget: inout Int, underAlias: Bool) throws -> InputValue {
        var expanding = underAlias
        if let anchor = node.anchor, !anchors.insert(ObjectIdentifier(anchor)).inserted { expanding = true }
        if expanding {
            budget -= 1
            if budget < 0 {
                throw PolicyInputError("document[\(document)]",
                                       "YAML aliases expand to more than \(maximumAliasExpansion) nodes; refused (an alias bomb?)")
            }
        }
        switch node {
        case .scalar(let scalar):
            switch constructor.any(from: node) {
            case is NSNull: return .null
            case let flag as Bool: return .bool(flag)
            case let number as Int: return .number(Double(number), integer: number)
            case let number as Double: return .number(number, integer: Int(exactly: number))
            default: return .string(scalar.string)
            }
        case .sequence(let sequence):
            var items: [InputValue] = []
            items.reserveCapacity(sequence.count)
            for item in sequence {
                items.append(try value(item, document: document, constructor: constructor, anchors: &anchors, budget: &budget, underAlias: expanding))
            }
            return .list(items)
        case .mapping(let mapping):
            var members: [String: InputValue] = [:]
            for (key, member) in mapping {
                guard case .scalar(let scalar) = key else {
                    throw PolicyInputError("document[\(document)]", "a mapping key at \(mark(key)) is not a plain word")
                }
                members[scalar.string] = try value(member, document: document, constructor: constructor, anchors: &anchors,
                                                   budget: &budget, underAlias: expanding)
            }
            return .object(members)
        case .alias:
            throw PolicyInputError("document[\(document)]", "an unresolved YAML alias at \(mark(node))")
        }
    }

    private static func mark(_ node: Node) -> String {
        node.mark.map { "line \($0.line), column \($0.column)" } ?? "an unknown position"
    }

    /// libyaml's problem and context as one line: `line 4, column 3: did not find
    /// expected key (while parsing a block mapping that starts at line 2, column 1)`.
    private static func describe(_ error: YamlError) -> String {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            if problem.hasPrefix("Maximum nesting level") {
                return "line \(mark.line), column \(mark.column): more than 1000 nested lists or mappings"
            }
            let around = context.map { " (\($0.text) that starts at line \($0.mark.line), column \($0.mark.column))" } ?? ""
            return "line \(mark.line), column \(mark.column): \(problem)\(around)"
        case .reader(let problem, let offset, let value, let text):
            let character = value >= 0 ? String(format: " (0x%02x)", value) : ""
            guard let offset else { return "not readable YAML: \(problem)\(character)" }
            let prefix = text.prefix(offset)
            let line = prefix.reduce(1) { $1 == "\n" ? $0 + 1 : $0 }
            let column = prefix.reversed().prefix { $0 != "\n" }.count + 1
            return "line \(line), column \(column): \(problem)\(character)"
        case .duplicatedKeysInMapping(let duplicates, let context):
            return "line \(context.mark.line), column \(context.mark.column): the key \(duplicates.sorted().joined(separator: ", ")) appears twice"
        default: return "not valid YAML"
        }
    }

    /// `line 3, column 7` of byte `offset` (columns counted in characters).
    static func position(of offset: Int, in bytes: [UInt8]) -> String {
        let end = min(max(offset, 0), bytes.count)
        var line = 1, lineStart = 0
        for index in 0..<end where bytes[index] == 0x0a {
            line += 1
            lineStart = index + 1
        }
        let column = bytes[lineStart..<end].reduce(1) { $1 & 0xc0 == 0x80 ? $0 : $0 + 1 }
        return "line \(line), column \(column)"
    }

    private static func megabytes(_ count: Int) -> String {
        String(format: "%.1f MiB", Double(count) / Double(1 << 20))
    }
}
