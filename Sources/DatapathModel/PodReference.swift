/// A pod as Kubernetes names it: its namespace and its name, `namespace/name` in
/// words and in JSON.
public struct PodReference: Hashable, Comparable, Sendable, CustomStringConvertible, Encodable {
    public let namespace: String
    public let name: String

    public init(namespace: String, name: String) {
        self.namespace = namespace
        self.name = name
    }

    /// `namespace/name`, each a name the API server admits (``KubernetesName``); nil for anything else.
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, KubernetesName.admits(String(parts[0]), .namespace), KubernetesName.admits(String(parts[1]), .object) else {
            return nil
        }
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

/// Names as the API server admits them: objects and pods a DNS-1123 subdomain (at most 253
/// characters), namespaces a DNS-1123 label (at most 63, no dots). Anything else never came
/// from a cluster, and a slash in it would make `namespace/name` mean two things.
public enum KubernetesName {
    public enum Kind: Sendable { case object, namespace }

    public static func admits(_ name: String, _ kind: Kind) -> Bool {
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        guard name.utf8.count <= (kind == .namespace ? 63 : 253), kind == .object || labels.count == 1 else { return false }
        func alphanumeric(_ byte: UInt8) -> Bool { (0x61...0x7a).contains(byte) || (0x30...0x39).contains(byte) }
        return labels.allSatisfy { label in
            label.utf8.first.map(alphanumeric) == true && label.utf8.last.map(alphanumeric) == true
                && label.utf8.allSatisfy { alphanumeric($0) || $0 == UInt8(ascii: "-") }
        }
    }

    /// What `kind` must look like, for an error.
    public static func rule(_ kind: Kind) -> String {
        kind == .namespace ? "a Kubernetes namespace (at most 63 lowercase letters, digits and '-', a letter or digit first and last)"
            : "a Kubernetes name (at most 253 lowercase letters, digits, '-' and '.', a letter or digit first and last)"
    }
}
