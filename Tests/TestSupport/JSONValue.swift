import Foundation

/// A tiny mutable JSON tree for tests that break one field of a document.
enum JSONValue {
    case object([String: JSONValue]), array([JSONValue]), other(Any)

    static func parse(_ text: String) throws -> JSONValue {
        wrap(try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed]))
    }

    static func wrap(_ any: Any) -> JSONValue {
        if let dictionary = any as? [String: Any] { return .object(dictionary.mapValues(wrap)) }
        if let array = any as? [Any] { return .array(array.map(wrap)) }
        return .other(any)
    }

    var unwrapped: Any {
        switch self {
        case .object(let dictionary): dictionary.mapValues(\.unwrapped)
        case .array(let array): array.map(\.unwrapped)
        case .other(let any): any
        }
    }

    mutating func set(_ path: [String], _ value: JSONValue) {
        guard let first = path.first else { self = value; return }
        switch self {
        case .object(var dictionary):
            var child = dictionary[first] ?? .object([:])
            child.set(Array(path.dropFirst()), value)
            dictionary[first] = child
            self = .object(dictionary)
        case .array(var array):
            guard let index = Int(first), index < array.count else { return }
            array[index].set(Array(path.dropFirst()), value)
            self = .array(array)
        case .other:
            return
        }
    }

    var serialized: String {
        String(decoding: try! JSONSerialization.data(withJSONObject: unwrapped, options: [.fragmentsAllowed]), as: UTF8.self)
    }
}
