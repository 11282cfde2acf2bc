import Foundation
import Loader
import Testing

@testable import DatapathModel
@testable import Events
@testable import PolicyInput

/// The stream's decoder names each kind of event once and hands the same names to the next
/// event of that kind: across more kinds than it keeps, an event must read exactly as a fresh
/// decoder reads it.
struct EventDecoderTests {
    static let web = PodRegistration(ifindex: 7, denyByDefault: [:], namespace: "shop", name: "web-0", interface: "nfveth0", netns: "")
    static let db = PodRegistration(ifindex: 8, denyByDefault: [:], namespace: "shop", name: "db-0", interface: "nfveth1", netns: "")
    static let isolating = PolicyObject(key: ObjectKey(kind: .policyEndpoint, namespace: "shop", name: "web-abc"), policyRef: "shop/web",
                                        isolation: [.ingress], pods: [SelectedPod(pod: PodReference(namespace: "shop", name: "web-0"))],
                                        ingress: [], egress: [], tier: nil, priority: 0)
    static let attribution = Attribution(pods: [3: web, 4: db], objects: [5: isolating], retired: [6: "shop/old"])

    static func event(_ index: Int) -> VerdictEvent {
        let tiers: [Tier] = [.networkPolicy, .admin, .podDefault, .none]
        let reasons: [Reason] = [.policy, .unparseable, .dnsProxy, .reevaluated]
        let rule = index % 5 == 0 ? 0 : RuleID(objectIndex: UInt32(5 + index % 4), direction: .ingress, rule: index % 97).rawValue
        return VerdictEvent(timestampNanoseconds: UInt64(index), ifindex: UInt32(7 + index % 3), podID: UInt32(3 + index % 3), ruleID: rule,
                            length: 100, revision: 1, source: IPAddress("198.18.0.\(index % 250)")!, destination: IPAddress("198.18.1.1")!,
                            sourcePort: UInt16(index), destinationPort: 80, direction: index % 2 == 0 ? .ingress : .egress, family: 4,
                            protocolNumber: index % 7 == 0 ? 1 : 6, verdict: .deny, tier: tiers[index / 2 % 4], reason: reasons[index / 3 % 4],
                            captured: 0)
    }

    @Test func aDecoderThatRemembersNamesReadsEveryEventAsAFreshOne() {
        let shared = EventDecoder(attribution: Self.attribution)
        let date = { (_: UInt64) in Date(timeIntervalSince1970: 1_795_442_341) }
        for index in (0..<4000).map({ $0 * 7919 % 4000 }) {
            let event = Self.event(index)
            let knownBefore = shared.knows(event)
            let remembered = shared.decode(event, monotonicToWall: date)
            let freshDecoder = EventDecoder(attribution: Self.attribution)
            let fresh = freshDecoder.decode(event, monotonicToWall: date)
            let known = freshDecoder.knows(event)
            // Pods 3 and 4, objects 5 and 6 (or no rule) are known; pod 5 and objects 7 and 8 are not.
            #expect(known == (event.podID != 5 && (event.ruleID == 0 || [5, 6].contains(event.ruleID >> 12))))
            #expect(knownBefore == known && shared.knows(event) == known, "event \(index): remembered whether it was known")
            guard remembered == fresh else {
                Issue.record("event \(index) read \(remembered) instead of \(fresh)")
                return
            }
        }
        // What the names say, for kinds the loop met.
        let isolated = shared.decode(VerdictEvent(timestampNanoseconds: 0, ifindex: 7, podID: 3, ruleID: 0, length: 1, revision: 1,
                                                  source: IPAddress("198.18.0.1")!, destination: IPAddress("198.18.0.2")!, sourcePort: 1,
                                                  destinationPort: 2, direction: .ingress, family: 4, protocolNumber: 6, verdict: .deny,
                                                  tier: .networkPolicy, reason: .policy, captured: 0), monotonicToWall: date)
        #expect(isolated.pod == "shop/web-0" && isolated.interface == "nfveth0" && isolated.policy == "isolation by shop/web" && isolated.rule == nil)
        let replaced = shared.decode(VerdictEvent(timestampNanoseconds: 0, ifindex: 8, podID: 4,
                                                  ruleID: RuleID(objectIndex: 6, direction: .egress, rule: 2).rawValue, length: 1, revision: 1,
                                                  source: IPAddress("198.18.0.1")!, destination: IPAddress("198.18.0.2")!, sourcePort: 1,
                                                  destinationPort: 2, direction: .egress, family: 4, protocolNumber: 6, verdict: .allow,
                                                  tier: .admin, reason: .policy, captured: 0), monotonicToWall: date)
        #expect(replaced.pod == "shop/db-0" && replaced.policy == "shop/old (replaced)" && replaced.rule == 2)
    }
}
