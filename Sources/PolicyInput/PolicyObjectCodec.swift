import DNS
import DatapathModel

/// The loader's stored form of an applied object: compact, versioned,
/// length-prefixed binary in host byte order; addresses and prefixes as their
/// bytes, domain patterns as their canonical text, read back into the same typed
/// values. (JSONEncoder took ~12 ms for a 1,000-rule object, a quarter of the
/// apply budget; this takes about one. Every loader command reads every stored
/// object, so reading them back must be cheap too: no text to parse.)
public enum PolicyObjectCodec {
    /// 3 stores addresses and prefixes as bytes (1 and 2 as text, still read); 2 added the
    /// mode byte (version 1 records, stored before audit objects existed, read as enforced).
    static let version: UInt8 = 3

    public static func encode(_ object: PolicyObject) -> [UInt8] {
        var out = Writer()
        out.byte(version)
        out.byte(object.key.kind == .policyEndpoint ? 0 : 1)
        out.string(object.key.namespace)
        out.string(object.key.name)
        out.string(object.policyRef)
        out.byte((object.isolation.contains(.ingress) ? 1 : 0) | (object.isolation.contains(.egress) ? 2 : 0))
        out.count(object.pods.count)
        for selected in object.pods {
            out.string(selected.pod.namespace)
            out.string(selected.pod.name)
            out.address(selected.podIP)
            out.address(selected.hostIP)
        }
        out.byte(object.tier == .admin ? 1 : object.tier == .baseline ? 2 : 0)
        out.integer(object.priority)
        out.byte(object.mode == .audit ? 1 : 0)
        for rules in [object.ingress, object.egress] {
            out.count(rules.count)
            for rule in rules {
                out.prefix(rule.cidr)
                out.count(rule.except.count)
                rule.except.forEach { out.prefix($0) }
                out.count(rule.ports.count)
                for port in rule.ports {
                    out.byte(port.protocolNumber)
                    out.integer(port.port ?? 0)
                    out.integer(port.endPort ?? 0)
                }
                out.string(rule.domainName?.description ?? "")
                out.byte(rule.action == .accept ? 0 : rule.action == .deny ? 1 : 2)
            }
        }
        return out.bytes
    }

    /// nil for bytes of another version or a damaged record; never traps. Without `rules`,
    /// the object comes back with no ingress or egress rules: what naming and
    /// selection need, read in a fraction of the time of a large object's rules.
    public static func decode(_ bytes: [UInt8], rules: Bool = true) -> PolicyObject? {
        var input = Reader(bytes: bytes)
        guard let stored = input.byte(), (1...version).contains(stored), let kind = input.byte(), kind <= 1,
              let namespace = input.string(), let name = input.string(), let policyRef = input.string(),
              let isolationBits = input.byte(), let podCount = input.count() else { return nil }
        var pods: [SelectedPod] = []
        for _ in 0..<podCount {
            let binary = stored >= 3
            guard let podNamespace = input.string(), let podName = input.string(),
                  let podIP = binary ? input.address() : input.optional(IPAddress.init),
                  let hostIP = binary ? input.address() : input.optional(IPAddress.init) else { return nil }
            pods.append(SelectedPod(pod: PodReference(namespace: podNamespace, name: podName), podIP: podIP, hostIP: hostIP))
        }
        guard let tierByte = input.byte(), tierByte <= 2, let priority = input.integer(UInt16.self) else { return nil }
        var mode = PolicyMode.enforce
        if stored >= 2 {
            guard let modeByte = input.byte(), modeByte <= 1 else { return nil }
            mode = modeByte == 1 ? .audit : .enforce
        }
        var directions: [[EndpointRule]] = []
        for _ in 0..<(rules ? 2 : 0) {
            guard let ruleCount = input.count() else { return nil }
            var rules: [EndpointRule] = []
            for _ in 0..<ruleCount {
                let binary = stored >= 3
                guard let cidr = binary ? input.prefix() : input.optional(Self.prefix), let exceptCount = input.count() else { return nil }
                var except: [IPPrefix] = []
                for _ in 0..<exceptCount {
                    guard let hole = binary ? input.prefix().flatMap({ $0 }) : input.string().flatMap(Self.prefix) else { return nil }
                    except.append(hole)
                }
                guard let portCount = input.count() else { return nil }
                var ports: [PortSpec] = []
                for _ in 0..<portCount {
                    guard let proto = input.byte(), let port = input.integer(UInt16.self), let end = input.integer(UInt16.self) else { return nil }
                    ports.append(PortSpec(protocolNumber: proto, port: port == 0 ? nil : port, endPort: end == 0 ? nil : end))
                }
                guard let domainName = input.optional(DomainPattern.init), let actionByte = input.byte(), actionByte <= 2 else { return nil }
                rules.append(EndpointRule(cidr: cidr, except: except, ports: ports, domainName: domainName,
                                          action: [PolicyAction.accept, .deny, .pass][Int(actionByte)]))
            }
            directions.append(rules)
        }
        guard !rules || input.atEnd else { return nil }
        var isolation = Set<Direction>()
        if isolationBits & 1 != 0 { isolation.insert(.ingress) }
        if isolationBits & 2 != 0 { isolation.insert(.egress) }
        return PolicyObject(key: ObjectKey(kind: kind == 0 ? .policyEndpoint : .clusterPolicyEndpoint, namespace: namespace, name: name),
                            policyRef: policyRef, isolation: isolation, pods: pods, ingress: rules ? directions[0] : [], egress: rules ? directions[1] : [],
                            tier: tierByte == 1 ? .admin : tierByte == 2 ? .baseline : nil, priority: priority, mode: mode)
    }

