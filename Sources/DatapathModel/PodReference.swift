/// A pod as Kubernetes names it: its namespace and its name, `namespace/name` in
/// words and in JSON.
public struct PodReference: Hashable, Comparable, Sendable, CustomStringConvertible, Encodable {
    public let namespace: String
    public let name: String

    public init(namespace: String, name: String) {
        self.namespace = namespace
        self.name = name
    }

    /// `namespace/name`, both parts non-empty; nil for anything else.
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { return nil }
        self.init(namespace: String(parts[0]), name: String(parts[1]))
    }

    public var description: String { "\(namespace)/\(name)" }

    public static func < (a: PodReference, b: PodReference) -> Bool { (a.namespace, a.name) < (b.namespace, b.name) }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

extension PodRegistration {
    /// The pod this registration is for.
    public var pod: PodReference { PodReference(namespace: namespace, name: name) }
}
