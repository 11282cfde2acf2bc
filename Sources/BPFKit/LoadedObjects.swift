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
    /// `.pinned` is what is pinned below `pinRoot`; pin paths are looked up there and
    /// below every folder of `otherPinRoots` (another tool's, such as the AWS agent's) whatever the selection.
    public static func programs(_ selection: ObjectSelection, pinRoot: String, otherPinRoots: [String] = [],
                                scanAttachments: Bool = true) throws -> [ProgramRecord] {
        let pinned = try BPFFilesystem.pinnedObjects(under: pinRoot)
        let programs: [BPFProgram]
        switch selection {
        case .pinned: programs = pinned.filter { $0.kind == .program }.map { BPFProgram(descriptor: $0.descriptor) }
        case .all: programs = try BPFProgram.allIDs().compactMap { try? BPFProgram(id: $0) }
        case .ids(let ids): programs = try ids.map { try BPFProgram(id: $0) }
        }
        var infos: [UInt32: ProgramInfo] = [:]
        for program in programs { if let info = try? program.info() { infos[info.id] = info } }
        let pins = try PinIndex(pinned + otherPinRoots.flatMap { try BPFFilesystem.pinnedObjects(under: $0) }).programs
        let attachments = scanAttachments ? Dictionary(grouping: TCAttachments.scan(), by: \.programID) : [:]
        return infos.values.sorted { $0.id < $1.id }.map {
            ProgramRecord(info: $0, pins: pins[$0.id] ?? [], attachments: attachments[$0.id] ?? [])
        }
    }

    /// The selected maps, ascending by id, each counted (batch lookups where possible).
    /// `.pinned` is what is pinned below `pinRoot`; pin paths are looked up there and below
    /// every folder of `otherPinRoots` whatever the selection.
    public static func maps(_ selection: ObjectSelection, pinRoot: String, otherPinRoots: [String] = []) throws -> [MapRecord] {
        let pinned = try BPFFilesystem.pinnedObjects(under: pinRoot)
        let everyProgram = try BPFProgram.allIDs().compactMap { try? BPFProgram(id: $0).info() }
        var users: [UInt32: [UInt32]] = [:]
        for program in everyProgram { for map in program.mapIDs { users[map, default: []].append(program.id) } }

        var maps: [UInt32: BPFMap] = [:]
        func add(_ map: BPFMap) { if let id = try? map.info().id { maps[id] = map } }
        switch selection {
        case .pinned:
            pinned.filter { $0.kind == .map }.forEach { add(BPFMap(descriptor: $0.descriptor)) }
            let ourPrograms = Set(try PinIndex(pinned).programs.keys)
            for program in everyProgram where ourPrograms.contains(program.id) {
                program.mapIDs.compactMap { try? BPFMap(id: $0) }.forEach(add)
            }
        case .all:
            try BPFMap.allIDs().compactMap { try? BPFMap(id: $0) }.forEach(add)
        case .ids(let ids):
            try ids.forEach { add(try BPFMap(id: $0)) }
        }
        let pins = try PinIndex(pinned + otherPinRoots.flatMap { try BPFFilesystem.pinnedObjects(under: $0) }).maps
        return try maps.keys.sorted().compactMap { id in
            guard let map = maps[id], let info = try? map.info() else { return nil }
            return MapRecord(info: info, pins: pins[id] ?? [], programIDs: users[id] ?? [], entries: try map.countEntries())
        }
    }
}

/// Which paths each object is pinned at, by kernel id: the one way to name an
/// object without a kernel name (the AWS agent's SDK creates its maps and
/// programs nameless; only their pins say what they are).
public struct PinIndex: Sendable {
    public private(set) var maps: [UInt32: [String]] = [:]
    public private(set) var programs: [UInt32: [String]] = [:]

    /// Indexes `pinned` (as `BPFFilesystem.pinnedObjects` walked them).
    public init(_ pinned: [PinnedObject]) throws {
        for object in pinned {
            switch object.kind {
            case .program: programs[try BPFProgram(descriptor: object.descriptor).info().id, default: []].append(object.path)
            case .map: maps[try BPFMap(descriptor: object.descriptor).info().id, default: []].append(object.path)
            case .link: continue
            }
        }
    }

    /// Every pin below `roots` (missing folders hold nothing).
    public init(roots: [String]) throws {
        try self.init(roots.flatMap { try BPFFilesystem.pinnedObjects(under: $0) })
    }
}
