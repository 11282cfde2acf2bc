import Foundation

/// A failure as the CNI spec reports it: a JSON object on standard output with the
/// spec's error code, a message and details, and a non-zero exit.
public struct CNIError: Error, CustomStringConvertible {
    /// The spec's well-known codes (1–99); netfence's own start at 100.
    public enum Code: Int, Sendable {
        case incompatibleVersion = 1
        case unsupportedField = 2
        case containerUnknown = 3
        case invalidEnvironment = 4
        case ioFailure = 5
        case decodingFailure = 6
        case invalidConfiguration = 7
        case tryAgainLater = 11
        /// The pod is not enforced as it should be (CHECK).
        case notEnforced = 100
        /// The loader refused or failed the change.
        case loaderFailure = 101
    }

    public let code: Code
    public let message: String
    public let details: String?

    public init(_ code: Code, _ message: String, details: String? = nil) {
        self.code = code
        self.message = message
        self.details = details
    }

    public var description: String { message + (details.map { " (\($0))" } ?? "") }

    /// `{"cniVersion": …, "code": …, "msg": …, "details": …}`.
    public func json(cniVersion: String) -> [UInt8] {
        struct Report: Encodable {
            var cniVersion: String
            var code: Int
            var msg: String
            var details: String?
        }
        return CNIJSON.encode(Report(cniVersion: cniVersion, code: code.rawValue, msg: message, details: details))
    }
}

/// JSON as the plugin prints it: keys in the order the spec lists them, slashes
/// unescaped, one trailing newline. (Sorted keys would load ICU's collation data.)
enum CNIJSON {
    static func encode(_ value: some Encodable) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .withoutEscapingSlashes]
        return Array((try? encoder.encode(value)) ?? Data("{}".utf8)) + [UInt8(ascii: "\n")]
    }
}
