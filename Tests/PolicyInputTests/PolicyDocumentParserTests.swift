import DNS
import DatapathModel
import Testing
import TestSupport

@testable import PolicyInput

@Suite struct PolicyDocumentParserTests {
    @Test func aKubectlJSONObjectParses() throws {
        let parsed = try PolicyDocumentParser.parse(kubectlJSON)
        let object = try #require(parsed.objects.first)
        #expect(parsed.objects.count == 1 && parsed.warnings.isEmpty)
        #expect(object.key == ObjectKey(kind: .policyEndpoint, namespace: "shop", name: "allow-web-7x2kq"))
        #expect(object.policyRef == "shop/allow-web")
        #expect(object.isolation == [.ingress, .egress])
        #expect(object.pods == [SelectedPod(pod: PodReference(namespace: "shop", name: "web-5d9f-abc"), podIP: IPAddress("198.18.1.10"),
                                            hostIP: IPAddress("198.18.0.1"))])
        #expect(object.ingress[0] == EndpointRule(cidr: IPPrefix.parse("198.18.2.0/24")?.prefix, except: [IPPrefix.parse("198.18.2.128/25")!.prefix], ports: [
            PortSpec(protocolNumber: 6, port: 80, endPort: nil), PortSpec(protocolNumber: 6, port: 8000, endPort: 8100),
        ], domainName: nil, action: .accept))
        #expect(object.ingress[1].ports.isEmpty && object.ingress[1].cidr?.description == "2001:db8:2::/48")
        #expect(object.egress[1].domainName == DomainPattern("*.example.com") && object.egress[1].cidr == nil)
        let shouted = try PolicyDocumentParser.parse(try replace("spec.egress[1].domainName", with: "\"*.Example.COM.\"", in: kubectlJSON))
        #expect(shouted.objects.first?.egress[1].domainName?.description == "*.example.com", "stored as the proxy compares it")
    }

    @Test func listsAndMultiDocumentYAMLParse() throws {
        let list = "{\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [\(kubectlJSON)]}"
        #expect(try PolicyDocumentParser.parse(list).objects.count == 1)
        let yaml = try PolicyDocumentParser.parse(kubectlYAMLDocuments)
        #expect(yaml.objects.map(\.key) == [ObjectKey(kind: .policyEndpoint, namespace: "shop", name: "deny-all-abc"),
                                           ObjectKey(kind: .clusterPolicyEndpoint, namespace: "", name: "block-metadata")])
        let cluster = yaml.objects[1]
        #expect(cluster.tier == .admin && cluster.priority == 10)
        #expect(cluster.egress.map(\.action) == [.deny, .pass])
        #expect(cluster.egress[1].cidr?.description == "10.0.0.0/8")
        #expect(yaml.warnings == ["document[1].spec.egress[1].cidr: 10.1.2.3/8 is not canonical; using 10.0.0.0/8"])
    }

    /// Each invalid field is named by its path, as the issue spells it.
    @Test(arguments: [
        ("spec.egress[0].ports[0].endPort", "70000", "spec.egress[0].ports[0].endPort: 70000 is not a port"),
        ("spec.egress[0].ports[0].endPort", "10", "spec.egress[0].ports[0].endPort: 10 is below port 53"),
        ("spec.egress[0].ports[0].port", "0", "spec.egress[0].ports[0].port: 0 is not a port"),
        ("spec.egress[0].ports[0].port", "true", "spec.egress[0].ports[0].port: a boolean, expected a number"),
        ("spec.egress[0].ports[0].port", "53.5", "spec.egress[0].ports[0].port: 53.5 is not a whole number"),
        ("spec.egress[0].ports[0].port", "\"http\"", "spec.egress[0].ports[0].port: \"http\" is a string, expected a number"),
        ("spec.egress[0].ports[0].protocol", "\"ICMP\"", "spec.egress[0].ports[0].protocol: ICMP is not TCP, UDP or SCTP"),
        ("spec.egress[0].cidr", "\"198.18.20.0/33\"", "spec.egress[0].cidr: 198.18.20.0/33 is not a CIDR"),
        ("spec.egress[0].cidr", "42", "spec.egress[0].cidr: a number, expected a string"),
        ("spec.ingress[0].except[0]", "\"198.19.0.0/25\"", "spec.ingress[0].except[0]: 198.19.0.0/25 is not inside 198.18.2.0/24"),
        ("spec.ingress[1].cidr", "\"::ffff:198.18.0.0/112\"",
         "spec.ingress[1].cidr: ::ffff:198.18.0.0/112 is an IPv4-mapped IPv6 prefix, which matches no IPv4 packet; write it as IPv4: 198.18.0.0/16"),
        ("spec.ingress[0].except[0]", "\"2001:db8::/64\"",
         "spec.ingress[0].except[0]: 2001:db8::/64 is IPv6 and 198.18.2.0/24 is not: an except block lies inside its cidr"),
        ("spec.podIsolation[0]", "\"Sideways\"", "spec.podIsolation[0]: Sideways is not Ingress or Egress"),
        ("spec.podSelectorEndpoints[0].podIP", "\"pod-ip\"", "spec.podSelectorEndpoints[0].podIP: pod-ip is not an IP address"),
        ("spec.ingress", "{}", "spec.ingress: an object, expected a list"),
        ("spec.egress[0].action", "\"Accept\"", "spec.egress[0].action: only ClusterPolicyEndpoint rules have an action"),
        ("spec.egress[1].domainName", "\"*.\"", "spec.egress[1].domainName: *. is not a domain name, or '*.' and a domain name"),
        ("spec.egress[1].domainName", "\"a.*.example.com\"", "spec.egress[1].domainName: a.*.example.com is not a domain name, or '*.' and a domain name"),
        ("spec.egress[1].domainName", "\"bad..name\"", "spec.egress[1].domainName: bad..name is not a domain name, or '*.' and a domain name"),
        ("spec.egress[0].domainName", "\"github.com\"", "spec.egress[0].domainName: a rule has a cidr or a domainName, not both"),
        ("spec.egress[1].domainName", "\"localhost\"", "spec.egress[1].domainName: localhost has one label; a domain rule names at least two (example.com, *.example.com)"),
        ("spec.egress[1].domainName", "\"*.test\"", "spec.egress[1].domainName: *.test has one label; a domain rule names at least two (example.com, *.example.com)"),
        ("spec.ingress[1].domainName", "\"github.com\"", "spec.ingress[1].domainName: domain names apply to egress only"),
        // Names as the API server admits them: anything else never came from a cluster.
        ("metadata.name", "\"Allow_Web\"", "metadata.name: \"Allow_Web\" is not a Kubernetes name (at most 253 lowercase letters, digits, '-' and '.', a letter or digit first and last)"),
        ("metadata.name", "\"a\\u001b[31mred\"", "metadata.name: \"a\u{1b}[31mred\" is not a Kubernetes name (at most 253 lowercase letters, digits, '-' and '.', a letter or digit first and last)"),
        ("metadata.name", "\"allow.-web\"", "metadata.name: \"allow.-web\" is not a Kubernetes name (at most 253 lowercase letters, digits, '-' and '.', a letter or digit first and last)"),
        ("metadata.name", "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"", "metadata.name: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\" is not a Kubernetes name (at most 253 lowercase letters, digits, '-' and '.', a letter or digit first and last)"),
        ("metadata.namespace", "\"shop.eu\"", "metadata.namespace: \"shop.eu\" is not a Kubernetes namespace (at most 63 lowercase letters, digits and '-', a letter or digit first and last)"),
        ("spec.policyRef.name", "\"allow web\"", "spec.policyRef.name: \"allow web\" is not a Kubernetes name (at most 253 lowercase letters, digits, '-' and '.', a letter or digit first and last)"),
        ("spec.policyRef.namespace", "\"-shop\"", "spec.policyRef.namespace: \"-shop\" is not a Kubernetes namespace (at most 63 lowercase letters, digits and '-', a letter or digit first and last)"),
        ("spec.podSelectorEndpoints[0].name", "\"shop/web\"", "spec.podSelectorEndpoints[0].name: \"shop/web\" is not a Kubernetes name (at most 253 lowercase letters, digits, '-' and '.', a letter or digit first and last)"),
        ("spec.podSelectorEndpoints[0].namespace", "\"ssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss\"", "spec.podSelectorEndpoints[0].namespace: \"ssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss\" is not a Kubernetes namespace (at most 63 lowercase letters, digits and '-', a letter or digit first and last)"),
    ])
    func invalidFieldsAreNamedByPath(path: String, value: String, message: String) throws {
        let broken = try replace(path, with: value, in: kubectlJSON)
        #expect(throws: PolicyInputError.self) { try PolicyDocumentParser.parse(broken) }
        do {
            _ = try PolicyDocumentParser.parse(broken)
        } catch {
            #expect(error.description == message)
        }
    }

    /// The longest names the API server admits parse, dots and dashes inside.
    @Test func namesAtTheirLimitsParse() throws {
        let name = String(repeating: "a", count: 120) + ".b-" + String(repeating: "c", count: 130)
        var json = try replace("metadata.name", with: "\"\(name)\"", in: kubectlJSON)
        json = try replace("metadata.namespace", with: "\"\(String(repeating: "s", count: 63))\"", in: json)
        let object = try #require(try PolicyDocumentParser.parse(json).objects.first)
        #expect(name.count == 253 && object.key.name == name && object.key.namespace.count == 63)
    }

    /// A pod on the command line is named as a cluster names it, by the same rule as in objects.
    @Test func podReferencesAreKubernetesNames() {
        #expect(PodReference(parsing: "shop/web-5d9f-abc.x") == PodReference(namespace: "shop", name: "web-5d9f-abc.x"))
        for text in ["shop/Web", "shop/web_0", "shop.eu/web", "shop/web/0", "shop/", "/web", "shop/a\u{1b}[31m", "-shop/web", "shop/web-"] {
            #expect(PodReference(parsing: text) == nil, "\(text)")
        }
    }

    @Test func clusterFieldsAreChecked() {
        let badTier = kubectlYAMLDocuments.replacingOccurrences(of: "tier: Admin", with: "tier: Developer")
        #expect(throws: PolicyInputError("document[1].spec.tier", "Developer is not Admin or Baseline")) { try PolicyDocumentParser.parse(badTier) }
        let badAction = kubectlYAMLDocuments.replacingOccurrences(of: "action: Deny", with: "action: Drop")
        #expect(throws: PolicyInputError("document[1].spec.egress[0].action", "Drop is not Accept, Deny or Pass")) { try PolicyDocumentParser.parse(badAction) }
        let badPriority = kubectlYAMLDocuments.replacingOccurrences(of: "priority: 10", with: "priority: 5000")
        #expect(throws: PolicyInputError("document[1].spec.priority", "5000 is not a priority from 0 to 1000")) { try PolicyDocumentParser.parse(badPriority) }
    }

    @Test func clusterDomainRulesOnlyAccept() {
        for action in ["Deny", "Pass"] {
            let text = kubectlYAMLDocuments.replacingOccurrences(of: "  - cidr: 198.18.254.254/32\n    action: Deny",
                                                                with: "  - domainName: evil.example.com\n    action: \(action)")
            #expect(throws: PolicyInputError("document[1].spec.egress[0].action",
                                             "\(action) with a domainName is refused: a domain rule can only Accept (deny by cidr instead)")) {
                try PolicyDocumentParser.parse(text)
            }
        }
        let accept = kubectlYAMLDocuments.replacingOccurrences(of: "  - cidr: 198.18.254.254/32\n    action: Deny",
                                                              with: "  - domainName: good.example.com\n    action: Accept")
        #expect(throws: Never.self) { try PolicyDocumentParser.parse(accept) }
    }

    @Test func listItemsAreNamedByIndex() throws {
        let broken = try replace("spec.egress[0].ports[0].port", with: "70000", in: kubectlJSON)
        let list = "{\"kind\": \"PolicyEndpointList\", \"items\": [\(kubectlJSON.replacingOccurrences(of: "allow-web-7x2kq", with: "other")), \(broken)]}"
        #expect(throws: PolicyInputError("items[1].spec.egress[0].ports[0].port", "70000 is not a port")) { try PolicyDocumentParser.parse(list) }
    }

    @Test func garbageAndEmptyInputAreRefused() {
        #expect(throws: PolicyInputError.self) { try PolicyDocumentParser.parse("{ not json") }
        #expect(throws: PolicyInputError("", "the input is empty: no objects to read")) { try PolicyDocumentParser.parse("") }
        #expect(throws: PolicyInputError("kind", "NetworkPolicy is not PolicyEndpoint or ClusterPolicyEndpoint")) {
            try PolicyDocumentParser.parse("{\"kind\": \"NetworkPolicy\"}")
        }
    }
}

