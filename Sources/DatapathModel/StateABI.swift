import CNetfenceABI

/// `struct nf_pod_registration`: a pod the loader attached.
public struct PodRegistration: Equatable, Sendable {
    public var ifindex: UInt32
    /// What the pod does in a direction when nothing selects it: true = deny.
    public var denyByDefault: [Direction: Bool]
    public var namespace: String
    public var name: String
    public var interface: String
    /// `ip netns` name of the interface's namespace; empty: the loader's own.
    public var netns: String

    public init(ifindex: UInt32, denyByDefault: [Direction: Bool], namespace: String, name: String, interface: String, netns: String) {
        self.ifindex = ifindex
        self.denyByDefault = denyByDefault
        self.namespace = namespace
        self.name = name
        self.interface = interface
        self.netns = netns
    }

    public static let size = MemoryLayout<nf_pod_registration>.size
    static let namespaceBytes = Int(NF_POD_NAMESPACE_BYTES)
    static let nameBytes = Int(NF_POD_NAME_BYTES)
    static let interfaceBytes = Int(NF_INTERFACE_BYTES)
    static let netnsBytes = Int(NF_NETNS_NAME_BYTES)

    /// Whether the texts fit the fixed fields (a name that does not is refused, never cut).
    public var fitsTheABI: Bool {
        namespace.utf8.count < Self.namespaceBytes && name.utf8.count < Self.nameBytes
            && interface.utf8.count < Self.interfaceBytes && netns.utf8.count < Self.netnsBytes
    }

    public func encode() -> [UInt8] {
        var writer = ByteWriter()
        writer.append(ifindex)
        writer.append(UInt8(denyByDefault[.ingress] == true ? 1 : 0))
        writer.append(UInt8(denyByDefault[.egress] == true ? 1 : 0))
        writer.pad(2)
        for (text, bytes) in [(namespace, Self.namespaceBytes), (name, Self.nameBytes), (interface, Self.interfaceBytes), (netns, Self.netnsBytes)] {
            let utf8 = Array(text.utf8.prefix(bytes - 1))
            writer.append(utf8)
            writer.pad(bytes - utf8.count)
        }
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) -> PodRegistration? {
        let reader = ByteReader(bytes)
        guard bytes.count == size, let ifindex = reader.integer(UInt32.self, at: 0),
              let ingress = reader.integer(UInt8.self, at: 4), let egress = reader.integer(UInt8.self, at: 5) else { return nil }
        var offset = 8
        var texts: [String] = []
        for length in [namespaceBytes, nameBytes, interfaceBytes, netnsBytes] {
            guard let field = reader.slice(at: offset, count: length) else { return nil }
            texts.append(String(decoding: field.prefix { $0 != 0 }, as: UTF8.self))
            offset += length
        }
        return PodRegistration(ifindex: ifindex, denyByDefault: [.ingress: ingress != 0, .egress: egress != 0],
                               namespace: texts[0], name: texts[1], interface: texts[2], netns: texts[3])
    }
}

/// `struct nf_object_manifest` and chunks: applied objects in `PolicyObjectCodec`'s form.
public enum ObjectStoreCodec {
    public static let chunkBytes = Int(NF_OBJECT_CHUNK_BYTES)
    public static let chunkSize = MemoryLayout<nf_object_chunk>.size
    public static let manifestSize = MemoryLayout<nf_object_manifest>.size

    public static func manifest(length: Int, chunks: Int, appliedNanoseconds: UInt64) -> [UInt8] {
        var writer = ByteWriter()
        writer.append(UInt32(length))
        writer.append(UInt32(chunks))
        writer.append(appliedNanoseconds)
        return writer.bytes
    }

    /// (length, chunks, applied at) of a manifest.
    public static func decodeManifest(_ bytes: [UInt8]) -> (length: Int, chunks: Int, appliedNanoseconds: UInt64)? {
        let reader = ByteReader(bytes)
        guard bytes.count == manifestSize, let length = reader.integer(UInt32.self, at: 0), let chunks = reader.integer(UInt32.self, at: 4),
              let applied = reader.integer(UInt64.self, at: 8) else { return nil }
        return (Int(length), Int(chunks), applied)
    }

    public static func chunkKey(object: UInt32, chunk: Int) -> [UInt8] {
        var writer = ByteWriter()
        writer.append(object)
        writer.append(UInt32(chunk))
        return writer.bytes
    }

    /// `data` split into chunk values.
    public static func chunks(_ data: [UInt8]) -> [[UInt8]] {
        stride(from: 0, to: max(data.count, 1), by: chunkBytes).map { start in
            let part = Array(data[start..<min(start + chunkBytes, data.count)])
            var writer = ByteWriter()
            writer.append(UInt32(part.count))
            writer.append(part)
            writer.pad(toSize: chunkSize)
            return writer.bytes
        }
    }

    /// The bytes a chunk value carries, or nil for a malformed one.
    public static func chunkData(_ bytes: [UInt8]) -> [UInt8]? {
        let reader = ByteReader(bytes)
        guard bytes.count == chunkSize, let length = reader.integer(UInt32.self, at: 0), Int(length) <= chunkBytes else { return nil }
        return reader.slice(at: 4, count: Int(length))
    }
}

