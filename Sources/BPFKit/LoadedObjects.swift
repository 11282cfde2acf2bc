import Glibc

/// A program with where it is pinned and attached.
public struct ProgramRecord: Sendable {
    public let info: ProgramInfo
    public let pins: [String]
    public let attachments: [ProgramAttachment]
}

/// A map with where it is pinned, who uses it and how full it is.
public struct MapRecord: Sendable {
    public let info: MapInfo
    public let pins: [String]
    public let programIDs: [UInt32]
    /// nil for types without countable entries (ring buffers, queues).
    public let entries: Int?

    /// Entries as a share of max_entries, in percent; nil where fill means
    /// nothing: arrays hold every index from creation, ring buffers count bytes.
    public var fillPercent: Double? {
        guard !info.type.isPreallocatedArray, info.type != .ringbuf else { return nil }
        return entries.map { info.maxEntries == 0 ? 0 : Double($0) * 100 / Double(info.maxEntries) }
    }
}

/// Which objects a listing covers.
public enum ObjectSelection: Sendable, Equatable {
    /// What is pinned below the pin root (and, for maps, what those programs use).
    case pinned
    /// Everything loaded on the host.
    case all
    /// These kernel ids; one that does not exist is an error.
    case ids([UInt32])
}

/// Reads what is loaded: programs and maps, joined with pins, attachments and users.
public enum LoadedObjects {
    /// The selected programs, ascending by id. Programs that unload mid-walk are skipped.
    /// Pin paths are looked up below `pinRoot` whatever the selection.
    public static func programs(_ selection: ObjectSelection, pinRoot: String, scanAttachments: Bool = true) throws -> [ProgramRecord] {
        let pinned = try BPFFilesystem.pinnedObjects(under: pinRoot)
        let programs: [BPFProgram]
        switch selection {
        case .pinned: programs = pinned.filter { $0.kind == .program }.map { BPFProgram(descriptor: $0.descriptor) }
        case .all: programs = try BPFProgram.allIDs().compactMap { try? BPFProgram(id: $0) }
        case .ids(let ids): programs = try ids.map { try BPFProgram(id: $0) }
        }
        var infos: [UInt32: ProgramInfo] = [:]
        for program in programs { if let info = try? program.info() { infos[info.id] = info } }
        let pins = try pinPaths(pinned, kind: .program)
        let attachments = scanAttachments ? Dictionary(grouping: TCAttachments.scan(), by: \.programID) : [:]
        return infos.values.sorted { $0.id < $1.id }.map {
            ProgramRecord(info: $0, pins: pins[$0.id] ?? [], attachments: attachments[$0.id] ?? [])
        }
    }

    /// The selected maps, ascending by id, each counted (batch lookups where possible).
    /// Pin paths are looked up below `pinRoot` whatever the selection.
    public static func maps(_ selection: ObjectSelection, pinRoot: String) throws -> [MapRecord] {
        let pinned = try BPFFilesystem.pinnedObjects(under: pinRoot)
        let everyProgram = try BPFProgram.allIDs().compactMap { try? BPFProgram(id: $0).info() }
        var users: [UInt32: [UInt32]] = [:]
        for program in everyProgram { for map in program.mapIDs { users[map, default: []].append(program.id) } }

        var maps: [UInt32: BPFMap] = [:]
        func add(_ map: BPFMap) { if let id = try? map.info().id { maps[id] = map } }
        switch selection {
        case .pinned:
            pinned.filter { $0.kind == .map }.forEach { add(BPFMap(descriptor: $0.descriptor)) }
            let ourPrograms = Set(try pinPaths(pinned, kind: .program).keys)
            for program in everyProgram where ourPrograms.contains(program.id) {
                program.mapIDs.compactMap { try? BPFMap(id: $0) }.forEach(add)
            }
        case .all:
            try BPFMap.allIDs().compactMap { try? BPFMap(id: $0) }.forEach(add)
        case .ids(let ids):
            try ids.forEach { add(try BPFMap(id: $0)) }
        }
        let pins = try pinPaths(pinned, kind: .map)
        return try maps.keys.sorted().compactMap { id in
            guard let map = maps[id], let info = try? map.info() else { return nil }
            return MapRecord(info: info, pins: pins[id] ?? [], programIDs: users[id] ?? [], entries: try map.countEntries())
        }
    }

    private static func pinPaths(_ pinned: [PinnedObject], kind: PinnedObjectKind) throws -> [UInt32: [String]] {
        var result: [UInt32: [String]] = [:]
        for object in pinned where object.kind == kind {
            let id = kind == .program ? try BPFProgram(descriptor: object.descriptor).info().id
                                      : try BPFMap(descriptor: object.descriptor).info().id
            result[id, default: []].append(object.path)
        }
        return result
    }
}