/// Issue 13, items 3 to 5: one bad document applies nothing and is named; hostile
/// inputs are refused quickly; every message is one line a person can act on.
@Suite struct PolicyInputBoundsTests {
    func message(_ text: String) -> String? {
        do {
            _ = try PolicyDocumentParser.parse(text)
            return nil
        } catch {
            return error.description
        }
    }

    @Test func aMalformedDocumentAfterAValidOneFailsTheWholeInputNamingIt() {
        let cases = [
            ("---\n{ unclosed: [1\n", "document[1]: line 19, column 1: did not find expected ',' or ']' (while parsing a flow sequence that starts at line 18, column 13)"),
            ("---\nkind: PolicyEndpoint\n  bad: indent\n", "document[1]: line 19, column 6: mapping values are not allowed in this context"),
            ("...\njunk: [1, 2\n", "document[1]: line 18, column 1: did not find expected <document start>"),
        ]
        for (tail, expected) in cases {
            #expect(message(kubectlYAMLDocuments.components(separatedBy: "---\n")[0] + tail) == expected)
        }
    }

    @Test func emptyDocumentsAreSkippedAndAnEmptyListIsNoObjects() throws {
        let parsed = try PolicyDocumentParser.parse("---\n---\n" + kubectlYAMLDocuments + "\n---\n")
        #expect(parsed.objects.count == 2)
        #expect(try PolicyDocumentParser.parse("{\"kind\": \"PolicyEndpointList\", \"items\": []}").objects.isEmpty)
        #expect(message("null") == "the input is empty (null): no objects to read")
        #expect(message("---\n---\n") == "every document of the input is empty")
        #expect(message("   \n\t") == "the input is empty: no objects to read")
    }

