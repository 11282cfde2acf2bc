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
    /// Detached, its id kept until a sweep deletes what still names it (`NF_REGISTRATION_DETACHED`).
    public var detached = false

    public init(ifindex: UInt32, denyByDefault: [Direction: Bool], namespace: String, name: String, interface: String, netns: String) {
        self.ifindex = ifindex
        self.denyByDefault = denyByDefault
        self.namespace = namespace
        self.name = name
        self.interface = interface
        self.netns = netns
    }

    public static let size = nf_pod_registration.size

    /// Whether the texts fit the fixed fields (a name that does not is refused, never cut).
    public var fitsTheABI: Bool {
        let raw = nf_pod_registration()
        return ABIArray.fits(namespace, in: raw.pod_namespace) && ABIArray.fits(name, in: raw.pod_name)
            && ABIArray.fits(interface, in: raw.interface) && ABIArray.fits(netns, in: raw.netns)
    }

    public func encode() -> [UInt8] {
        var raw = nf_pod_registration()
        raw.ifindex = ifindex
        raw.flags = detached ? UInt16(NF_REGISTRATION_DETACHED) : 0
        ABIArray.set(&raw.defaults, to: Direction.allCases.map { UInt8(denyByDefault[$0] == true ? 1 : 0) })
        ABIArray.setText(&raw.pod_namespace, to: namespace)
        ABIArray.setText(&raw.pod_name, to: name)
        ABIArray.setText(&raw.interface, to: interface)
        ABIArray.setText(&raw.netns, to: netns)
        return raw.bytes
    }

    public static func decode(_ bytes: [UInt8]) -> PodRegistration? {
        guard let raw = nf_pod_registration.load(bytes) else { return nil }
        let defaults = ABIArray.elements(raw.defaults, of: UInt8.self)
        var registration = PodRegistration(ifindex: raw.ifindex, denyByDefault: [.ingress: defaults[0] != 0, .egress: defaults[1] != 0],
                                           namespace: ABIArray.text(raw.pod_namespace), name: ABIArray.text(raw.pod_name),
                                           interface: ABIArray.text(raw.interface), netns: ABIArray.text(raw.netns))
        registration.detached = raw.flags & UInt16(NF_REGISTRATION_DETACHED) != 0
        return registration
    }
}

/// `struct nf_object_manifest` and chunks: applied objects in `PolicyObjectCodec`'s form.
public enum ObjectStoreCodec {
    public static let chunkBytes = Int(NF_OBJECT_CHUNK_BYTES)
    public static let chunkSize = nf_object_chunk.size
    public static let manifestSize = nf_object_manifest.size

    public static func manifest(length: Int, chunks: Int, appliedNanoseconds: UInt64) -> [UInt8] {
        var manifest = nf_object_manifest()
        manifest.length = UInt32(length)
        manifest.chunks = UInt32(chunks)
        manifest.applied_ns = appliedNanoseconds
        return manifest.bytes
    }

    /// (length, chunks, applied at) of a manifest.
    public static func decodeManifest(_ bytes: [UInt8]) -> (length: Int, chunks: Int, appliedNanoseconds: UInt64)? {
        nf_object_manifest.load(bytes).map { (Int($0.length), Int($0.chunks), $0.applied_ns) }
    }

    public static func chunkKey(object: UInt32, chunk: Int) -> [UInt8] {
        var key = nf_object_chunk_key()
        key.object_index = object
        key.chunk = UInt32(chunk)
        return key.bytes
    }

    /// (object index, chunk number) of a chunk key; nil when the bytes are not one.
    public static func decodeChunkKey(_ bytes: [UInt8]) -> (object: UInt32, chunk: Int)? {
        nf_object_chunk_key.load(bytes).map { ($0.object_index, Int($0.chunk)) }
    }

    /// `data` split into chunk values.
    public static func chunks(_ data: [UInt8]) -> [[UInt8]] {
        stride(from: 0, to: max(data.count, 1), by: chunkBytes).map { start in
            let part = data[start..<min(start + chunkBytes, data.count)]
            var chunk = nf_object_chunk()
            chunk.length = UInt32(part.count)
            var value = chunk.bytes
            value.replaceSubrange(dataOffset..<dataOffset + part.count, with: part)
            return value
        }
    }

    /// The bytes a chunk value carries, or nil for a malformed one.
    public static func chunkData(_ bytes: [UInt8]) -> [UInt8]? {
        guard let chunk = nf_object_chunk.load(bytes), Int(chunk.length) <= chunkBytes else { return nil }
        return Array(bytes[dataOffset..<dataOffset + Int(chunk.length)])
    }

    /// Where `data` starts in a chunk value (never read as a field: see `nf_object_chunk_data_offset`).
    private static let dataOffset = nf_object_chunk_data_offset()
}

/// `struct nf_root_marker`: what makes a folder a netfence pin root.
public struct RootMarker: Equatable, Sendable {
    public static let size = nf_root_marker.size
    public static let magic = UInt64(NF_ROOT_MAGIC)
    /// This binary's `NF_ABI_VERSION`.
    public static let currentABIVersion = UInt32(NF_ABI_VERSION)

