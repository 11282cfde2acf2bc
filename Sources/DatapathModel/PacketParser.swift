/// A flow's addresses, protocol and ports as the datapath keys it (ports in host order).
public struct FlowTuple: Hashable, Sendable {
    public var source: IPAddress
    public var destination: IPAddress
    public var sourcePort: UInt16 = 0
    public var destinationPort: UInt16 = 0
    public var protocolNumber: UInt8 = 0

    public init(source: IPAddress, destination: IPAddress, sourcePort: UInt16 = 0, destinationPort: UInt16 = 0, protocolNumber: UInt8 = 0) {
        self.source = source
        self.destination = destination
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.protocolNumber = protocolNumber
    }

    /// The same flow seen from the other end.
    public var reversed: FlowTuple {
        FlowTuple(source: destination, destination: source, sourcePort: destinationPort, destinationPort: sourcePort,
                  protocolNumber: protocolNumber)
    }

    /// The far end from the pod: the destination of what it sends, the source of what it receives.
    public func peer(_ direction: Direction) -> IPAddress { direction == .egress ? destination : source }
}

/// What the datapath reads from a frame.
public struct ParsedPacket: Sendable, Equatable {
    public var family: AddressFamily
    public var flow: FlowTuple
    /// For ICMP errors: the packet the error is about.
    public var quoted: FlowTuple?
    public var fragmentID: UInt32 = 0
    public var firstFragment = false
    public var laterFragment = false
}

/// The three outcomes of parsing, as `parse()` in bpf/datapath.bpf.c has them.
public enum ParseResult: Sendable, Equatable {
    case packet(ParsedPacket)
    /// Not ours to judge: non-IP frames, IPv6 neighbour and multicast listener discovery.
    case pass
    /// Truncated or malformed headers.
    case unparseable
}

/// The reference for the BPF parser: the same reads, bounds and decisions.
public enum PacketParser {
    static let ethernetBytes = 14
    static let etherTypeIPv4: UInt16 = 0x0800
    static let etherTypeIPv6: UInt16 = 0x86dd

    public static func parse(_ frame: [UInt8]) -> ParseResult {
        guard frame.count >= ethernetBytes else { return .pass }
        let etherType = UInt16(frame[12]) << 8 | UInt16(frame[13])
        switch etherType {
        case etherTypeIPv4: return parseIPv4(frame)
        case etherTypeIPv6: return parseIPv6(frame)
        default: return .pass
        }
    }

    private static func parseIPv4(_ frame: [UInt8]) -> ParseResult {
        let ip = ethernetBytes
        guard frame.count >= ip + 20, frame[ip] >> 4 == 4, frame[ip] & 0xf >= 5 else { return .unparseable }
        let headerBytes = Int(frame[ip] & 0xf) * 4
        guard frame.count >= ip + headerBytes else { return .unparseable }
        var packet = ParsedPacket(family: .ipv4, flow: FlowTuple(
            source: IPAddress(ipv4: Array(frame[(ip + 12)..<(ip + 16)])),
            destination: IPAddress(ipv4: Array(frame[(ip + 16)..<(ip + 20)])), protocolNumber: frame[ip + 9]))
        let fragment = UInt16(frame[ip + 6]) << 8 | UInt16(frame[ip + 7])
        packet.fragmentID = UInt32(UInt16(frame[ip + 4]) << 8 | UInt16(frame[ip + 5]))
        packet.laterFragment = fragment & 0x1fff != 0
        packet.firstFragment = !packet.laterFragment && fragment & 0x2000 != 0
        return parseTransport(frame, offset: ip + headerBytes, packet)
    }

