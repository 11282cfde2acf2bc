import CNetfenceShim
import Glibc
import HostKit

/// A route-netlink socket bound to one network namespace, for dump requests.
struct RouteNetlink {
    private let socket: FileDescriptor
    private let namespaceName: String
    private var sequence: UInt32 = 1

    /// A socket in `namespace` (its queries describe that namespace).
    init(in namespace: NetworkNamespace) throws {
        let fd = try NetworkNamespace.withDescriptor(of: namespace) { nf_socket_in_netns($0, AF_NETLINK, Int32(SOCK_RAW.rawValue), NETLINK_ROUTE) }
        try check(fd, "open netlink socket in network namespace", namespace.name)
        socket = FileDescriptor(owning: fd)
        namespaceName = namespace.name
    }

    /// Sends a dump request of `type` with `header` (a fixed-size family header)
    /// and returns each reply's payload. A dump the kernel refuses (an interface
    /// without clsact, say) throws with the kernel's errno.
    mutating func dump(type: UInt16, header: [UInt8]) throws -> [[UInt8]] {
        try request(type: type, payload: header, flags: UInt16(NLM_F_REQUEST | NLM_F_DUMP))
    }

    /// Sends a request of `type` with `payload` and returns each reply's payload.
    mutating func request(type: UInt16, payload header: [UInt8], flags: UInt16 = UInt16(NLM_F_REQUEST)) throws -> [[UInt8]] {
        sequence &+= 1
        var request = [UInt8]()
        request.appendHostOrder(UInt32(16 + header.count))
        request.appendHostOrder(type)
        request.appendHostOrder(flags)
        request.appendHostOrder(sequence)
        request.appendHostOrder(UInt32(0))
        request += header
        let sent = request.withUnsafeBytes { send(socket.rawValue, $0.baseAddress, $0.count, 0) }
        if sent < 0 { throw SystemError("send netlink request in", namespaceName, errno: errno) }

        var replies: [[UInt8]] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let received = buffer.withUnsafeMutableBytes { recv(socket.rawValue, $0.baseAddress, $0.count, 0) }
            if received < 0 {
                if errno == EINTR { continue }
                throw SystemError("receive netlink reply in", namespaceName, errno: errno)
            }
            var offset = 0
            while offset + 16 <= received {
                let length = Int(buffer.hostOrder(UInt32.self, at: offset))
                let messageType = buffer.hostOrder(UInt16.self, at: offset + 4)
                guard length >= 16, offset + length <= received else { break }
                if messageType == NLMSG_DONE { return replies }
                if messageType == NLMSG_ERROR {
                    let code = Int32(bitPattern: buffer.hostOrder(UInt32.self, at: offset + 16))
                    if code == 0 { return replies }
                    throw SystemError("netlink request in", namespaceName, errno: -code)
                }
                replies.append(Array(buffer[(offset + 16)..<(offset + length)]))
                offset += (length + 3) & ~3
            }
            // A plain request is answered by one message, with no NLMSG_DONE after it.
            if flags & UInt16(NLM_F_DUMP) == 0 && !replies.isEmpty { return replies }
        }
    }
}

/// One netlink attribute: its type (nested flag cleared) and payload.
struct NetlinkAttribute {
    let type: UInt16
    let payload: ArraySlice<UInt8>

    /// The attributes packed in `bytes` from `offset` on; stops at the first malformed one.
    static func parse(_ bytes: ArraySlice<UInt8>) -> [NetlinkAttribute] {
        var result: [NetlinkAttribute] = []
        var offset = bytes.startIndex
        while offset + 4 <= bytes.endIndex {
            let length = Int(bytes.hostOrder(UInt16.self, at: offset))
            let type = bytes.hostOrder(UInt16.self, at: offset + 2) & ~UInt16(NLA_F_NESTED | NLA_F_NET_BYTEORDER)
            guard length >= 4, offset + length <= bytes.endIndex else { break }
            result.append(NetlinkAttribute(type: type, payload: bytes[(offset + 4)..<(offset + length)]))
            offset += (length + 3) & ~3
        }
        return result
    }

    var uint32: UInt32? { payload.count >= 4 ? payload.hostOrder(UInt32.self, at: payload.startIndex) : nil }
    var string: String { String(decoding: payload.prefix { $0 != 0 }, as: UTF8.self) }
    var nested: [NetlinkAttribute] { Self.parse(payload) }
}

extension [NetlinkAttribute] {
    /// The first attribute of `type` (an IFLA_*, TCA_* … constant).
    func attribute(_ type: some BinaryInteger) -> NetlinkAttribute? { first { $0.type == UInt16(type) } }
}

// Netlink speaks the host's byte order.
extension Array where Element == UInt8 {
    mutating func appendHostOrder<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value) { append(contentsOf: $0) }
    }
}

extension RandomAccessCollection where Element == UInt8, Index == Int {
    /// A host-order integer at absolute index `offset` (the caller checked the bounds).
    func hostOrder<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        withContiguousStorageIfAvailable { storage in
            UnsafeRawBufferPointer(storage).loadUnaligned(fromByteOffset: offset - startIndex, as: T.self)
        } ?? 0
    }
}

extension RouteNetlink {
    /// The interface the kernel routes `address` (4 or 16 bytes, network order) out of,
    /// in this socket's namespace (RTM_GETROUTE, RTA_OIF of the answer).
    mutating func outputInterface(to address: [UInt8]) throws -> UInt32 {
        let family = UInt8(address.count == 4 ? AF_INET : AF_INET6)
        var header = [UInt8](repeating: 0, count: 12)  // struct rtmsg
        header[0] = family
        header[1] = UInt8(address.count * 8)  // rtm_dst_len
        var destination = [UInt8]()
        destination.appendHostOrder(UInt16(4 + address.count))
        destination.appendHostOrder(UInt16(RTA_DST.rawValue))
        destination += address
        let replies = try request(type: UInt16(RTM_GETROUTE), payload: header + destination)
        for reply in replies where reply.count >= 12 {
            if let index = NetlinkAttribute.parse(reply[12...]).attribute(RTA_OIF.rawValue)?.uint32 { return index }
        }
        throw SystemError("find the route to", address.map(String.init).joined(separator: "."), errno: ENETUNREACH)
    }
}

/// Which interface of a namespace leads to an address (the host veth of a pod, say).
public struct RouteLookup {
    private var socket: RouteNetlink

    public init(in namespace: NetworkNamespace = .current) throws { socket = try RouteNetlink(in: namespace) }

    /// The index of the interface the kernel sends packets for `address` (4 or 16 bytes) out of.
    public mutating func outputInterface(to address: [UInt8]) throws -> UInt32 { try socket.outputInterface(to: address) }
}