/// `struct nf_root_marker`: what makes a folder a netfence pin root.
public struct RootMarker: Equatable, Sendable {
    public static let size = MemoryLayout<nf_root_marker>.size
    public static let magic = UInt64(NF_ROOT_MAGIC)
    /// This binary's `NF_ABI_VERSION`.
    public static let currentABIVersion = UInt32(NF_ABI_VERSION)

    public var createdNanoseconds: UInt64
    public var abiVersion: UInt32

    public init(createdNanoseconds: UInt64, abiVersion: UInt32 = currentABIVersion) {
        self.createdNanoseconds = createdNanoseconds
        self.abiVersion = abiVersion
    }

    public func encode() -> [UInt8] {
        var writer = ByteWriter()
        writer.append(Self.magic)
        writer.append(createdNanoseconds)
        writer.append(abiVersion)
        writer.pad(4)
        return writer.bytes
    }

    /// nil when the bytes are not a marker (an init killed before writing it leaves zeros).
    public static func decode(_ bytes: [UInt8]) -> RootMarker? {
        let reader = ByteReader(bytes)
        guard bytes.count == size, reader.integer(UInt64.self, at: 0) == magic, let created = reader.integer(UInt64.self, at: 8),
              let version = reader.integer(UInt32.self, at: 16) else { return nil }
        return RootMarker(createdNanoseconds: created, abiVersion: version)
    }
}

/// `struct nf_pending_change`: a loader change begun and not (yet) finished.
public struct PendingChange: Equatable, Sendable {
    /// `enum nf_loader_operation`, one name each way.
    public enum Operation: UInt32, Sendable, CaseIterable, CustomStringConvertible {
        case attach = 1, detach = 2, apply = 3, delete = 4, reconcile = 5

        public var description: String {
            switch self {
            case .attach: "attach"
            case .detach: "detach"
            case .apply: "apply"
            case .delete: "delete"
            case .reconcile: "reconcile"
            }
        }
    }

    public static let size = MemoryLayout<nf_pending_change>.size

    public var operation: Operation
    public var processID: UInt32
    public var startedNanoseconds: UInt64

    public init(operation: Operation, processID: UInt32, startedNanoseconds: UInt64) {
        self.operation = operation
        self.processID = processID
        self.startedNanoseconds = startedNanoseconds
    }

    public func encode() -> [UInt8] {
        var writer = ByteWriter()
        writer.append(operation.rawValue)
        writer.append(processID)
        writer.append(startedNanoseconds)
        return writer.bytes
    }

    /// The bytes of "nothing pending".
    public static let none = [UInt8](repeating: 0, count: size)

    /// nil for nothing pending (or an operation this binary does not know).
    public static func decode(_ bytes: [UInt8]) -> PendingChange? {
        let reader = ByteReader(bytes)
        guard bytes.count == size, let operation = reader.integer(UInt32.self, at: 0).flatMap(Operation.init),
              let pid = reader.integer(UInt32.self, at: 4), let started = reader.integer(UInt64.self, at: 8) else { return nil }
        return PendingChange(operation: operation, processID: pid, startedNanoseconds: started)
    }
}

/// `struct nf_retired_object`: the policy a replaced or deleted object version named.
public enum RetiredObjectCodec {
    public static let size = MemoryLayout<nf_retired_object>.size

    /// The bytes for `policyRef`, cut at a character boundary to fit (names longer than Kubernetes allows).
    public static func encode(policyRef: String) -> [UInt8] {
        var kept = ""
        for character in policyRef where kept.utf8.count + String(character).utf8.count < size { kept.append(character) }
        let utf8 = Array(kept.utf8)
        return utf8 + [UInt8](repeating: 0, count: size - utf8.count)
    }

    public static func decode(_ bytes: [UInt8]) -> String? {
        guard bytes.count == size else { return nil }
        return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }
}

/// `struct nf_dns_proxy_stats`: what a DNS proxy counted since it started.
public struct DNSProxyStats: Equatable, Sendable {
    /// `enum nf_dns_stat`, with the one name each goes by in metrics and status.
    public enum Counter: Int, CaseIterable, Sendable, CustomStringConvertible {
        case queries = 0, forwarded, refused, granted, failed, retriedOverTCP, spoofed, clientLimited, idleClosed

        public var description: String {
            switch self {
            case .queries: "queries"
            case .forwarded: "forwarded"
            case .refused: "refused"
            case .granted: "granted"
            case .failed: "failed"
            case .retriedOverTCP: "retried_over_tcp"
            case .spoofed: "spoofed"
            case .clientLimited: "client_limited"
            case .idleClosed: "idle_closed"
            }
        }
    }

    public static let size = MemoryLayout<nf_dns_proxy_stats>.size
    public var counts = [UInt64](repeating: 0, count: Counter.allCases.count)

    public init() {}

    public subscript(counter: Counter) -> UInt64 {
        get { counts[counter.rawValue] }
        set { counts[counter.rawValue] = newValue }
    }

    public func encode() -> [UInt8] {
        var writer = ByteWriter()
        for count in counts { writer.append(count) }
        return writer.bytes
    }

    public static func decode(_ bytes: [UInt8]) -> DNSProxyStats? {
        guard bytes.count == size else { return nil }
        let reader = ByteReader(bytes)
        var stats = DNSProxyStats()
        for counter in Counter.allCases { stats[counter] = reader.integer(UInt64.self, at: counter.rawValue * 8) ?? 0 }
        return stats
    }
}
