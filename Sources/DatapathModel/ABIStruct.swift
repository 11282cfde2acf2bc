import CNetfenceABI

/// A struct of `bpf/netfence_abi.h` as Swift imports it. Every codec of the
/// datapath model reads and writes bytes through these structs, so a field is
/// found by its name in the one header, never by an offset written here: bytes
/// become the struct with one unaligned load, the struct becomes bytes as it is
/// (the header's padding is explicit, and `init()` zeroes every byte).
public protocol ABIStruct {
    init()
}

extension ABIStruct {
    /// Bytes in a map key or value.
    public static var size: Int { MemoryLayout<Self>.size }

    /// The struct `bytes` hold; nil unless they are exactly its size.
    public static func load(_ bytes: UnsafeRawBufferPointer) -> Self? {
        bytes.count == size ? bytes.loadUnaligned(as: Self.self) : nil
    }

    /// The struct `bytes` hold; nil unless they are exactly its size.
    public static func load(_ bytes: [UInt8]) -> Self? {
        bytes.withUnsafeBytes { load($0) }
    }

    /// The struct's bytes, as the datapath reads them.
    public var bytes: [UInt8] { withUnsafeBytes(of: self) { Array($0) } }
}

extension nf_pod: ABIStruct {}
extension nf_policy_digest: ABIStruct {}
extension nf_lpm_key: ABIStruct {}
extension nf_port_rule: ABIStruct {}
extension nf_rule_set: ABIStruct {}
extension nf_conntrack_key: ABIStruct {}
extension nf_conntrack_value: ABIStruct {}
extension nf_fragment_key: ABIStruct {}
extension nf_fragment_value: ABIStruct {}
extension nf_domain_rule_key: ABIStruct {}
extension nf_domain_grant_key: ABIStruct {}
extension nf_domain_grant_pattern: ABIStruct {}
extension nf_domain_grant: ABIStruct {}
extension nf_dns_proxy: ABIStruct {}
extension nf_settings: ABIStruct {}
extension nf_pod_event_level: ABIStruct {}
extension nf_event_counts: ABIStruct {}
extension nf_event_limit: ABIStruct {}
extension nf_packet_counter: ABIStruct {}
extension nf_event: ABIStruct {}
extension nf_root_marker: ABIStruct {}
extension nf_pending_change: ABIStruct {}
extension nf_loader_counters: ABIStruct {}
extension nf_dns_proxy_stats: ABIStruct {}
extension nf_pod_registration: ABIStruct {}
extension nf_retired_object: ABIStruct {}
extension nf_object_manifest: ABIStruct {}
extension nf_object_chunk_key: ABIStruct {}
extension nf_object_chunk: ABIStruct {}
extension nf_hit_key: ABIStruct {}
extension nf_hit_value: ABIStruct {}

/// Fixed arrays of the header (`__u8 address[16]`, `char name[256]`, `struct nf_port_rule rules[32]`)
/// arrive in Swift as tuples: these read and write them as the elements they hold.
public enum ABIArray {
    /// The elements of `array` (a tuple of `Element`s).
    public static func elements<Array, Element: BitwiseCopyable>(_ array: Array, of _: Element.Type) -> [Element] {
        withUnsafeBytes(of: array) { raw in
            (0..<raw.count / MemoryLayout<Element>.stride).map { raw.loadUnaligned(fromByteOffset: $0 * MemoryLayout<Element>.stride, as: Element.self) }
        }
    }

    /// Element `index` of `array`; nil past its end.
    public static func element<Array, Element: BitwiseCopyable>(_ array: Array, _ index: Int, of _: Element.Type) -> Element? {
        withUnsafeBytes(of: array) { raw in
            let offset = index * MemoryLayout<Element>.stride
            return index >= 0 && offset + MemoryLayout<Element>.size <= raw.count ? raw.loadUnaligned(fromByteOffset: offset, as: Element.self) : nil
        }
    }

    /// Writes `elements` from the start of `array`; the rest keeps its bytes. Elements past its end are dropped.
    public static func set<Array, Element: BitwiseCopyable>(_ array: inout Array, to elements: [Element]) {
        withUnsafeMutableBytes(of: &array) { raw in
            for (index, element) in elements.enumerated() where (index + 1) * MemoryLayout<Element>.stride <= raw.count {
                raw.storeBytes(of: element, toByteOffset: index * MemoryLayout<Element>.stride, as: Element.self)
            }
        }
    }

    /// The text in a `char` field: up to its first NUL, as UTF-8.
    public static func text<Array>(_ array: Array) -> String {
        withUnsafeBytes(of: array) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// Writes `text` into a `char` field, NUL-terminated; the caller checked it fits (`fits`).
    public static func setText<Array>(_ array: inout Array, to text: String) {
        withUnsafeMutableBytes(of: &array) { raw in
            let utf8 = Swift.Array(text.utf8.prefix(raw.count - 1))
            raw.copyBytes(from: utf8)
            for index in utf8.count..<raw.count { raw[index] = 0 }
        }
    }

    /// Whether `text` fits the `char` field `field` with its NUL.
    public static func fits<Array>(_ text: String, in field: Array) -> Bool {
        text.utf8.count < MemoryLayout<Array>.size
    }

}

extension IPAddress {
    /// The address in a 16-byte field of the header (`__u8 addr[NF_ADDRESS_BYTES]`).
    public init<Field>(field: Field) {
        self = withUnsafeBytes(of: field) { IPAddress($0, at: 0) }
    }

    /// Writes the address into a 16-byte field of the header.
    public func store<Field>(in field: inout Field) {
        withBytes { bytes in withUnsafeMutableBytes(of: &field) { $0.copyMemory(from: bytes) } }
    }
}
