import CLibBPF
import Glibc
import HostKit

/// Type information (BTF) the kernel holds for a map or program, loaded by id:
/// what lets a map nobody wrote a layout for be read by field name.
public final class BTF {
    private let handle: OpaquePointer

    /// Loads BTF object `id` from the kernel (a map's `btfID`).
    public init(kernelID id: UInt32) throws {
        guard let handle = btf__load_from_kernel_by_id(id) else {
            throw SystemError("load BTF", "id \(id)", errno: errno)
        }
        self.handle = handle
    }

    deinit { btf__free(handle) }

    public enum IntegerEncoding: Sendable { case unsigned, signed, char, bool }

    public struct Member: Sendable {
        /// Empty for an anonymous struct or union member.
        public let name: String
        public let type: UInt32
        public let bitOffset: Int
        /// Non-zero for a bitfield.
        public let bitfieldSize: Int
    }

    /// One type, in the terms a decoder needs.
    public enum TypeInfo: Sendable {
        case void
        case integer(name: String, size: Int, encoding: IntegerEncoding, bits: Int, bitOffset: Int)
        case pointer
        case array(element: UInt32, count: Int)
        case structure(members: [Member])
        case union(members: [Member])
        /// `enum` and `enum64`: the value's size and its named values (as 64-bit patterns).
        case enumeration(size: Int, cases: [(name: String, value: Int64)])
        case float(size: Int)
        /// typedef, const, volatile, restrict, type tag: the type they stand for.
        case alias(UInt32, isTypedef: Bool)
        case variable(name: String, type: UInt32)
        case section(name: String, variables: [(type: UInt32, offset: Int)])
        /// Kinds a map's key or value cannot be (functions, forward declarations).
        case unsupported(kind: Int)
    }

    /// Type `id`; nil when there is no such type.
    public func type(_ id: UInt32) -> TypeInfo? {
        if id == 0 { return .void }
        guard let type = btf__type_by_id(handle, id) else { return nil }
        let count = Int(btf_vlen(type))
        switch Int(btf_kind(type)) {
        case BTF_KIND_INT:
            let encoding: IntegerEncoding = switch btf_int_encoding(type) {
            case 1: .signed  // BTF_INT_SIGNED
            case 2: .char    // BTF_INT_CHAR
            case 4: .bool    // BTF_INT_BOOL
            default: .unsigned
            }
            return .integer(name: name(type.pointee.name_off), size: Int(type.pointee.size), encoding: encoding,
                            bits: Int(btf_int_bits(type)), bitOffset: Int(btf_int_offset(type)))
        case BTF_KIND_PTR:
            return .pointer
        case BTF_KIND_ARRAY:
            let array = btf_array(type)!.pointee
            return .array(element: array.type, count: Int(array.nelems))
        case BTF_KIND_STRUCT, BTF_KIND_UNION:
            let members = (0..<count).map { index in
                let member = btf_members(type)![index]
                return Member(name: name(member.name_off), type: member.type,
                              bitOffset: Int(btf_member_bit_offset(type, UInt32(index))),
                              bitfieldSize: Int(btf_member_bitfield_size(type, UInt32(index))))
            }
            return Int(btf_kind(type)) == BTF_KIND_STRUCT ? .structure(members: members) : .union(members: members)
        case BTF_KIND_ENUM:
            return .enumeration(size: Int(type.pointee.size),
                                cases: (0..<count).map { (name(btf_enum(type)![$0].name_off), Int64(btf_enum(type)![$0].val)) })
        case BTF_KIND_ENUM64:
            return .enumeration(size: Int(type.pointee.size), cases: (0..<count).map {
                (name(btf_enum64(type)![$0].name_off), Int64(bitPattern: btf_enum64_value(btf_enum64(type)! + $0)))
            })
        case BTF_KIND_FLOAT:
            return .float(size: Int(type.pointee.size))
        case BTF_KIND_TYPEDEF, BTF_KIND_CONST, BTF_KIND_VOLATILE, BTF_KIND_RESTRICT, BTF_KIND_TYPE_TAG:
            return .alias(type.pointee.type, isTypedef: Int(btf_kind(type)) == BTF_KIND_TYPEDEF)
        case BTF_KIND_VAR:
            return .variable(name: name(type.pointee.name_off), type: type.pointee.type)
        case BTF_KIND_DATASEC:
            return .section(name: name(type.pointee.name_off),
                            variables: (0..<count).map { (btf_var_secinfos(type)![$0].type, Int(btf_var_secinfos(type)![$0].offset)) })
        default:
            return .unsupported(kind: Int(btf_kind(type)))
        }
    }

    /// Bytes a value of type `id` takes; nil when it has no size.
    public func size(of id: UInt32) -> Int? {
        let size = btf__resolve_size(handle, id)
        return size < 0 ? nil : Int(size)
    }

    private func name(_ offset: UInt32) -> String {
        btf__name_by_offset(handle, offset).map { String(cString: $0) } ?? ""
    }
}
