import CLibBPF
import CNetfenceShim
import Glibc
import HostKit

/// The clsact hook a tc program sits on.
public enum TCDirection: String, Sendable, Codable, CaseIterable {
    case ingress, egress

    var hook: nf_tc_hook { self == .ingress ? NF_TC_HOOK_INGRESS : NF_TC_HOOK_EGRESS }
    /// The clsact parent id of the hook (TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_*)).
    var parent: UInt32 {
        (UInt32(TC_H_CLSACT) & 0xFFFF_0000) | (UInt32(self == .ingress ? TC_H_MIN_INGRESS : TC_H_MIN_EGRESS) & 0xFFFF)
    }
}

/// Where a program is attached: an interface's tc hook (a cls_bpf filter on clsact, or a tcx
/// link) or XDP, in some namespace.
public struct ProgramAttachment: Sendable, Equatable, Codable {
    /// How the program sits on the interface: a cls_bpf filter on clsact, a tcx link, or XDP.
    public enum Kind: String, Sendable, Codable {
        case tc, tcx, xdp
    }

    public let kind: Kind
    public let namespace: String
    public let interface: String
    public let ifindex: UInt32
    /// For tc: the hook. XDP sees ingress only.
    public let direction: TCDirection
    /// For tc: the filter's priority and handle (tcx has neither).
    public let priority: UInt32?
    public let handle: UInt32?
    public let programID: UInt32

    /// `veth0@node-ns tc/ingress`.
    public var summary: String { "\(interface)@\(namespace) \(kind.rawValue)/\(direction.rawValue)" }
}

/// Attaching tc programs and finding every program attached to interfaces.
public enum TCAttachments {
    /// Attaches `program` as a direct-action filter on `interface`'s `direction`
    /// hook inside `namespace` (nil: this process's), creating clsact when absent
    /// and replacing a filter with the same handle and priority atomically.
    @discardableResult
    public static func attach(_ program: BPFProgram, interface: String, direction: TCDirection,
                              in namespace: NetworkNamespace? = nil, handle: UInt32 = 0, priority: UInt32 = 0) throws
        -> (ifindex: UInt32, handle: UInt32, priority: UInt32) {
        nf_libbpf_capture_logs()  // libbpf would print netlink notices to stderr
        var ifindex: UInt32 = 0, usedHandle: UInt32 = 0, usedPriority: UInt32 = 0
        let result = try NetworkNamespace.withDescriptor(of: namespace) { nsfd in
            interface.withCString { name in
                var target = nf_tc_target(netns_fd: nsfd, ifname: name, hook: direction.hook, handle: handle, priority: priority)
                return nf_tc_attach(&target, program.descriptor.rawValue, &ifindex, &usedHandle, &usedPriority)
            }
        }
        try check(result, "attach tc \(direction.rawValue) program to", describe(interface, namespace))
        return (ifindex, usedHandle, usedPriority)
    }

    /// Attaches `program` to `interface`'s `direction` hook inside `namespace` through tcx (kernel 6.6
    /// on): a BPF link, run before any cls_bpf filter of the hook, attached while the returned link
    /// lives. Throws EINVAL on an older kernel.
    public static func attachLink(_ program: BPFProgram, interface: String, direction: TCDirection,
                                  in namespace: NetworkNamespace? = nil) throws -> TCXLink {
        var ifindex: UInt32 = 0
        let result = try NetworkNamespace.withDescriptor(of: namespace) { nsfd in
            interface.withCString { name in
                var target = nf_tc_target(netns_fd: nsfd, ifname: name, hook: direction.hook, handle: 0, priority: 0)
                return nf_tcx_attach(&target, program.descriptor.rawValue, &ifindex)
            }
        }
        try check(result, "attach tcx \(direction.rawValue) program to", describe(interface, namespace))
        return TCXLink(descriptor: FileDescriptor(owning: result), ifindex: ifindex, direction: direction)
    }

    /// Whether this kernel attaches through tcx (6.6 on).
    public static var tcxAvailable: Bool { nf_tcx_available() == 1 }

