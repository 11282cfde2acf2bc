import DNS
import DatapathModel
import PolicyInput
import Testing
import TestSupport

@testable import Loader

@Suite struct PodPolicyBuilderTests {
    @Test func aPodGetsTheUnionOfEveryObjectSelectingIt() throws {
        let json = try PolicyDocumentParser.parse(kubectlJSON).objects
        let yaml = try PolicyDocumentParser.parse(kubectlYAMLDocuments).objects
        let objects = [(UInt32(1), json[0]), (UInt32(2), yaml[0]), (UInt32(3), yaml[1])].map { (index: $0.0, object: $0.1) }
        let policy = try PodPolicyBuilder.build(pod: PodReference(namespace: "shop", name: "web-5d9f-abc"), defaults: [.ingress: .allow, .egress: .deny],
                                                objects: objects)
        #expect(policy.states == [.ingress: .policiesApplied, .egress: .policiesApplied])
        #expect(policy.objects.count == 3)
        let web = IPAddress("198.18.2.5")!
        let allowed = PolicyEvaluator.decide(policy.policies[.ingress], state: .policiesApplied, peer: web, protocolNumber: 6, port: 8050).decision
        #expect(allowed == Decision(verdict: .allow, tier: .networkPolicy, ruleID: RuleID(objectIndex: 1, direction: .ingress, rule: 0).rawValue))
        let metadata = PolicyEvaluator.decide(policy.policies[.egress], state: .policiesApplied, peer: IPAddress("198.18.254.254")!,
                                              protocolNumber: 6, port: 80).decision
        #expect(metadata == Decision(verdict: .deny, tier: .admin, ruleID: RuleID(objectIndex: 3, direction: .egress, rule: 0).rawValue))
        #expect(RuleID(rawValue: metadata.ruleID) == RuleID(objectIndex: 3, direction: .egress, rule: 0))
        #expect(RuleID(rawValue: 0) == nil)
        let wildcard = try #require(DomainPattern("*.example.com"))
        #expect(policy.domainRules == [wildcard.id: [PortRule(ruleID: RuleID(objectIndex: 1, direction: .egress, rule: 1).rawValue,
                                                               protocolNumber: IPProtocolNumber.tcp, portStart: 443)]],
                "a rule by domain name becomes its pattern's port rules")
    }

    @Test func onePatternHoldsAtMostOneRuleSet() throws {
        let ports = (1...33).map { #"{"protocol": "TCP", "port": \#($0)}"# }.joined(separator: ", ")
        let json = try replace("spec.egress[1].ports", with: "[\(ports)]", in: kubectlJSON)
        let objects = try PolicyDocumentParser.parse(json).objects.map { (index: UInt32(1), object: $0) }
        #expect(throws: PolicyInputError.self) {
            try PodPolicyBuilder.build(pod: PodReference(namespace: "shop", name: "web-5d9f-abc"), defaults: [:], objects: objects)
        }
    }

    @Test func anUnselectedPodKeepsItsDefaults() throws {
        let objects = try PolicyDocumentParser.parse(kubectlJSON).objects.map { (index: UInt32(1), object: $0) }
        let policy = try PodPolicyBuilder.build(pod: PodReference(namespace: "shop", name: "db-0"), defaults: [.ingress: .deny, .egress: .allow], objects: objects)
        #expect(policy.states == [.ingress: .defaultDeny, .egress: .defaultAllow])
        #expect(policy.policies.isEmpty && policy.objects.isEmpty)
    }
}
