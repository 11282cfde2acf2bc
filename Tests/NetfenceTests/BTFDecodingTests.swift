import BPFKit
import CLibBPF
import Foundation
import HostKit
import Testing
import TestSupport

/// A map no layout knows, described by its own BTF (typedef, enum, char string, union,
/// nested struct array, signed and bitfield members), decoded by `ebpf maps dump` and
/// compared with what `bpftool -j map dump` prints for the same map (its `formatted`).
@Suite struct BTFDecodingTests {
    /// `struct nf_test_value` (48 bytes) keyed by `typedef __u32 nf_test_id`, hash and per-CPU hash.
    final class DescribedMaps {
        let hash: BPFMap, perCPU: BPFMap
        private let btf: OpaquePointer

        init() throws {
            let btf = try #require(btf__new_empty())
            let u32 = btf__add_int(btf, "unsigned int", 4, 0)
            let u16 = btf__add_int(btf, "unsigned short", 2, 0)
            let s16 = btf__add_int(btf, "short", 2, 1)  // BTF_INT_SIGNED
            let s64 = btf__add_int(btf, "long long", 8, 1)
            let u8 = btf__add_int(btf, "unsigned char", 1, 0)
            let char = btf__add_int(btf, "char", 1, 2)  // BTF_INT_CHAR
            let id = btf__add_typedef(btf, "nf_test_id", u32)
            let color = btf__add_enum(btf, "nf_test_color", 4)
            for (name, value) in [("RED", 0), ("GREEN", 1), ("BLUE", 7)] { btf__add_enum_value(btf, name, Int64(value)) }
            let name = btf__add_array(btf, u32, char, 16)
            let octets = btf__add_array(btf, u32, u8, 4)
            let address = btf__add_union(btf, "nf_test_address", 4)
            btf__add_field(btf, "v4", u32, 0, 0)
            btf__add_field(btf, "octets", octets, 0, 0)
            let inner = btf__add_struct(btf, "nf_test_port", 4)
            btf__add_field(btf, "port", u16, 0, 0)
            btf__add_field(btf, "delta", s16, 16, 0)
            let inners = btf__add_array(btf, u32, inner, 2)
            let value = btf__add_struct(btf, "nf_test_value", 48)
            btf__add_field(btf, "name", name, 0, 0)
            btf__add_field(btf, "color", color, 128, 0)
            btf__add_field(btf, "address", address, 160, 0)
            btf__add_field(btf, "ports", inners, 192, 0)
            btf__add_field(btf, "total", s64, 256, 0)
            btf__add_field(btf, "flags", u32, 320, 3)
            btf__add_field(btf, "level", u32, 323, 5)
            btf__add_field(btf, "", u32, 352, 0)  // an anonymous member
            #expect(btf__load_into_kernel(btf) == 0, "BTF load: errno \(errno)")
            func map(_ type: bpf_map_type, _ name: String) throws -> BPFMap {
                var options = bpf_map_create_opts()
                options.sz = MemoryLayout<bpf_map_create_opts>.size
                options.btf_fd = UInt32(btf__fd(btf))
                options.btf_key_type_id = UInt32(id)
                options.btf_value_type_id = UInt32(value)
                let fd = bpf_map_create(type, name, 4, 48, 8, &options)
                #expect(fd >= 0, "map create: errno \(errno)")
                return BPFMap(descriptor: FileDescriptor(owning: fd))
            }
            hash = try map(BPF_MAP_TYPE_HASH, "nf_test_btf")
            perCPU = try map(BPF_MAP_TYPE_PERCPU_HASH, "nf_test_btf_cpu")
            self.btf = btf
        }

        deinit { btf__free(btf) }
    }

    /// One value's bytes, as `struct nf_test_value` lays them out.
    static func value(name: [UInt8], color: UInt32, address: [UInt8], ports: [(UInt16, Int16)], total: Int64, flags: UInt32, level: UInt32,
                      anonymous: UInt32) -> [UInt8] {
        var bytes = name + [UInt8](repeating: 0, count: 16 - name.count)
        bytes += withUnsafeBytes(of: color) { Array($0) } + address
        for (port, delta) in ports { bytes += withUnsafeBytes(of: port) { Array($0) } + withUnsafeBytes(of: delta) { Array($0) } }
        bytes += withUnsafeBytes(of: total) { Array($0) }
        bytes += withUnsafeBytes(of: flags | level << 3) { Array($0) }
        bytes += withUnsafeBytes(of: anonymous) { Array($0) }
        return bytes + [UInt8](repeating: 0, count: 48 - bytes.count)
    }

