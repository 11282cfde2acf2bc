import DNS
import DatapathModel

/// The loader's stored form of an applied object: compact, versioned,
/// length-prefixed binary in host byte order; addresses, prefixes and domain
/// patterns as their canonical text, read back into the same typed values.
/// (JSONEncoder took ~12 ms for a 1,000-rule object, a quarter of the apply
/// budget; this takes about one.)
public enum PolicyObjectCodec {
    /// 2 adds the mode byte; version 1 records (stored before audit objects existed) read as enforced.
    static let version: UInt8 = 2

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
            out.string(selected.podIP?.description ?? "")
            out.string(selected.hostIP?.description ?? "")
        }
        out.byte(object.tier == .admin ? 1 : object.tier == .baseline ? 2 : 0)
        out.integer(object.priority)
        out.byte(object.mode == .audit ? 1 : 0)
        for rules in [object.ingress, object.egress] {
            out.count(rules.count)
            for rule in rules {
                out.string(rule.cidr?.description ?? "")
                out.count(rule.except.count)
                rule.except.forEach { out.string($0.description) }
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

    /// nil for bytes of another version or a damaged record; never traps.
    public static func decode(_ bytes: [UInt8]) -> PolicyObject? {
        var input = Reader(bytes: bytes)
        guard let stored = input.byte(), stored == 1 || stored == version, let kind = input.byte(), kind <= 1,
              let namespace = input.string(), let name = input.string(), let policyRef = input.string(),
              let isolationBits = input.byte(), let podCount = input.count() else { return nil }
        var pods: [SelectedPod] = []
        for _ in 0..<podCount {
            guard let podNamespace = input.string(), let podName = input.string(), let podIP = input.optional(IPAddress.init),
                  let hostIP = input.optional(IPAddress.init) else { return nil }
            pods.append(SelectedPod(pod: PodReference(namespace: podNamespace, name: podName), podIP: podIP, hostIP: hostIP))
        }
        guard let tierByte = input.byte(), tierByte <= 2, let priority = input.integer(UInt16.self) else { return nil }
        var mode = PolicyMode.enforce
        if stored >= 2 {
            guard let modeByte = input.byte(), modeByte <= 1 else { return nil }
            mode = modeByte == 1 ? .audit : .enforce
        }
        var directions: [[EndpointRule]] = []
        for _ in 0..<2 {
            guard let ruleCount = input.count() else { return nil }
            var rules: [EndpointRule] = []
            for _ in 0..<ruleCount {
                guard let cidr = input.optional(Self.prefix), let exceptCount = input.count() else { return nil }
                var except: [IPPrefix] = []
                for _ in 0..<exceptCount {
                    guard let hole = input.string().flatMap(Self.prefix) else { return nil }
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
        guard input.atEnd else { return nil }
        var isolation = Set<Direction>()
        if isolationBits & 1 != 0 { isolation.insert(.ingress) }
        if isolationBits & 2 != 0 { isolation.insert(.egress) }
        return PolicyObject(key: ObjectKey(kind: kind == 0 ? .policyEndpoint : .clusterPolicyEndpoint, namespace: namespace, name: name),
                            policyRef: policyRef, isolation: isolation, pods: pods, ingress: directions[0], egress: directions[1],
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
            guard let length = count(), let utf8 = reader.slice(at: offset, count: length) else { return nil }
            offset += length
            return String(decoding: utf8, as: UTF8.self)
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