    /// Removes the filter with `handle` and `priority` from `interface`'s hook.
    public static func detach(interface: String, direction: TCDirection, in namespace: NetworkNamespace? = nil,
                              handle: UInt32, priority: UInt32) throws {
        nf_libbpf_capture_logs()
        let result = try NetworkNamespace.withDescriptor(of: namespace) { nsfd in
            interface.withCString { name in
                var target = nf_tc_target(netns_fd: nsfd, ifname: name, hook: direction.hook, handle: handle, priority: priority)
                return nf_tc_detach(&target)
            }
        }
        try check(result, "detach tc \(direction.rawValue) program from", describe(interface, namespace))
    }

    private static func describe(_ interface: String, _ namespace: NetworkNamespace?) -> String {
        namespace.map { "\(interface) in network namespace \($0.name)" } ?? interface
    }

    /// Every tc (clsact filters and tcx links) and XDP program attachment in `namespaces`, found
    /// through netlink and BPF_PROG_QUERY. Namespaces that cannot be entered are skipped.
    public static func scan(_ namespaces: [NetworkNamespace] = NetworkNamespace.all()) -> [ProgramAttachment] {
        namespaces.flatMap { namespace in (try? scan(namespace)) ?? [] }
    }

    static func scan(_ namespace: NetworkNamespace) throws -> [ProgramAttachment] {
        var netlink = try RouteNetlink(in: namespace)
        var header = [UInt8](repeating: 0, count: 16)  // struct ifinfomsg
        header[0] = UInt8(AF_UNSPEC)
        var result: [ProgramAttachment] = []
        var interfaces: [(ifindex: UInt32, name: String)] = []
        for link in try netlink.dump(type: UInt16(RTM_GETLINK), header: header) where link.count >= 16 {
            let ifindex = UInt32(bitPattern: link.hostOrder(Int32.self, at: 4))
            let attributes = NetlinkAttribute.parse(link[16...])
            let name = attributes.attribute(IFLA_IFNAME)?.string ?? "if\(ifindex)"
            interfaces.append((ifindex, name))
            if let xdp = attributes.attribute(IFLA_XDP)?.nested, let id = xdp.attribute(IFLA_XDP_PROG_ID)?.uint32, id != 0 {
                result.append(ProgramAttachment(kind: .xdp, namespace: namespace.name, interface: name, ifindex: ifindex,
                                                direction: .ingress, priority: nil, handle: nil, programID: id))
            }
            for direction in TCDirection.allCases {
                result += (try? filters(&netlink, ifindex: ifindex, direction: direction)).map { found in
                    found.map { ProgramAttachment(kind: .tc, namespace: namespace.name, interface: name, ifindex: ifindex,
                                                  direction: direction, priority: $0.priority, handle: $0.handle, programID: $0.id) }
                } ?? []
            }
        }
        // A namespace whose tcx cannot be queried still shows its filters and XDP programs.
        for (interface, ids) in zip(interfaces, (try? tcxPrograms(on: interfaces.map(\.ifindex), in: namespace)) ?? []) {
            for (direction, programs) in zip(TCDirection.allCases, [ids.ingress, ids.egress]) {
                result += programs.map { ProgramAttachment(kind: .tcx, namespace: namespace.name, interface: interface.name,
                                                           ifindex: interface.ifindex, direction: direction, priority: nil, handle: nil, programID: $0) }
            }
        }
        return result
    }

    /// The ids of the programs tcx runs on each interface's two hooks, in order (none before kernel 6.6):
    /// one entry into the namespace for all of them.
    private static func tcxPrograms(on ifindexes: [UInt32], in namespace: NetworkNamespace) throws -> [(ingress: [UInt32], egress: [UInt32])] {
        guard !ifindexes.isEmpty else { return [] }
        let perSlot = 16, slots = ifindexes.count * 2
        var ids = [UInt32](repeating: 0, count: slots * perSlot), found = [UInt32](repeating: 0, count: slots)
        let result = try NetworkNamespace.withDescriptor(of: namespace) { nsfd in
            nf_tcx_query(nsfd, ifindexes, UInt32(ifindexes.count), &ids, UInt32(perSlot), &found)
        }
        try check(result, "query tcx programs in network namespace", namespace.name)
        func slot(_ index: Int) -> [UInt32] { Array(ids[(index * perSlot)..<(index * perSlot + Int(found[index]))]) }
        return ifindexes.indices.map { (slot($0 * 2), slot($0 * 2 + 1)) }
    }

