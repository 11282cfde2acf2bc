/// Crafted frames for verdict tests and benchmarks: Ethernet, IPv4 (with
/// options, fragments) or IPv6 (with extension headers), and a transport.
/// Checksums are left zero: tc programs do not check them.
public enum PacketBuilder {
    /// A transport header (and payload) to put in an IP packet.
    public enum Transport: Sendable {
        case tcp(sourcePort: UInt16, destinationPort: UInt16)
        case udp(sourcePort: UInt16, destinationPort: UInt16, payload: Int = 8)
        case sctp(sourcePort: UInt16, destinationPort: UInt16)
        /// ICMP or ICMPv6 echo (the family follows the addresses).
        case echo(request: Bool, identifier: UInt16)
        /// ICMP destination unreachable / ICMPv6 packet too big etc., quoting `quoted` (an IP packet).
        case icmpError(type: UInt8, code: UInt8, quoted: [UInt8])
        case neighbourSolicitation
        /// An MLDv2 listener report (ICMPv6 143) with no records.
        case multicastListenerReport
        /// Any bytes after the IP header, with this protocol number.
        case raw(protocolNumber: UInt8, bytes: [UInt8])
    }

    /// An IPv6 extension header: its type and body (after next-header and length).
    public struct Extension: Sendable {
        public let type: UInt8
        public let body: [UInt8]
        public init(type: UInt8, body: [UInt8]) { self.type = type; self.body = body }

        /// Hop-by-hop options padded to 8 bytes.
        public static let hopByHop = Extension(type: 0, body: [1, 4, 0, 0, 0, 0])
        /// Destination options padded to 8 bytes.
        public static let destinationOptions = Extension(type: 60, body: [1, 4, 0, 0, 0, 0])
        /// A fragment header: offset in 8-byte units.
        public static func fragment(offset: UInt16, more: Bool, identification: UInt32) -> Extension {
            let field = offset << 3 | (more ? 1 : 0)
            return Extension(type: 44, body: [UInt8(field >> 8), UInt8(field & 0xff)]
                + [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: identification >> $0) })
        }
    }

    /// IPv4 fragment fields: offset in 8-byte units.
    public struct Fragment: Sendable {
        public let identification: UInt16
        public let offset: UInt16
        public let more: Bool
        public init(identification: UInt16, offset: UInt16, more: Bool) {
            self.identification = identification; self.offset = offset; self.more = more
        }
    }

    /// An Ethernet frame carrying `transport` from `source` to `destination`, an
    /// IPv4 or IPv6 packet as `family` says (without one, the source's own:
    /// pass `.ipv6` for an IPv6 packet between mapped addresses).
    public static func frame(from source: IPAddress, to destination: IPAddress, _ transport: Transport, family: AddressFamily? = nil,
                             ipv4Options: [UInt8] = [], fragment: Fragment? = nil, extensions: [Extension] = []) -> [UInt8] {
        let family = family ?? source.family
        let ip = family == .ipv4
            ? ipv4(from: source, to: destination, transport, options: ipv4Options, fragment: fragment)
            : ipv6(from: source, to: destination, transport, extensions: extensions)
        return ethernet(etherType: family == .ipv4 ? 0x0800 : 0x86dd) + ip
    }

    /// The 14-byte Ethernet header (locally administered MACs).
    public static func ethernet(etherType: UInt16) -> [UInt8] {
        [0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, UInt8(etherType >> 8), UInt8(etherType & 0xff)]
    }

    /// An IPv4 packet (no Ethernet header).
    public static func ipv4(from source: IPAddress, to destination: IPAddress, _ transport: Transport,
                            options: [UInt8] = [], fragment: Fragment? = nil) -> [UInt8] {
        let (protocolNumber, body) = encode(transport, ipv6: false)
        let paddedOptions = options + [UInt8](repeating: 0, count: (4 - options.count % 4) % 4)
        let headerBytes = 20 + paddedOptions.count
        let total = headerBytes + body.count
        let flags = (fragment?.more == true ? 0x2000 : 0) | Int(fragment?.offset ?? 0)
        let id = fragment?.identification ?? 0
        var header: [UInt8] = [0x40 | UInt8(headerBytes / 4), 0, UInt8(total >> 8), UInt8(total & 0xff),
                               UInt8(id >> 8), UInt8(id & 0xff), UInt8(flags >> 8), UInt8(flags & 0xff),
                               64, protocolNumber, 0, 0]
        header += source.wireBytes + destination.wireBytes + paddedOptions
        return header + body
    }

    /// An IPv6 packet (no Ethernet header) with `extensions` before the transport.
    public static func ipv6(from source: IPAddress, to destination: IPAddress, _ transport: Transport,
                            extensions: [Extension] = []) -> [UInt8] {
        let (protocolNumber, body) = encode(transport, ipv6: true)
        var chain: [UInt8] = []
        for (index, ext) in extensions.enumerated() {
            let next = index + 1 < extensions.count ? extensions[index + 1].type : protocolNumber
            // Fragment headers have a fixed size; AH counts 4-byte units minus 2, the others 8-byte units minus 1.
            let length = ext.type == 44 ? 0 : ext.type == 51 ? (2 + ext.body.count) / 4 - 2 : (2 + ext.body.count) / 8 - 1
            chain += [next, UInt8(length)] + ext.body
        }
        let payload = chain + body
        let first = extensions.first?.type ?? protocolNumber
        return [0x60, 0, 0, 0, UInt8(payload.count >> 8), UInt8(payload.count & 0xff), first, 64]
            + source.bytes + destination.bytes + payload
    }

    private static func be16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xff)] }

    private static func encode(_ transport: Transport, ipv6: Bool) -> (UInt8, [UInt8]) {
        switch transport {
        case .tcp(let source, let destination):
            return (IPProtocolNumber.tcp, be16(source) + be16(destination) + [0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0])
        case .udp(let source, let destination, let payload):
            return (IPProtocolNumber.udp, be16(source) + be16(destination) + be16(UInt16(8 + payload)) + [0, 0]
                + [UInt8](repeating: 0x6e, count: payload))
        case .sctp(let source, let destination):
            return (IPProtocolNumber.sctp, be16(source) + be16(destination) + [0, 0, 0, 1, 0, 0, 0, 0])
        case .echo(let request, let identifier):
            let type: UInt8 = ipv6 ? (request ? 128 : 129) : (request ? 8 : 0)
            return (ipv6 ? IPProtocolNumber.icmpv6 : IPProtocolNumber.icmp, [type, 0, 0, 0] + be16(identifier) + [0, 1])
        case .icmpError(let type, let code, let quoted):
            return (ipv6 ? IPProtocolNumber.icmpv6 : IPProtocolNumber.icmp, [type, code, 0, 0, 0, 0, 0x05, 0xdc] + quoted)
        case .neighbourSolicitation:
            return (IPProtocolNumber.icmpv6, [135, 0, 0, 0, 0, 0, 0, 0] + [UInt8](repeating: 0, count: 16))
        case .multicastListenerReport:
            return (IPProtocolNumber.icmpv6, [143, 0, 0, 0, 0, 0, 0, 0])
        case .raw(let protocolNumber, let bytes):
            return (protocolNumber, bytes)
        }
    }
}
