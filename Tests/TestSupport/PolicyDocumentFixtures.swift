import Foundation

/// A PolicyEndpoint as `kubectl get policyendpoint -o json` prints it.
public let kubectlJSON = """
{
    "apiVersion": "networking.k8s.aws/v1alpha1",
    "kind": "PolicyEndpoint",
    "metadata": {
        "creationTimestamp": "2026-11-20T10:00:00Z",
        "generateName": "allow-web-",
        "generation": 1,
        "name": "allow-web-7x2kq",
        "namespace": "shop",
        "ownerReferences": [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "name": "allow-web", "uid": "1"}],
        "resourceVersion": "4242",
        "uid": "8d1c"
    },
    "spec": {
        "podIsolation": ["Ingress", "Egress"],
        "podSelector": {"matchLabels": {"app": "web"}},
        "podSelectorEndpoints": [
            {"hostIP": "198.18.0.1", "name": "web-5d9f-abc", "namespace": "shop", "podIP": "198.18.1.10"}
        ],
        "policyRef": {"name": "allow-web", "namespace": "shop"},
        "ingress": [
            {"cidr": "198.18.2.0/24", "except": ["198.18.2.128/25"], "ports": [{"port": 80, "protocol": "TCP"}, {"port": 8000, "endPort": 8100}]},
            {"cidr": "2001:db8:2::/48"}
        ],
        "egress": [
            {"cidr": "198.18.20.0/24", "ports": [{"protocol": "UDP", "port": 53}]},
            {"domainName": "*.example.com", "ports": [{"protocol": "TCP", "port": 443}]}
        ]
    }
}
"""

public let kubectlYAMLDocuments = """
apiVersion: networking.k8s.aws/v1alpha1
kind: PolicyEndpoint
metadata:
  name: deny-all-abc
  namespace: shop
spec:
  policyRef:
    name: deny-all
    namespace: shop
  podIsolation:
  - Ingress
  podSelectorEndpoints:
  - hostIP: 198.18.0.1
    name: web-5d9f-abc
    namespace: shop
    podIP: 198.18.1.10
---
apiVersion: networking.k8s.aws/v1alpha1
kind: ClusterPolicyEndpoint
metadata:
  name: block-metadata
spec:
  policyRef:
    name: block-metadata
  tier: Admin
  priority: 10
  podSelectorEndpoints:
  - name: web-5d9f-abc
    namespace: shop
    podIP: 198.18.1.10
  egress:
  - cidr: 198.18.254.254/32
    action: Deny
  - cidr: 10.1.2.3/8
    action: Pass
    ports:
    - protocol: UDP
      port: 53
"""

/// `kubectlJSON` with the field at a dotted path (with [index] parts) set to a JSON literal.
public func replace(_ path: String, with literal: String, in json: String) throws -> String {
    var root = try JSONValue.parse(json)
    let value = try JSONValue.parse(literal)
    root.set(path.replacingOccurrences(of: "[", with: ".").replacingOccurrences(of: "]", with: "").split(separator: ".").map(String.init), value)
    return root.serialized
}