    /// The cls_bpf filters on one clsact hook; throws when the interface has no clsact.
    private static func filters(_ netlink: inout RouteNetlink, ifindex: UInt32, direction: TCDirection) throws
        -> [(id: UInt32, priority: UInt32, handle: UInt32)] {
        var header = [UInt8]()  // struct tcmsg
        header.appendHostOrder(UInt32(AF_UNSPEC))
        header.appendHostOrder(ifindex)
        header.appendHostOrder(UInt32(0))
        header.appendHostOrder(direction.parent)
        header.appendHostOrder(UInt32(0))
        return try netlink.dump(type: UInt16(RTM_GETTFILTER), header: header).compactMap { filter in
            guard filter.count >= 20 else { return nil }
            let attributes = NetlinkAttribute.parse(filter[20...])
            guard attributes.attribute(TCA_KIND)?.string == "bpf",
                  let id = attributes.attribute(TCA_OPTIONS)?.nested.attribute(TCA_BPF_ID)?.uint32 else { return nil }
            let handle = filter.hostOrder(UInt32.self, at: 8)
            let info = filter.hostOrder(UInt32.self, at: 16)
            return (id, info >> 16, handle)
        }
    }
}

/// A program attached to an interface's hook through tcx: attached while this link lives (its
/// descriptor, or a pin of it on bpffs).
public final class TCXLink {
    public let descriptor: FileDescriptor
    /// 0 for a pinned link whose interface is gone (the kernel detached it).
    public let ifindex: UInt32
    public let direction: TCDirection

    init(descriptor: FileDescriptor, ifindex: UInt32, direction: TCDirection) {
        (self.descriptor, self.ifindex, self.direction) = (descriptor, ifindex, direction)
    }

    /// The tcx link pinned at `path`, nil when nothing is pinned there; throws for another kind of pin.
    public static func pinned(at path: String) throws -> TCXLink? {
        let fd = bpf_obj_get(path)
        if fd == -ENOENT { return nil }
        try check(fd, "open pinned link", path)
        let descriptor = FileDescriptor(owning: fd)
        var ifindex: UInt32 = 0, hook = NF_TC_HOOK_INGRESS
        try check(nf_tcx_link_info(descriptor.rawValue, &ifindex, &hook), "read tcx link pinned at", path)
        return TCXLink(descriptor: descriptor, ifindex: ifindex, direction: hook == NF_TC_HOOK_INGRESS ? .ingress : .egress)
    }

    /// Pins the link at `path`, replacing what was pinned there in one step (a staged pin
    /// renamed over it): a link pinned there before is released, so detached unless held elsewhere.
    public func pin(at path: String) throws {
        let staged = "\(path)_next"
        if unlink(staged) != 0, errno != ENOENT { throw SystemError("remove staged link pin", staged, errno: errno) }
        try check(bpf_obj_pin(descriptor.rawValue, staged), "pin link to", staged)
        if rename(staged, path) != 0 { throw SystemError("replace link pin", path, errno: errno) }
    }

    /// Takes the program off its hook now (`BPF_LINK_DETACH`). Unpinning alone leaves that to a
    /// kernel worker, after the last holder let go: the hook would still run it when the caller returns.
    public func detach() throws {
        try check(bpf_link_detach(descriptor.rawValue), "detach tcx link from interface", "\(ifindex)")
    }

    /// Runs `program` from now on instead of the one it ran: one atomic switch on its hook.
    public func update(_ program: BPFProgram) throws {
        try check(bpf_link_update(descriptor.rawValue, program.descriptor.rawValue, nil), "replace the program of a tcx link on interface",
                  "\(ifindex)")
    }
}