    private static func parseIPv6(_ frame: [UInt8]) -> ParseResult {
        let ip = ethernetBytes
        guard frame.count >= ip + 40, frame[ip] >> 4 == 6 else { return .unparseable }
        var packet = ParsedPacket(family: .ipv6, flow: FlowTuple(
            source: IPAddress(bytes: Array(frame[(ip + 8)..<(ip + 24)])),
            destination: IPAddress(bytes: Array(frame[(ip + 24)..<(ip + 40)]))))
        var next = frame[ip + 6]
        var offset = ip + 40
        for _ in 0..<DatapathLimits.ipv6ExtensionHeaders {
            switch next {
            case 0, 43, 60:  // hop-by-hop, routing, destination options
                guard frame.count >= offset + 2 else { return .unparseable }
                (next, offset) = (frame[offset], offset + (Int(frame[offset + 1]) + 1) * 8)
            case 51:  // authentication header
                guard frame.count >= offset + 2 else { return .unparseable }
                (next, offset) = (frame[offset], offset + (Int(frame[offset + 1]) + 2) * 4)
            case 44:  // fragment
                guard frame.count >= offset + 8 else { return .unparseable }
                let fragment = UInt16(frame[offset + 2]) << 8 | UInt16(frame[offset + 3])
                next = frame[offset]
                packet.fragmentID = frame[(offset + 4)..<(offset + 8)].reduce(0) { $0 << 8 | UInt32($1) }
                packet.laterFragment = fragment >> 3 != 0
                packet.firstFragment = !packet.laterFragment && fragment & 1 != 0
                offset += 8
            case 59:  // no next header
                packet.flow.protocolNumber = next
                return .packet(packet)
            default:
                packet.flow.protocolNumber = next
                return parseTransport(frame, offset: offset, packet)
            }
        }
        return .unparseable
    }

    private static func ports(_ frame: [UInt8], offset: Int, into tuple: inout FlowTuple) -> Bool {
        guard [IPProtocolNumber.tcp, IPProtocolNumber.udp, IPProtocolNumber.sctp].contains(tuple.protocolNumber) else { return true }
        guard offset >= 0, frame.count >= offset + 4 else { return false }
        tuple.sourcePort = UInt16(frame[offset]) << 8 | UInt16(frame[offset + 1])
        tuple.destinationPort = UInt16(frame[offset + 2]) << 8 | UInt16(frame[offset + 3])
        return true
    }

    private static func parseTransport(_ frame: [UInt8], offset: Int, _ input: ParsedPacket) -> ParseResult {
        var packet = input
        if packet.laterFragment { return .packet(packet) }
        let proto = packet.flow.protocolNumber
        guard proto == IPProtocolNumber.icmp || proto == IPProtocolNumber.icmpv6 else {
            return ports(frame, offset: offset, into: &packet.flow) ? .packet(packet) : .unparseable
        }
        guard frame.count >= offset + 8 else { return .unparseable }
        let type = frame[offset]
        let identifier = UInt16(frame[offset + 4]) << 8 | UInt16(frame[offset + 5])
        let quotedAt = offset + 8
        if proto == IPProtocolNumber.icmp {
            if type == 8 || type == 0 {
                (packet.flow.sourcePort, packet.flow.destinationPort) = (identifier, identifier)
            } else if [3, 11, 12].contains(type), frame.count >= quotedAt + 20, frame[quotedAt] & 0xf >= 5 {
                var quoted = FlowTuple(source: IPAddress(ipv4: Array(frame[(quotedAt + 12)..<(quotedAt + 16)])),
                                       destination: IPAddress(ipv4: Array(frame[(quotedAt + 16)..<(quotedAt + 20)])),
                                       protocolNumber: frame[quotedAt + 9])
                if ports(frame, offset: quotedAt + Int(frame[quotedAt] & 0xf) * 4, into: &quoted) { packet.quoted = quoted }
            }
            return .packet(packet)
        }
        if (133...137).contains(type) || (130...132).contains(type) || type == 143 { return .pass }  // ND and MLD
        if type == 128 || type == 129 {
            (packet.flow.sourcePort, packet.flow.destinationPort) = (identifier, identifier)
        } else if (1...4).contains(type), frame.count >= quotedAt + 40 {
            var quoted = FlowTuple(source: IPAddress(bytes: Array(frame[(quotedAt + 8)..<(quotedAt + 24)])),
                                   destination: IPAddress(bytes: Array(frame[(quotedAt + 24)..<(quotedAt + 40)])),
                                   protocolNumber: frame[quotedAt + 6])
            if ports(frame, offset: quotedAt + 40, into: &quoted) { packet.quoted = quoted }
        }
        return .packet(packet)
    }
}