    @Test func jsonErrorsSayWhereAndNothingOfFoundation() {
        #expect(message("{\"a\": ") == "not valid JSON: unexpected end of the input at line 1, column 7")
        #expect(message("{\n  \"a\": 1,,\n}") == "not valid JSON: expected a key in quotes at line 2, column 10")
        #expect(message("{\"a\": 1} junk") == "not valid JSON: unexpected text after the JSON value at line 1, column 10")
        #expect(message("{\"a\": 1, \"a\": 2}") == "not valid JSON: the key a appears twice at line 1, column 10")
        #expect(message(String(repeating: "[", count: 600)) == "not valid JSON: more than 512 nested lists or objects at line 1, column 513")
        #expect(message("{\"kind\": \"PolicyEndpoint\", \"metadata\": {\"name\": \"a\\u00e9\\ud83d\\ude00\"}}")?.hasPrefix("metadata.name: \"aé😀\" is not") == true,
                "escapes decode (into a name no cluster admits)")
    }

    @Test func binaryAndNonUTF8InputIsNamedNotEchoed() throws {
        let nul = message("kind: a\u{0}b")
        #expect(nul == "the input is not text (a NUL byte at line 1, column 8); give JSON or YAML")
        do {
            _ = try PolicyDocumentParser.parse(bytes: Array("kind: ".utf8) + [0xff, 0xfe])
            Issue.record("invalid UTF-8 was accepted")
        } catch {
            #expect(error.description == "the input is not UTF-8 text (at line 1, column 7); give JSON or YAML")
        }
        #expect(message("kind: \u{1b}[31mred") == "document[0]: line 1, column 7: control characters are not allowed (0x1b)")
    }

    @Test func aYAMLAliasBombIsRefusedAtOnce() {
        var bomb = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
        for (previous, name) in zip("abcdefgh", "bcdefghi") {
            bomb += "\(name): &\(name) [" + Array(repeating: "*\(previous)", count: 9).joined(separator: ",") + "]\n"
        }
        let started = ContinuousClock.now
        #expect(message("metadata:\n  annotations:\n" + bomb.split(separator: "\n").map { "    \($0)" }.joined(separator: "\n"))
                == "document[0]: YAML aliases expand to more than 100000 nodes; refused (an alias bomb?)")
        #expect(ContinuousClock.now - started < .seconds(1))
        // A few honest aliases are fine.
        #expect(message("kind: &k PolicyEndpoint\nother: *k\n") == "metadata: missing, expected an object")
    }

    @Test func deepNestingIsRefusedNotACrash() {
        #expect(message(String(repeating: "[", count: 2000) + String(repeating: "]", count: 2000))?.hasPrefix("not valid JSON: more than 512") == true)
        let deep = message("a: " + String(repeating: "[", count: 2000))
        #expect(deep?.hasPrefix("document[0]: line 1, column") == true && deep?.hasSuffix("more than 1000 nested lists or mappings") == true, "\(deep ?? "")")
        #expect(message(String(repeating: "- ", count: 2000) + "x")?.hasPrefix("document[0]: line 1, column") == true)
    }

    @Test func anInputLargerThanTheBoundIsRefusedBeforeParsing() throws {
        let huge = [UInt8](repeating: UInt8(ascii: " "), count: PolicyDocumentParser.maximumInputBytes + 1)
        #expect(throws: PolicyInputError("", "the input is larger than the 64.0 MiB netfence reads; split it")) {
            try PolicyDocumentParser.parse(bytes: huge)
        }
    }

    @Test func policyRefIsRequired() throws {
        let missing = try replace("spec.policyRef", with: "null", in: kubectlJSON)
        #expect(message(missing) == "spec.policyRef: empty (null), expected an object")
    }
}
