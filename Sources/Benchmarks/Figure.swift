/// One figure a benchmark measured, beside the baseline it is compared with
/// (measured in the same run: absolute times drift 2–4× between days on these
/// machines, ratios hold) and the goal it is held to, if any. Every `bench`
/// reports `[Figure]`; one table prints them all.
public struct Figure: Sendable, Encodable {
    /// What the value counts.
    public enum Unit: String, Sendable, Encodable {
        case nanoseconds = "ns", microseconds = "µs", milliseconds = "ms", seconds = "s", perSecond = "/s", mebibytes = "MiB"
        case gigabitsPerSecond = "Gbit/s", percent = "%", instructions = "insns"
    }

    /// The same-run measurement a figure is read against.
    public struct Baseline: Sendable, Encodable {
        public let name: String
        public let value: Double

        public init(_ name: String, _ value: Double) {
            self.name = name
            self.value = value
        }
    }

    public let name: String
    public let value: Double
    public let unit: Unit
    public let baseline: Baseline?
    /// How the figure is read against its baseline (the goal's way when the goal bounds that).
    public let comparison: Comparison
    public let goal: Goal?
    /// Packets, events, entries or queries the figure was measured over, where that says something.
    public let count: Int?

    public init(_ name: String, _ value: Double, _ unit: Unit, baseline: Baseline? = nil, comparison: Comparison = .times,
                goal: Goal? = nil, count: Int? = nil) {
        self.name = name
        self.value = value
        self.unit = unit
        self.baseline = baseline
        self.comparison = goal.map { $0.comparison == .value ? comparison : $0.comparison } ?? comparison
        self.goal = goal
        self.count = count
    }

    /// The figure read against its baseline the way `comparison` says; nil without a baseline.
    public func compared(_ comparison: Comparison) -> Double? {
        guard let baseline else { return nil }
        return comparison.apply(value, baseline.value)
    }

    /// Whether this run met the goal; nil without a goal.
    public var met: Bool? { goal?.isMet(by: self) }

    enum CodingKeys: String, CodingKey { case name, value, unit, baseline, comparison, compared, goal, met, count }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(value, forKey: .value)
        try container.encode(unit, forKey: .unit)
        try container.encodeIfPresent(baseline, forKey: .baseline)
        if baseline != nil {
            try container.encode(comparison, forKey: .comparison)
            try container.encodeIfPresent(compared(comparison), forKey: .compared)
        }
        try container.encodeIfPresent(goal, forKey: .goal)
        try container.encodeIfPresent(met, forKey: .met)
        try container.encodeIfPresent(count, forKey: .count)
    }
}

/// How a figure reads against its baseline.
public enum Comparison: String, Sendable, Encodable {
    /// The figure itself (the baseline is shown beside it).
    case value
    /// Figure minus baseline: what the case adds (ns over an empty program, ms added by a proxy).
    case over
    /// Figure divided by baseline: how many times the baseline's time or rate.
    case times
    /// Baseline divided by figure: how many times faster than the baseline's time.
    case faster

    func apply(_ value: Double, _ baseline: Double) -> Double {
        switch self {
        case .value: value
        case .over: value - baseline
        case .times: baseline == 0 ? .infinity : value / baseline
        case .faster: value == 0 ? .infinity : baseline / value
        }
    }
}

/// What a figure must reach: a bound on the figure itself or on its comparison with the baseline.
public struct Goal: Sendable, Encodable {
    public enum Bound: String, Sendable, Encodable { case atMost, atLeast }

    public let comparison: Comparison
    public let bound: Bound
    public let limit: Double

    public static func atMost(_ limit: Double, _ comparison: Comparison = .value) -> Goal { Goal(comparison: comparison, bound: .atMost, limit: limit) }
    public static func atLeast(_ limit: Double, _ comparison: Comparison = .value) -> Goal { Goal(comparison: comparison, bound: .atLeast, limit: limit) }

    func isMet(by figure: Figure) -> Bool? {
        guard let measured = comparison == .value ? figure.value : figure.compared(comparison) else { return nil }
        return bound == .atMost ? measured <= limit : measured >= limit
    }
}

/// Why a benchmark could not produce trustworthy figures.
public struct BenchmarkError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The statistics every benchmark reports with.
public enum Statistics {
    /// The middle value (the upper one of an even count); 0 for none.
    public static func median(_ values: [Double]) -> Double { percentile(values.sorted(), 0.5) }

    /// The value at `fraction` of `sorted`; 0 for none.
    public static func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
        sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))]
    }
}

extension Duration {
    public var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    public var milliseconds: Double { seconds * 1000 }
}