    public var createdNanoseconds: UInt64
    public var abiVersion: UInt32
    /// How the pods' programs are attached (what every attach and init does).
    public var attachment: Attachment

    public init(createdNanoseconds: UInt64, abiVersion: UInt32 = currentABIVersion, attachment: Attachment = .tc) {
        self.createdNanoseconds = createdNanoseconds
        self.abiVersion = abiVersion
        self.attachment = attachment
    }

    public func encode() -> [UInt8] {
        var marker = nf_root_marker()
        marker.magic = Self.magic
        marker.created_ns = createdNanoseconds
        marker.abi_version = abiVersion
        marker.attachment = attachment.rawValue
        return marker.bytes
    }

    /// nil when the bytes are not a marker (an init killed before writing it leaves zeros). An
    /// attachment this binary does not know (a newer one's) reads as a filter's.
    public static func decode(_ bytes: [UInt8]) -> RootMarker? {
        guard let marker = nf_root_marker.load(bytes), marker.magic == magic else { return nil }
        return RootMarker(createdNanoseconds: marker.created_ns, abiVersion: marker.abi_version,
                          attachment: Attachment(rawValue: marker.attachment) ?? .tc)
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

    public static let size = nf_pending_change.size

    public var operation: Operation
    public var processID: UInt32
    public var startedNanoseconds: UInt64

    public init(operation: Operation, processID: UInt32, startedNanoseconds: UInt64) {
        self.operation = operation
        self.processID = processID
        self.startedNanoseconds = startedNanoseconds
    }

    public func encode() -> [UInt8] {
        var change = nf_pending_change()
        change.operation = operation.rawValue
        change.pid = processID
        change.started_ns = startedNanoseconds
        return change.bytes
    }

    /// The bytes of "nothing pending".
    public static let none = nf_pending_change().bytes

    /// nil for nothing pending (or an operation this binary does not know).
    public static func decode(_ bytes: [UInt8]) -> PendingChange? {
        guard let change = nf_pending_change.load(bytes), let operation = Operation(rawValue: change.operation) else { return nil }
        return PendingChange(operation: operation, processID: change.pid, startedNanoseconds: change.started_ns)
    }
}

/// `struct nf_loader_counters`: what only grows on a node (revisions; where the next pod id is looked for).
public struct LoaderCounters: Equatable, Sendable {
    public var lastRevision: UInt32
    public var nextPodID: UInt32

    public init(lastRevision: UInt32 = 0, nextPodID: UInt32 = 0) {
        self.lastRevision = lastRevision
        self.nextPodID = nextPodID
    }

    public func encode() -> [UInt8] {
        var counters = nf_loader_counters()
        counters.last_revision = lastRevision
        counters.next_pod_id = nextPodID
        return counters.bytes
    }

    /// The counters in a value; a value of another size (or none) reads as a new node's.
    public static func decode(_ bytes: [UInt8]) -> LoaderCounters {
        nf_loader_counters.load(bytes).map { LoaderCounters(lastRevision: $0.last_revision, nextPodID: $0.next_pod_id) } ?? LoaderCounters()
    }
}

/// `struct nf_retired_object`: the policy a replaced or deleted object version named.
public enum RetiredObjectCodec {
    public static let size = nf_retired_object.size

    /// The bytes for `policyRef`, cut at a character boundary to fit (names longer than Kubernetes allows).
    public static func encode(policyRef: String) -> [UInt8] {
        var kept = ""
        for character in policyRef where kept.utf8.count + String(character).utf8.count < size { kept.append(character) }
        var retired = nf_retired_object()
        ABIArray.setText(&retired.policy_ref, to: kept)
        return retired.bytes
    }

    public static func decode(_ bytes: [UInt8]) -> String? {
        nf_retired_object.load(bytes).map { ABIArray.text($0.policy_ref) }
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

    public static let size = nf_dns_proxy_stats.size
    public var counts = [UInt64](repeating: 0, count: Counter.allCases.count)

    public init() {}

    public subscript(counter: Counter) -> UInt64 {
        get { counts[counter.rawValue] }
        set { counts[counter.rawValue] = newValue }
    }

    /// Adds what `other` counted (another event loop of the same proxy).
    public mutating func add(_ other: DNSProxyStats) {
        for index in counts.indices { counts[index] += other.counts[index] }
    }

    public func encode() -> [UInt8] {
        var stats = nf_dns_proxy_stats()
        ABIArray.set(&stats.counts, to: counts)
        return stats.bytes
    }

    public static func decode(_ bytes: [UInt8]) -> DNSProxyStats? {
        guard let raw = nf_dns_proxy_stats.load(bytes) else { return nil }
        var stats = DNSProxyStats()
        for counter in Counter.allCases { stats[counter] = ABIArray.element(raw.counts, counter.rawValue, of: UInt64.self) ?? 0 }
        return stats
    }
}
