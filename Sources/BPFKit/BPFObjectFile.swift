import CLibBPF
import CNetfenceShim
import Foundation
import Glibc
import HostKit

/// A BPF ELF object opened and loaded into the kernel by libbpf
/// (`bpf_object__open_mem` + `bpf_object__load`). Its programs and maps are
/// handed out with descriptors of their own, so they outlive the object.
public final class BPFObjectFile {
    private let object: OpaquePointer
    /// libbpf keeps pointers into the ELF bytes: they live as long as the object.
    private let elf: UnsafeMutableRawBufferPointer
    /// The object's name, used in errors.
    public let name: String

    /// Opens and loads `bytes` (an ELF object compiled with `clang -target bpf`).
    /// The verifier runs here, once per program. Before loading, `reusing` sees
    /// each map the object defines and may return an existing map to use in its
    /// place (a pinned map whose contents must survive), or throw to refuse.
    /// `resizing` gives maps (by name) another capacity than the object states.
    public init(bytes: [UInt8], name: String, resizing: [String: UInt32] = [:], reusing: (MapSpec) throws -> BPFMap? = { _ in nil }) throws {
        nf_libbpf_capture_logs()
        let elf = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 8)
        bytes.withUnsafeBytes { elf.copyMemory(from: $0) }
        self.elf = elf
        self.name = name
        let opened = name.withCString { objectName in
            withZeroedPointer(to: bpf_object_open_opts.self) { options in
                options.pointee.sz = MemoryLayout<bpf_object_open_opts>.size
                options.pointee.object_name = objectName
                return bpf_object__open_mem(elf.baseAddress, elf.count, options)
            }
        }
        let openError = libbpf_get_error(UnsafeRawPointer(opened))
        guard let opened, openError == 0 else {
            elf.deallocate()
            throw SystemError("open BPF object", name, errno: Int32(truncatingIfNeeded: openError),
                           detail: String(cString: nf_libbpf_last_warning()))
        }
        do {
            var map = bpf_object__next_map(opened, nil)
            while let current = map {
                if let entries = resizing[String(cString: bpf_map__name(current))] {
                    let resized = bpf_map__set_max_entries(current, entries)
                    if resized < 0 { throw SystemError("size map", "\(String(cString: bpf_map__name(current))) to \(entries) entries", errno: resized) }
                }
                if let existing = try reusing(MapSpec(current)) {
                    let reused = bpf_map__reuse_fd(current, existing.descriptor.rawValue)
                    if reused < 0 { throw SystemError("reuse map", String(cString: bpf_map__name(current)), errno: reused) }
                }
                map = bpf_object__next_map(opened, current)
            }
        } catch {
            bpf_object__close(opened)
            elf.deallocate()
            throw error
        }
        let loaded = bpf_object__load(opened)
        if loaded < 0 {
            let detail = String(cString: nf_libbpf_last_warning())
            bpf_object__close(opened)
            elf.deallocate()
            throw SystemError("load BPF object", name, errno: loaded, detail: detail)
        }
        object = opened
    }

    deinit {
        bpf_object__close(object)
        elf.deallocate()
    }

    /// The loaded program called `programName` in the source (the C function name).
    public func program(named programName: String) throws -> BPFProgram {
        guard let program = bpf_object__find_program_by_name(object, programName) else {
            throw SystemError("find program \(programName) in", "BPF object \(name)", errno: ENOENT)
        }
        return BPFProgram(descriptor: try duplicate(bpf_program__fd(program), of: "program \(programName)"))
    }

    /// The program `programName` loaded once more with no kernel name, as the AWS
    /// agent's SDK loads its programs (tests that stand in for it).
    public func namelessCopy(ofProgram programName: String) throws -> BPFProgram {
        guard let program = bpf_object__find_program_by_name(object, programName) else {
            throw SystemError("find program \(programName) in", "BPF object \(name)", errno: ENOENT)
        }
        let fd = try check(nf_prog_load_nameless(program), "load nameless copy of", "program \(programName)")
        return BPFProgram(descriptor: FileDescriptor(owning: fd))
    }

    /// The map called `mapName` in the source.
    public func map(named mapName: String) throws -> BPFMap {
        guard let map = bpf_object__find_map_by_name(object, mapName) else {
            throw SystemError("find map \(mapName) in", "BPF object \(name)", errno: ENOENT)
        }
        return BPFMap(descriptor: try duplicate(bpf_map__fd(map), of: "map \(mapName)"))
    }

    /// The names of the object's maps, in definition order.
    public var mapNames: [String] {
        var names: [String] = []
        var map = bpf_object__next_map(object, nil)
        while let current = map {
            names.append(String(cString: bpf_map__name(current)))
            map = bpf_object__next_map(object, current)
        }
        return names
    }

    /// libbpf keeps owning its descriptors: callers get duplicates of their own.
    private func duplicate(_ libbpfDescriptor: Int32, of what: String) throws -> FileDescriptor {
        let copy = fcntl(libbpfDescriptor, F_DUPFD_CLOEXEC, 0)
        if copy < 0 { throw SystemError("duplicate descriptor of", what, errno: errno) }
        return FileDescriptor(owning: copy)
    }
}

