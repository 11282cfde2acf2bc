import BPFKit
import CommandTree
import DatapathModel
import Events
import Foundation
import Inspection
import Loader
import PolicyInput

/// How the model's values are typed on the command line: each by the one name
/// the model gives it (`network-policy`, `deny`, `egress`), so a filter compares
/// typed values and help and completion list the same words tables print.
extension ArgumentValue where Self: ABIName {
    public init?(argument: String) { self.init(name: argument) }
    public static var completionChoices: [String]? { names }
}

extension Direction: ArgumentValue {
    public static var defaultValueName: String { "direction" }
}

extension Verdict: ArgumentValue {
    public static var defaultValueName: String { "verdict" }
}

extension Tier: ArgumentValue {
    public static var defaultValueName: String { "tier" }
}

extension EventLevel: ArgumentValue {
    public static var defaultValueName: String { "level" }
}

extension Attachment: ArgumentValue {
    public static var defaultValueName: String { "tc|tcx|tc-then-tcx" }
}

extension CaptureVerdicts: ArgumentValue {
    public static var defaultValueName: String { "deny|all" }
}

/// An event level for `events level`, or `node`: a pod follows the node's level again.
enum LevelArgument: ArgumentValue, Equatable {
    case level(EventLevel)
    case node

    init?(argument: String) {
        if argument == "node" { self = .node } else if let level = EventLevel(name: argument) { self = .level(level) } else { return nil }
    }

    static var defaultValueName: String { "level" }
    static var completionChoices: [String]? { EventLevel.names + ["node"] }
}

/// Events a second, `100/s` or `100`; `none` (or 0) for no limit.
struct EventRate: ArgumentValue, Equatable {
    /// nil: no limit.
    let perSecond: UInt32?

    init?(argument: String) {
        let number = argument.hasSuffix("/s") ? String(argument.dropLast(2)) : argument
        if argument == "none" || number == "0" {
            perSecond = nil
        } else if let value = UInt32(number), value > 0 {
            perSecond = value
        } else {
            return nil
        }
    }

    static var defaultValueName: String { "n/s" }
    static var expectedForm: String? { "events a second such as 100/s, or none for no limit" }
}

/// A size in bytes: `100MB`, `512KB`, `1GB` (powers of 1024) or a plain number.
struct ByteSize: ArgumentValue, Equatable, CustomStringConvertible {
    let bytes: Int

    /// `100MB` for a whole number of a unit, else bytes.
    var description: String {
        [("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)].first { bytes % $0.1 == 0 }.map { "\(bytes / $0.1)\($0.0)" } ?? "\(bytes)"
    }

    init?(argument: String) {
        let units: [(String, Int)] = [("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10), ("B", 1)]
        let upper = argument.uppercased()
        let (digits, unit) = units.first { upper.hasSuffix($0.0) }.map { (String(upper.dropLast($0.0.count)), $0.1) } ?? (upper, 1)
        guard let value = Int(digits), value > 0, case let (product, overflow) = value.multipliedReportingOverflow(by: unit), !overflow else { return nil }
        bytes = product
    }

    init(bytes: Int) { self.bytes = bytes }

    static var defaultValueName: String { "size" }
    static var expectedForm: String? { "a size such as 100MB, 512KB or 1GB" }
}

/// `--fields`: event fields by their JSON names, comma-separated.
struct EventFieldList: ArgumentValue, Equatable {
    let fields: Set<EventField>

    init?(argument: String) {
        let names = argument.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        let fields = names.compactMap(EventField.init(name:))
        guard !names.isEmpty, fields.count == names.count else { return nil }
        self.fields = Set(fields)
    }

    static var defaultValueName: String { "field,..." }
    static var expectedForm: String? { "comma-separated fields of: " + EventField.allCases.map(\.description).joined(separator: ", ") }
}

extension PodReference: ArgumentValue {
    public init?(argument: String) { self.init(parsing: argument) }
    public static var defaultValueName: String { "namespace/name" }
    public static var expectedForm: String? { "NAMESPACE/NAME as Kubernetes names them: lowercase letters, digits and '-', and '.' in NAME" }
}

/// A protocol by name (`tcp`, `udp`, `sctp`, `icmp`, `icmpv6`) or number.
struct ProtocolArgument: ArgumentValue, CustomStringConvertible {
    let number: UInt8
    var description: String { ProtocolName.of(number) }

    init?(argument: String) {
        guard let number = ProtocolName.number(argument) else { return nil }
        self.number = number
    }

    static var defaultValueName: String { "name" }
    static var expectedForm: String? { "tcp, udp, sctp, icmp, icmpv6 or a number from 0 to 255" }
}

extension IPPrefix: ArgumentValue {
    public init?(argument: String) {
        guard let parsed = IPPrefix.parse(argument) else { return nil }
        self = parsed.prefix
    }
    public static var defaultValueName: String { "cidr" }
    public static var expectedForm: String? { "a CIDR such as 198.18.0.0/15 or an address" }
}

extension IPAddress: ArgumentValue {
    public init?(argument: String) { self.init(argument) }
    public static var defaultValueName: String { "address" }
    public static var expectedForm: String? { "an IPv4 or IPv6 address" }
}

extension ProbeFlow: ArgumentValue {
    public init?(argument: String) { self.init(parsing: argument) }
    public static var defaultValueName: String { "ip:port/proto" }
    public static var expectedForm: String? { "IP:PORT/PROTO such as 198.18.0.1:443/tcp, [2001:db8::1]:53/udp or 198.18.0.1/icmp" }
}

extension FlowState: ArgumentValue {
    public static var defaultValueName: String { "state" }
}

extension PodDefault: ArgumentValue {
    public static var defaultValueName: String { "allow|deny" }
}

/// A pin root is checked as the command line is parsed: a relative, empty or
/// `..` path is a usage error before anything runs.
extension PinRoot: ArgumentValue {
    public init?(argument: String) { try? self.init(argument) }
    public static var defaultValueName: String { "path" }
    public static var expectedForm: String? { "an absolute path on bpffs, without '..'" }
}
