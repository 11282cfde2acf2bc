import DNS
import DatapathModel

/// Why an input was refused: where (`items[2].spec.egress[0].ports[1].endPort`) and what.
public struct PolicyInputError: Error, Equatable, CustomStringConvertible {
    public let path: String
    public let message: String

    public init(_ path: String, _ message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

/// What a document held: the objects, and warnings about what was corrected.
public struct ParsedPolicies: Sendable {
    public var objects: [PolicyObject] = []
    /// `items[0].spec.ingress[0].cidr: 10.1.2.3/8 is not canonical; using 10.0.0.0/8`.
    public var warnings: [String] = []

    public init(objects: [PolicyObject] = [], warnings: [String] = []) {
        self.objects = objects
        self.warnings = warnings
    }
}

/// Reads PolicyEndpoint and ClusterPolicyEndpoint objects exactly as
/// `kubectl get -o json|yaml` prints them: one object, a `…List`, or several
/// YAML documents. The first invalid field fails the whole input.
public enum PolicyDocumentParser {
    public static let apiVersion = "networking.k8s.aws/v1alpha1"
    /// `metadata.annotations` key that marks an object `audit` (or `enforce`, the default).
    public static let modeAnnotation = "netfence.io/mode"

    /// The largest input `parse` reads.
    public static let maximumInputBytes = InputDocuments.maximumBytes

    public static func parse(_ text: String) throws(PolicyInputError) -> ParsedPolicies {
        try parse(bytes: Array(text.utf8))
    }

    /// Parses every document of `bytes` (JSON, or YAML with `---` between documents);
    /// empty YAML documents are skipped, as kubectl skips them.
    public static func parse(bytes: [UInt8]) throws(PolicyInputError) -> ParsedPolicies {
        let documents = try InputDocuments.load(bytes)
        let present = documents.enumerated().filter { if case .null = $0.element { false } else { true } }
        if present.isEmpty { throw PolicyInputError("", documents.count > 1 ? "every document of the input is empty" : "the input is empty (null): no objects to read") }
        var result = ParsedPolicies()
        for (index, document) in present {
            let prefix = documents.count > 1 ? "document[\(index)]" : ""
            try collect(document, path: prefix, into: &result)
        }
        var seen = Set<ObjectKey>()
        for object in result.objects where !seen.insert(object.key).inserted {
            throw PolicyInputError("", "\(object.key) appears twice in the input")
        }
        return result
    }

    private static func collect(_ document: InputValue, path: String, into result: inout ParsedPolicies) throws(PolicyInputError) {
        if case .list(let array) = document {
            for (index, item) in array.enumerated() { try collect(item, path: join(path, "[\(index)]"), into: &result) }
            return
        }
        let object = try dictionary(document, path)
        let kind = try string(object["kind"], join(path, "kind"))
        if kind.hasSuffix("List") {
            let items = try array(object["items"], join(path, "items"))
            for (index, item) in items.enumerated() { try collect(item, path: join(path, "items[\(index)]"), into: &result) }
            return
        }
        result.objects.append(try parseObject(object, kind: kind, path: path, warnings: &result.warnings))
    }

    private static func parseObject(_ object: [String: InputValue], kind: String, path: String, warnings: inout [String]) throws(PolicyInputError) -> PolicyObject {
        guard let policyKind = PolicyKind(rawValue: kind) else {
            throw PolicyInputError(join(path, "kind"), "\(kind) is not PolicyEndpoint or ClusterPolicyEndpoint")
        }
        if let version = object["apiVersion"] {
            let given = try string(version, join(path, "apiVersion"))
            guard given == apiVersion else { throw PolicyInputError(join(path, "apiVersion"), "\(given) is not \(apiVersion)") }
        }
        let metadata = try dictionary(object["metadata"], join(path, "metadata"))
        let name = try kubernetesName(metadata["name"], join(path, "metadata.name"))
        let clusterScoped = policyKind == .clusterPolicyEndpoint
        let namespace = clusterScoped ? "" : try kubernetesName(metadata["namespace"], join(path, "metadata.namespace"), .namespace)
        var mode = PolicyMode.enforce
        if let annotations = metadata["annotations"] {
            let annotationsPath = join(path, "metadata.annotations")
            if let given = try dictionary(annotations, annotationsPath)[modeAnnotation] {
                let field = join(annotationsPath, modeAnnotation)
                let text = try string(given, field)
                guard let parsed = PolicyMode(rawValue: text) else { throw PolicyInputError(field, "\(text) is not audit or enforce") }
                mode = parsed
            }
        }
        let specPath = join(path, "spec")
        let spec = try dictionary(object["spec"], specPath)

        // Required, as the CRD says: it is what events and status name as the policy.
        let ref = try dictionary(spec["policyRef"], join(specPath, "policyRef"))
        let refName = try kubernetesName(ref["name"], join(specPath, "policyRef.name"))
        let refNamespace = try ref["namespace"].map { (value: InputValue) throws(PolicyInputError) in
            try kubernetesName(value, join(specPath, "policyRef.namespace"), .namespace)
        }
        let policyRef = refNamespace.map { "\($0)/\(refName)" } ?? refName

        var isolation = Set<Direction>()
        for (index, value) in try optionalArray(spec["podIsolation"], join(specPath, "podIsolation")).enumerated() {
            let field = join(specPath, "podIsolation[\(index)]")
            switch try string(value, field) {
            case "Ingress": isolation.insert(.ingress)
            case "Egress": isolation.insert(.egress)
            case let other: throw PolicyInputError(field, "\(other) is not Ingress or Egress")
            }
        }

        var pods: [SelectedPod] = []
        for (index, value) in try optionalArray(spec["podSelectorEndpoints"], join(specPath, "podSelectorEndpoints")).enumerated() {
            let field = join(specPath, "podSelectorEndpoints[\(index)]")
            let endpoint = try dictionary(value, field)
            let podIP = try endpoint["podIP"].map { (value: InputValue) throws(PolicyInputError) in try address(value, join(field, "podIP")) }
            let hostIP = try endpoint["hostIP"].map { (value: InputValue) throws(PolicyInputError) in try address(value, join(field, "hostIP")) }
            pods.append(SelectedPod(pod: PodReference(namespace: try kubernetesName(endpoint["namespace"], join(field, "namespace"), .namespace),
                                                      name: try kubernetesName(endpoint["name"], join(field, "name"))),
                                    podIP: podIP, hostIP: hostIP))
        }

        var tier: ClusterTier?
        var priority: UInt16 = 0
        if clusterScoped {
            let tierField = join(specPath, "tier")
            let tierName = try string(spec["tier"], tierField)
            guard let parsed = ClusterTier(rawValue: tierName) else { throw PolicyInputError(tierField, "\(tierName) is not Admin or Baseline") }
            tier = parsed
            let priorityField = join(specPath, "priority")
            let value = try integer(spec["priority"], priorityField)
            guard (0...1000).contains(value) else { throw PolicyInputError(priorityField, "\(value) is not a priority from 0 to 1000") }
            priority = UInt16(value)
        }

        func rules(_ key: String) throws(PolicyInputError) -> [EndpointRule] {
            var parsed: [EndpointRule] = []
            for (index, value) in try optionalArray(spec[key], join(specPath, key)).enumerated() {
                parsed.append(try rule(value, path: join(specPath, "\(key)[\(index)]"), cluster: clusterScoped,
                                       egress: key == "egress", warnings: &warnings))
            }
            return parsed
        }
        return try PolicyObject(key: ObjectKey(kind: policyKind, namespace: namespace, name: name), policyRef: policyRef,
                                isolation: isolation, pods: pods, ingress: try rules("ingress"), egress: try rules("egress"),
                                tier: tier, priority: priority).with(mode: mode)
    }

    private static func rule(_ value: InputValue, path: String, cluster: Bool, egress: Bool, warnings: inout [String]) throws(PolicyInputError) -> EndpointRule {
        let rule = try dictionary(value, path)
        let domainName = try rule["domainName"].map { (value: InputValue) throws(PolicyInputError) in
            let field = join(path, "domainName"), text = try string(value, field)
            guard let pattern = DomainPattern(text) else {
                throw PolicyInputError(field, "\(text) is not a domain name, or '*.' and a domain name")
            }
            // NPEP-133: a name of at least two labels (after `*.`): no `localhost`, no whole top-level domain.
            guard pattern.name.labels.count >= 2 else {
                throw PolicyInputError(field, "\(text) has one label; a domain rule names at least two (example.com, *.example.com)")
            }
            return pattern  // lower case, no trailing dot: how the proxy compares names
        }
        if domainName != nil, !egress { throw PolicyInputError(join(path, "domainName"), "domain names apply to egress only") }
        if domainName != nil, rule["cidr"] != nil || rule["except"] != nil {
            throw PolicyInputError(join(path, "domainName"), "a rule has a cidr or a domainName, not both")
        }
        var cidr: IPPrefix?
        if let given = rule["cidr"] {
            cidr = try prefix(given, join(path, "cidr"), warnings: &warnings)
        } else if domainName == nil {
            throw PolicyInputError(join(path, "cidr"), "missing (a rule needs a cidr or a domainName)")
        }
        var except: [IPPrefix] = []
        for (index, hole) in try optionalArray(rule["except"], join(path, "except")).enumerated() {
            let field = join(path, "except[\(index)]")
            let inner = try prefix(hole, field, warnings: &warnings)
            if let outer = cidr, !outer.contains(inner) || outer == inner {
                throw PolicyInputError(field, outer.family != inner.family
                    ? "\(inner) is \(inner.family == .ipv4 ? "IPv4" : "IPv6") and \(outer) is not: an except block lies inside its cidr"
                    : "\(inner) is not inside \(outer)")
            }
            except.append(inner)
        }
        var ports: [PortSpec] = []
        for (index, entry) in try optionalArray(rule["ports"], join(path, "ports")).enumerated() {
            ports.append(try port(entry, path: join(path, "ports[\(index)]")))
        }
        var action = PolicyAction.accept
        if cluster {
            let field = join(path, "action")
            let name = try string(rule["action"], field)
            guard let parsed = PolicyAction(rawValue: name) else { throw PolicyInputError(field, "\(name) is not Accept, Deny or Pass") }
            // A name only ever allows what the pod resolved: as a Deny it would bite only after the pod
            // looked the name up (it could reach the address first), and it would turn on DNS capture.
            if domainName != nil, parsed != .accept {
                throw PolicyInputError(field, "\(name) with a domainName is refused: a domain rule can only Accept (deny by cidr instead)")
            }
            action = parsed
        } else if rule["action"] != nil {
            throw PolicyInputError(join(path, "action"), "only ClusterPolicyEndpoint rules have an action")
        }
        return EndpointRule(cidr: cidr, except: except, ports: ports, domainName: domainName, action: action)
    }

    private static let protocols: [String: UInt8] = ["TCP": IPProtocolNumber.tcp, "UDP": IPProtocolNumber.udp, "SCTP": IPProtocolNumber.sctp]

    private static func port(_ value: InputValue, path: String) throws(PolicyInputError) -> PortSpec {
        let entry = try dictionary(value, path)
        var protocolNumber = IPProtocolNumber.tcp
        if let given = entry["protocol"] {
            let name = try string(given, join(path, "protocol"))
            guard let number = protocols[name] else { throw PolicyInputError(join(path, "protocol"), "\(name) is not TCP, UDP or SCTP") }
            protocolNumber = number
        }
        func portNumber(_ key: String) throws(PolicyInputError) -> UInt16? {
            guard let given = entry[key] else { return nil }
            let field = join(path, key)
            let number = try integer(given, field)
            guard (1...65535).contains(number) else { throw PolicyInputError(field, "\(number) is not a port") }
            return UInt16(number)
        }
        let port = try portNumber("port")
        let endPort = try portNumber("endPort")
        if let endPort {
            guard let port else { throw PolicyInputError(join(path, "endPort"), "needs a port to start the range") }
            guard endPort >= port else { throw PolicyInputError(join(path, "endPort"), "\(endPort) is below port \(port)") }
        }
        return PortSpec(protocolNumber: protocolNumber, port: port, endPort: endPort)
    }

    // MARK: typed field access, each failure naming its path

    private static func join(_ path: String, _ field: String) -> String {
        path.isEmpty ? field : field.hasPrefix("[") ? path + field : "\(path).\(field)"
    }

    // Paths are built only when a field is wrong: a 1,000-rule object would
    // otherwise build ten strings per rule for nothing.

    private static func describe(_ value: InputValue?) -> String { value?.kind ?? "missing" }

    private static func dictionary(_ value: InputValue?, _ path: @autoclosure () -> String) throws(PolicyInputError) -> [String: InputValue] {
        guard case .object(let dictionary) = value else { throw PolicyInputError(path(), "\(describe(value)), expected an object") }
        return dictionary
    }

    private static func array(_ value: InputValue?, _ path: @autoclosure () -> String) throws(PolicyInputError) -> [InputValue] {
        guard case .list(let array) = value else { throw PolicyInputError(path(), "\(describe(value)), expected a list") }
        return array
    }

    /// A missing or null list is an empty one.
    private static func optionalArray(_ value: InputValue?, _ path: @autoclosure () -> String) throws(PolicyInputError) -> [InputValue] {
        switch value {
        case .list(let array): return array
        case nil, .null: return []
        default: return try array(value, path())
        }
    }

    private static func string(_ value: InputValue?, _ path: @autoclosure () -> String) throws(PolicyInputError) -> String {
        guard case .string(let string) = value, !string.isEmpty else {
            if case .string = value { throw PolicyInputError(path(), "empty") }
            throw PolicyInputError(path(), "\(describe(value)), expected a string")
        }
        return string
    }

    /// A name as the API server admits it (``KubernetesName``).
    private static func kubernetesName(_ value: InputValue?, _ path: @autoclosure () -> String, _ kind: KubernetesName.Kind = .object)
        throws(PolicyInputError) -> String {
        let name = try string(value, path())
        guard KubernetesName.admits(name, kind) else { throw PolicyInputError(path(), "\"\(name)\" is not \(KubernetesName.rule(kind))") }
        return name
    }

    private static func integer(_ value: InputValue?, _ path: @autoclosure () -> String) throws(PolicyInputError) -> Int {
        switch value {
        case .number(_, let integer?): return integer
        case .number(let number, nil): throw PolicyInputError(path(), "\(number) is not a whole number")
        case .string(let text): throw PolicyInputError(path(), "\"\(text)\" is a string, expected a number")
        default: throw PolicyInputError(path(), "\(describe(value)), expected a number")
        }
    }

    private static func address(_ value: InputValue, _ path: @autoclosure () -> String) throws(PolicyInputError) -> IPAddress {
        let text = try string(value, path())
        guard let address = IPAddress(text) else { throw PolicyInputError(path(), "\(text) is not an IP address") }
        return address
    }

    private static func prefix(_ value: InputValue, _ path: @autoclosure () -> String, warnings: inout [String]) throws(PolicyInputError) -> IPPrefix {
        let text = try string(value, path())
        guard let parsed = IPPrefix.parse(text) else { throw PolicyInputError(path(), "\(text) is not a CIDR") }
        // IPv4 written as IPv6 would match neither family as its author meant: IPv6 prefixes match IPv6 packets only.
        if parsed.prefix.isIPv4Mapped {
            let ipv4 = IPPrefix(address: parsed.prefix.address, length: parsed.prefix.length, family: .ipv4)
            throw PolicyInputError(path(), "\(text) is an IPv4-mapped IPv6 prefix, which matches no IPv4 packet; write it as IPv4: \(ipv4)")
        }
        if !parsed.wasCanonical {
            warnings.append("\(path()): \(text) is not canonical; using \(parsed.prefix)")
        }
        return parsed.prefix
    }

}
