import BPFKit
import DatapathModel
import Loader

/// Which conntrack entries `conntrack list|flush` take; several conditions combine with AND.
public struct ConntrackFilter {
    public var podID: UInt32?
    public var prefix: IPPrefix?
    public var port: UInt16?
    public var protocolNumber: UInt8?
    public var state: FlowState?

    public init() {}

    public var isEmpty: Bool { podID == nil && prefix == nil && port == nil && protocolNumber == nil && state == nil }

    func matches(_ entry: ConntrackEntry, state entryState: @autoclosure () -> FlowState) -> Bool {
        if let podID, entry.podID != podID { return false }
        if let prefix {
            let family = AddressFamily(rawValue: entry.family) ?? entry.low.family
            if !prefix.contains(entry.low, family: family), !prefix.contains(entry.high, family: family) { return false }
        }
        if let port, IPProtocolNumber.carriesEchoIdentifier(entry.protocolNumber) || (entry.lowPort != port && entry.highPort != port) {
            return false
        }
        if let protocolNumber, entry.protocolNumber != protocolNumber { return false }
        if let state, entryState() != state { return false }
        return true
    }
}

/// The datapath's conntrack table: listed, flushed and counted in one streamed pass each.
public struct ConntrackTable {
    public let map: BPFMap
    public let layout: ConntrackLayout

    public init(map: BPFMap, context: DecodeContext) throws {
        let info = try map.info()
        guard info.type == .lruHash, Int(info.keySize) == ConntrackEntry.keySize, Int(info.valueSize) == ConntrackEntry.valueSize else {
            throw LayoutMismatch(description: "map \(info.id) (\(info.name)) is not netfence's conntrack (a \(info.type) map, key \(info.keySize) B, "
                                 + "value \(info.valueSize) B)")
        }
        self.map = map
        layout = ConntrackLayout(context: context)
    }

    /// Visits every entry `filter` selects, batch by batch.
    public func forEach(_ filter: ConntrackFilter, _ body: (ConntrackEntry) throws -> Void) throws {
        try map.forEachBatchReadingAhead { batch in
            for index in 0..<batch.count {
                guard let entry = ConntrackEntry.decode(key: batch.key(index), value: batch.value(index)),
                      filter.matches(entry, state: layout.state(entry)) else { continue }
                try body(entry)
            }
        }
    }

    /// Streams the selected entries into `writer`; returns how many.
    @discardableResult
    public func list(_ filter: ConntrackFilter, into writer: RecordWriter) throws -> Int {
        try forEach(filter) { layout.write($0, into: writer) }
        writer.finish()
        return writer.rowCount
    }

    /// Removes the selected entries; returns how many it removed (an entry gone meanwhile is not counted).
    public func flush(_ filter: ConntrackFilter) throws -> Int {
        var keys: [[UInt8]] = []
        try map.forEachBatch { batch in
            for index in 0..<batch.count {
                guard let entry = ConntrackEntry.decode(key: batch.key(index), value: batch.value(index)),
                      filter.matches(entry, state: layout.state(entry)) else { continue }
                keys.append(Array(batch.key(index)))
            }
        }
        // Deleted after the walk: removing entries under a batch walk can make it skip others.
        return try keys.reduce(0) { $0 + (try map.delete(key: $1) ? 1 : 0) }
    }

    public struct Statistics: Sendable, Encodable {
        public var entries = 0
        public var maximum = 0
        public var fillPercent = 0.0
        public var byState: [String: Int] = [:]
        public var byPod: [String: Int] = [:]
        public var byProtocol: [String: Int] = [:]
    }

    public func statistics() throws -> Statistics {
        var statistics = Statistics()
        statistics.maximum = Int(try map.info().maxEntries)
        let context = layout.context
        try forEach(ConntrackFilter()) { entry in
            statistics.entries += 1
            statistics.byState[layout.state(entry).rawValue, default: 0] += 1
            if case .text(let pod) = context.pod(entry.podID) { statistics.byPod[pod, default: 0] += 1 }
            statistics.byProtocol[ProtocolName.of(entry.protocolNumber), default: 0] += 1
        }
        statistics.fillPercent = statistics.maximum == 0 ? 0 : (Double(statistics.entries) * 1000 / Double(statistics.maximum)).rounded() / 10
        return statistics
    }
}
