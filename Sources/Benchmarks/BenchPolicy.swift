import DatapathModel

/// The policy objects a benchmark applies, as kubectl prints them (JSON): rules for
/// host prefixes on TCP ports, for pods of namespace `bench`, split into objects of at
/// most `perObject` rules (an object holds at most 2,048 per direction) in one List.
struct BenchPolicy {
    enum Kind {
        /// Isolates the pods in the rules' direction.
        case policyEndpoint
        /// An Admin ClusterPolicyEndpoint whose rules have this action.
        case admin(action: String)
    }

    var kind = Kind.policyEndpoint
    /// The objects' name and policyRef (`name-0`, `name-1`, … when split).
    var name: String
    var pods: [String]
    var direction = Direction.ingress
    var cidrs: [String]
    var ports = [443]
    var perObject = 2_000

    /// The `index`th host prefix benchmarks use (198.18.0.0/15, up to 131,072 of them).
    static func address(_ index: Int) -> IPAddress {
        IPAddress(ipv4: [198, 18 + UInt8(index >> 16 & 1), UInt8(index >> 8 & 0xff), UInt8(index & 0xff)])
    }

    /// `count` host prefixes, `address(0)` on.
    static func hosts(_ count: Int) -> [String] { (0..<count).map { "\(address($0))/32" } }

    /// The objects, as kubectl prints them in a List.
    var json: String { Self.list([self]) }

    /// Every object of `policies` in one List.
    static func list(_ policies: [BenchPolicy]) -> String {
        "{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [\(policies.flatMap(\.objects).joined(separator: ","))]}"
    }

    /// One JSON object per `perObject` rules.
    var objects: [String] {
        let ports = self.ports.map { "{\"protocol\": \"TCP\", \"port\": \($0)}" }.joined(separator: ", ")
        let selected = pods.map { "{\"name\": \"\($0)\", \"namespace\": \"bench\"}" }.joined(separator: ",")
        let field = direction == .ingress ? "ingress" : "egress"
        return stride(from: 0, to: cidrs.count, by: perObject).map { first in
            let objectName = cidrs.count > perObject ? "\(name)-\(first / perObject)" : name
            let (ruleAction, header, scope): (String, String, String) = switch kind {
            case .policyEndpoint:
                ("", "\"kind\": \"PolicyEndpoint\", \"metadata\": {\"name\": \"\(objectName)\", \"namespace\": \"bench\"}",
                 "\"policyRef\": {\"name\": \"\(name)\", \"namespace\": \"bench\"}, \"podIsolation\": [\"\(field.capitalized)\"]")
            case .admin(let action):
                ("\"action\": \"\(action)\", ", "\"kind\": \"ClusterPolicyEndpoint\", \"metadata\": {\"name\": \"\(objectName)\"}",
                 "\"policyRef\": {\"name\": \"\(name)\"}, \"tier\": \"Admin\", \"priority\": 10")
            }
            let rules = cidrs[first..<min(first + perObject, cidrs.count)].map { "{\"cidr\": \"\($0)\", \(ruleAction)\"ports\": [\(ports)]}" }
            return "{\"apiVersion\": \"networking.k8s.aws/v1alpha1\", \(header), \"spec\": {\(scope), "
                + "\"podSelectorEndpoints\": [\(selected)], \"\(field)\": [\(rules.joined(separator: ","))]}}"
        }
    }
}
