/// A rule id the datapath carries in port rules, conntrack entries and events,
/// decodable back to the object, direction and rule that decided:
/// `object index << 12 | direction << 11 | rule`.
public struct RuleID: Hashable, Sendable, CustomStringConvertible {
    public static let rulesPerDirection = 2048

    /// The loader's index of the object (1 and up; 0 means "no rule").
    public let objectIndex: UInt32
    public let direction: Direction
    /// Index in the object's `ingress[]` or `egress[]`.
    public let rule: Int

    public init(objectIndex: UInt32, direction: Direction, rule: Int) {
        self.objectIndex = objectIndex
        self.direction = direction
        self.rule = rule
    }

    /// Decodes an id from an event; nil for 0 (no rule decided).
    public init?(rawValue: UInt32) {
        guard rawValue >> 12 != 0 else { return nil }
        objectIndex = rawValue >> 12
        direction = rawValue >> 11 & 1 == 0 ? .ingress : .egress
        rule = Int(rawValue & 0x7ff)
    }

    public var rawValue: UInt32 { objectIndex << 12 | UInt32(direction.rawValue) << 11 | UInt32(rule) }

    public var description: String { "\(direction)[\(rule)] of object \(objectIndex)" }
}