    /// Counts and strings on top of the model's `ByteWriter` (host byte order:
    /// the store lives on this host).
    private struct Writer {
        var bytes: [UInt8] { writer.bytes }
        private var writer = ByteWriter()
        mutating func byte(_ value: UInt8) { writer.append(value) }
        mutating func integer<T: FixedWidthInteger>(_ value: T) { writer.append(value) }
        mutating func count(_ value: Int) { writer.append(UInt32(value)) }
        mutating func string(_ value: String) {
            count(value.utf8.count)
            writer.append(Array(value.utf8))
        }

        /// 0, or 1, the family and the 16 bytes.
        mutating func address(_ value: IPAddress?) {
            guard let value else { return byte(0) }
            byte(1)
            byte(value.family.rawValue)
            writer.append(value.bytes)
        }

        /// 0, or 1, the family, the length and the 16 bytes.
        mutating func prefix(_ value: IPPrefix?) {
            guard let value else { return byte(0) }
            byte(1)
            byte(value.family.rawValue)
            byte(UInt8(value.length))
            writer.append(value.address.bytes)
        }
    }

    /// A cursor over the model's bounds-checked `ByteReader`.
    private struct Reader {
        private let reader: ByteReader
        private let length: Int
        private var offset = 0
        var atEnd: Bool { offset == length }

        init(bytes: [UInt8]) {
            reader = ByteReader(bytes)
            length = bytes.count
        }

        mutating func integer<T: FixedWidthInteger>(_ type: T.Type) -> T? {
            guard let value = reader.integer(T.self, at: offset) else { return nil }
            offset += MemoryLayout<T>.size
            return value
        }

        mutating func byte() -> UInt8? { integer(UInt8.self) }

        mutating func count() -> Int? {
            guard let value = integer(UInt32.self), Int(value) <= length - offset else { return nil }
            return Int(value)
        }

        mutating func string() -> String? {
            guard let length = count(), let text = reader.text(at: offset, count: length) else { return nil }
            offset += length
            return text
        }

        /// An address `Writer.address` wrote: `.some(nil)` for none; nil for damaged bytes.
        mutating func address() -> IPAddress?? {
            guard let present = byte(), present <= 1 else { return nil }
            if present == 0 { return .some(nil) }
            guard byte().flatMap(AddressFamily.init) != nil, let address = reader.address(at: offset) else { return nil }
            offset += 16
            return .some(address)
        }

        /// A prefix `Writer.prefix` wrote: `.some(nil)` for none; nil for damaged bytes.
        mutating func prefix() -> IPPrefix?? {
            guard let present = byte(), present <= 1 else { return nil }
            if present == 0 { return .some(nil) }
            guard let family = byte().flatMap(AddressFamily.init), let length = byte(), length <= 128, family == .ipv6 || length >= 96,
                  let address = reader.address(at: offset) else { return nil }
            offset += 16
            return .some(IPPrefix(address: address, length: Int(length), family: family))
        }

        /// A value written as its text, or none (empty text): `.some(nil)` for none; nil for damaged
        /// bytes or text that does not read back as the value.
        mutating func optional<Value>(_ parse: (String) -> Value?) -> Value?? {
            guard let text = string() else { return nil }
            if text.isEmpty { return .some(nil) }
            return parse(text).map { .some($0) }
        }
    }

    /// A prefix as `IPPrefix.description` writes it.
    static func prefix(_ text: String) -> IPPrefix? { IPPrefix.parse(text)?.prefix }
}