/// A map as an object file defines it, before it is created.
public struct MapSpec: Sendable, Equatable {
    public let name: String
    public let type: MapType
    public let keySize: UInt32
    public let valueSize: UInt32
    public let maxEntries: UInt32
    public let flags: UInt32

    init(_ map: OpaquePointer) {
        name = String(cString: bpf_map__name(map))
        type = MapType(rawValue: bpf_map__type(map).rawValue)
        keySize = bpf_map__key_size(map)
        valueSize = bpf_map__value_size(map)
        maxEntries = bpf_map__max_entries(map)
        flags = bpf_map__map_flags(map)
    }

    public init(name: String, type: MapType, keySize: UInt32, valueSize: UInt32, maxEntries: UInt32, flags: UInt32) {
        self.name = name
        self.type = type
        self.keySize = keySize
        self.valueSize = valueSize
        self.maxEntries = maxEntries
        self.flags = flags
    }

    /// What differs between this spec and an existing map, as `key size 44 (pinned: 40)`;
    /// empty when the map can be reused as it is (cilium/ebpf's MapSpec.Compatible).
    public func differences(from existing: MapInfo) -> [String] {
        var found: [String] = []
        if existing.type != type { found.append("type \(type) (pinned: \(existing.type))") }
        if existing.keySize != keySize { found.append("key size \(keySize) (pinned: \(existing.keySize))") }
        if existing.valueSize != valueSize { found.append("value size \(valueSize) (pinned: \(existing.valueSize))") }
        // ring buffers report their size in max_entries, other maps their capacity
        if existing.maxEntries != maxEntries { found.append("max entries \(maxEntries) (pinned: \(existing.maxEntries))") }
        if existing.flags != flags { found.append("flags 0x\(String(flags, radix: 16)) (pinned: 0x\(String(existing.flags, radix: 16)))") }
        return found
    }
}

/// What loading with pinned maps did with each map.
public struct PinReport: Sendable, Equatable {
    /// Pinned maps kept with their contents.
    public var reused: [String] = []
    /// Maps created and pinned now.
    public var created: [String] = []
    /// Incompatible pinned maps replaced (their contents are gone).
    public var migrated: [String] = []

    public init() {}
}

/// A pinned map that cannot be reused as it is.
public struct IncompatiblePinError: Error, Equatable, CustomStringConvertible {
    public let path: String
    public let differences: [String]

    public init(path: String, differences: [String]) {
        self.path = path
        self.differences = differences
    }

    public var description: String {
        "the pinned map \(path) does not match this netfence: \(differences.joined(separator: ", ")); "
            + "rerun with --migrate to replace it (its entries are lost)"
    }
}

extension BPFObjectFile {
    /// Loads `bytes` with its maps pinned in `folder` (one pin per map name):
    /// a pinned map that matches is reused with its entries; one that does not
    /// is refused with what differs, unless `migrate` replaces it, or it is one of
    /// `replaceable` (maps whose contents the caller carries over itself). `validate`
    /// sees every map spec first and may refuse the object; `resizing` as for `init`.
    public static func load(bytes: [UInt8], name: String, pinningMapsIn folder: String, migrate: Bool, replaceable: Set<String> = [],
                            resizing: [String: UInt32] = [:], validate: (MapSpec) throws -> Void = { _ in }) throws -> (BPFObjectFile, PinReport) {
        try BPFFilesystem.makeDirectories(folder)
        var report = PinReport()
        let object = try BPFObjectFile(bytes: bytes, name: name, resizing: resizing) { spec in
            try validate(spec)
            let path = "\(folder)/\(spec.name)"
            guard let pinned = try BPFFilesystem.pinnedMap(at: path) else { return nil }
            let differences = spec.differences(from: try pinned.info())
            if differences.isEmpty {
                report.reused.append(spec.name)
                return pinned
            }
            guard migrate || replaceable.contains(spec.name) else { throw IncompatiblePinError(path: path, differences: differences) }
            unlink(path)
            report.migrated.append(spec.name)
            return nil
        }
        for mapName in object.mapNames where !report.reused.contains(mapName) {
            try object.map(named: mapName).pin(at: "\(folder)/\(mapName)")
            if !report.migrated.contains(mapName) { report.created.append(mapName) }
        }
        return (object, report)
    }
}