    static let entries: [(UInt32, [UInt8])] = [
        (7, value(name: Array("checkout".utf8), color: 7, address: [198, 18, 0, 1], ports: [(443, -3), (8080, 12)],
                  total: -1_234_567_890_123, flags: 5, level: 17, anonymous: 99)),
        (1_000_000, value(name: Array("0123456789abcdef".utf8), color: 5, address: [198, 19, 255, 255], ports: [(0, -32768), (65535, 32767)],
                          total: Int64.max, flags: 7, level: 31, anonymous: 0)),
        (0, value(name: [0x41, 0x07, 0x42], color: 0, address: [0, 0, 0, 0], ports: [(1, 0), (2, 0)], total: 0, flags: 0, level: 0, anonymous: 1)),
    ]

    func bpftoolFormatted(_ map: BPFMap) throws -> [[String: Any]] {
        let result = try ChildProcess.run("/usr/sbin/bpftool", ["-j", "map", "dump", "id", "\(try map.info().id)"], output: .captured)
        #expect(result.status == 0, "bpftool: \(result.output)")
        return try jsonArray(result.output).compactMap { $0["formatted"] as? [String: Any] }
    }

    func netfenceDump(_ map: BPFMap, table: Bool = false) throws -> CommandResult {
        try NetfenceBinary.run(["ebpf", "maps", "dump", "\(try map.info().id)"] + (table ? [] : ["-o", "json"]))
    }

    /// Entries keyed by their key's JSON, so the two tools' orders do not matter.
    func byKey(_ rows: [[String: Any]]) throws -> [String: NSDictionary] {
        try Dictionary(uniqueKeysWithValues: rows.map { row in
            let key = try JSONSerialization.data(withJSONObject: row["key"] ?? NSNull(), options: [.sortedKeys, .fragmentsAllowed])
            return (String(decoding: key, as: UTF8.self), row as NSDictionary)
        })
    }

    @Test func aHashMapDecodesAsBpftoolFormatsIt() throws {
        guard Privileges.require() else { return }
        let maps = try DescribedMaps()
        for (key, value) in Self.entries { try maps.hash.update(key: withUnsafeBytes(of: key) { Array($0) }, value: value) }
        let result = try netfenceDump(maps.hash)
        #expect(result.status == 0, "stderr: \(result.standardError)")
        let ours = try byKey(try jsonArray(result.standardOutput)), theirs = try byKey(try bpftoolFormatted(maps.hash))
        #expect(ours.count == 3)
        #expect(ours == theirs)
        // Spot checks, so the comparison cannot pass on two empty or equally wrong dumps.
        let checkout = try #require(ours["7"]?["value"] as? [String: Any])
        #expect(checkout["name"] as? String == "checkout")
        #expect(checkout["color"] as? String == "BLUE")
        #expect(checkout["total"] as? Int == -1_234_567_890_123)
        #expect(checkout["flags"] as? String == "0x5" && checkout["level"] as? String == "0x11")
        #expect(checkout[""] as? Int == 99)
        #expect((checkout["address"] as? [String: Any])?["octets"] as? [Int] == [198, 18, 0, 1])
        #expect((checkout["ports"] as? [[String: Any]])?.map { $0["delta"] as? Int } == [-3, 12])
        let full = try #require(ours["1000000"]?["value"] as? [String: Any])
        #expect(full["color"] as? Int == 5, "an enum value without a name is a number")
        #expect((full["name"] as? [String])?.count == 16, "a char array without its NUL is an array of chars")

        let table = try netfenceDump(maps.hash, table: true)
        #expect(table.status == 0)
        #expect(table.standardOutput.hasPrefix("KEY"))
        #expect(table.standardOutput.contains(#""name":"checkout","color":"BLUE""#))
    }

    @Test func aPerCPUMapDecodesAsBpftoolFormatsIt() throws {
        guard Privileges.require() else { return }
        let maps = try DescribedMaps()
        let cpus = BPFMap.possibleCPUs, slot = 48
        for (key, value) in Self.entries {
            // Each CPU's slot differs in its total, so a slot mix-up shows.
            let values = (0..<cpus).flatMap { cpu in
                var copy = value
                copy.replaceSubrange(32..<40, with: withUnsafeBytes(of: Int64(cpu * 1000 + Int(key % 1000))) { Array($0) })
                return copy + [UInt8](repeating: 0, count: slot - 48)
            }
            try maps.perCPU.update(key: withUnsafeBytes(of: key) { Array($0) }, value: values)
        }
        let result = try netfenceDump(maps.perCPU)
        #expect(result.status == 0, "stderr: \(result.standardError)")
        let ours = try byKey(try jsonArray(result.standardOutput)), theirs = try byKey(try bpftoolFormatted(maps.perCPU))
        #expect(ours.count == 3)
        #expect(ours == theirs)
        let values = try #require(ours["7"]?["values"] as? [[String: Any]])
        #expect(values.count == cpus)
        #expect(values.map { ($0["value"] as? [String: Any])?["total"] as? Int } == (0..<cpus).map { $0 * 1000 + 7 })
    }
}
