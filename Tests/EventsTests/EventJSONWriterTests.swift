import DatapathModel
import Events
import Foundation
import Testing

/// The hand-written JSON Lines writer must write exactly what JSONEncoder
/// (sorted keys, ISO-8601 times with milliseconds) writes for the same event.
struct EventJSONWriterTests {
    static func event(source: String, destination: String, pod: String = "shop/web-0", namespace: String? = "shop",
                      interface: String? = "nf0a1b2c", policy: String = "shop/allow-web", rule: Int? = 3,
                      seconds: Double = 1_795_442_341.125, protocolNumber: UInt8 = 6, reason: Reason = .policy) -> DecodedEvent {
        DecodedEvent(time: Date(timeIntervalSince1970: seconds), pod: pod, podNamespace: namespace, interface: interface,
                     direction: .ingress, family: source.contains(":") ? .ipv6 : .ipv4, protocolNumber: protocolNumber,
                     source: IPAddress(source)!, sourcePort: 40000, destination: IPAddress(destination)!, destinationPort: 443,
                     verdict: .allow, tier: .networkPolicy, policy: policy, rule: rule, reason: reason,
                     bytes: 1500, revision: 4_000_000_000)
    }

    static func encoderLine(_ event: DecodedEvent) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(style.format(date))
        }
        return String(decoding: try encoder.encode(event), as: UTF8.self) + "\n"
    }

    static func writerLine(_ event: DecodedEvent) -> String {
        let writer = EventJSONWriter(capacity: 16)  // small: the writer must grow
        writer.append(event)
        var text = ""
        writer.flush { text += String(decoding: $0, as: UTF8.self) }
        return text
    }

    static let addresses = [
        "198.18.0.1", "0.0.0.0", "255.255.255.255", "198.19.10.200",
        "2001:db8::1", "::1", "::", "2001:db8::", "fe80::1:0:0:1", "1:0:0:2:0:0:0:3", "1:0:0:1:0:0:1:1",
        "2001:db8:1:2:3:4:5:6", "2001:db8:0:1:1:1:1:1", "ff02::1:ff00:1", "::2:3:4:5:6:7:8", "1:2:3:4:5:6:7::",
        "::198.18.0.1", "::ffff:0:198.18.0.1", "2001:db8:abcd:ef01::ffff",
    ]

    @Test(arguments: addresses)
    func addressesAsEncoderWritesThem(_ address: String) throws {
        let peer = address.contains(":") ? "2001:db8::10" : "198.18.0.10"
        let event = Self.event(source: address, destination: peer)
        #expect(Self.writerLine(event) == (try Self.encoderLine(event)))
    }

    /// One writer copies the names and addresses it wrote before: across more of them than it
    /// keeps, names too long to keep, and a field selection that starts a line with the names,
    /// every line reads as a fresh writer writes the same event.
    @Test func aWriterThatRepeatsNamesAndAddressesWritesWhatAFreshOneWrites() throws {
        let long = "shop/" + String(repeating: "n\u{1}\"", count: 200)
        let names = (0..<200).map { index in
            EventNames(pod: index % 50 == 7 ? long : "shop/web-\(index)", podNamespace: index % 3 == 0 ? nil : "shop",
                       interface: index % 4 == 0 ? nil : "nf\(index)", policy: index % 5 == 0 ? "default" : "shop/policy-\(index % 9)")
        }
        let events = (0..<5000).map { index in
            let source = index % 2 == 0 ? "198.18.\(index % 7).\(index % 151)" : "2001:db8::\(String(index % 211, radix: 16))"
            let destination = index % 2 == 0 ? "198.19.0.\(index % 3)" : "2001:db8:1::\(index % 5)"
            return DecodedEvent(time: Date(timeIntervalSince1970: 1_795_442_341.125 + Double(index)), names: names[(index * 7919) % names.count],
                                direction: .egress, family: index % 2 == 0 ? .ipv4 : .ipv6, protocolNumber: 17,
                                source: IPAddress(source)!, sourcePort: UInt16(index), destination: IPAddress(destination)!, destinationPort: 53,
                                icmpID: index % 3 == 0 ? UInt16(index) : nil, verdict: .deny, tier: .admin, rule: index % 4, reason: .policy,
                                bytes: 99, revision: 1)
        }
        for fields in [nil, Set<EventField>([.icmpID, .pod, .policy, .source]), [.interface, .pod, .podNamespace, .policy]] {
            let shared = EventJSONWriter(fields: fields)
            for event in events { shared.append(event) }
            var text = ""
            shared.flush { text += String(decoding: $0, as: UTF8.self) }
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            #expect(lines.count == events.count)
            for (line, event) in zip(lines, events) {
                let fresh = EventJSONWriter(fields: fields)
                fresh.append(event)
                var alone = ""
                fresh.flush { alone += String(decoding: $0, as: UTF8.self) }
                guard line + "\n" == alone else {
                    Issue.record("with fields \(fields.map { $0.map(\.rawValue).sorted() } ?? []), a shared writer wrote\n\(line)\nfor\n\(alone)")
                    break
                }
            }
        }
    }

    @Test func optionalFieldsLeftOutWhenAbsent() throws {
        let event = Self.event(source: "198.18.0.1", destination: "198.18.0.2", pod: "ifindex 7", namespace: nil,
                               interface: nil, policy: "default", rule: nil)
        let line = Self.writerLine(event)
        #expect(line == (try Self.encoderLine(event)))
        #expect(!line.contains("podNamespace") && !line.contains("\"rule\""))
    }

    @Test func anEchoCarriesItsIdentifierAndNoPorts() throws {
        let echo = DecodedEvent(time: Date(timeIntervalSince1970: 1_795_442_341), pod: "shop/web-0", podNamespace: "shop", interface: nil,
                                direction: .egress, family: .ipv4, protocolNumber: 1, source: IPAddress("198.18.0.1")!, sourcePort: 0,
                                destination: IPAddress("198.18.0.2")!, destinationPort: 0, icmpID: 4242, verdict: .deny,
                                tier: .networkPolicy, policy: "isolation by shop/web", rule: nil, reason: .policy, bytes: 84, revision: 2)
        let line = Self.writerLine(echo)
        #expect(line == (try Self.encoderLine(echo)))
        #expect(line.contains(#""icmpID":4242"#) && line.contains(#""sourcePort":0"#))
    }

    /// Every name of the datapath's values, and a protocol it does not name, as the encoder writes them.
    @Test(arguments: Reason.allCases)
    func everyReasonAndProtocolAsEncoderWritesThem(_ reason: Reason) throws {
        for protocolNumber: UInt8 in [1, 6, 17, 58, 132, 47, 255] {
            let event = Self.event(source: "198.18.0.1", destination: "198.18.0.2", protocolNumber: protocolNumber, reason: reason)
            #expect(Self.writerLine(event) == (try Self.encoderLine(event)))
        }
    }

    @Test func stringsEscapedAsEncoderEscapesThem() throws {
        let event = Self.event(source: "198.18.0.1", destination: "198.18.0.2",
                               policy: "odd/\"quoted\" back\\slash tab\t newline\n bell\u{7} é ✓")
        #expect(Self.writerLine(event) == (try Self.encoderLine(event)))
    }

    @Test(arguments: [1_795_442_341.0, 1_795_442_341.001, 1_795_442_341.5, 1_795_442_341.999_5, 951_782_400.25, 4_102_444_799.75])
    func timesAsISO8601WithMilliseconds(_ seconds: Double) throws {
        let event = Self.event(source: "198.18.0.1", destination: "198.18.0.2", seconds: seconds)
        #expect(Self.writerLine(event) == (try Self.encoderLine(event)))
    }

    @Test func linesFromOneSecondShareTheCachedPrefix() throws {
        let writer = EventJSONWriter()
        let events = [0.1, 0.2, 1.3, 0.4].map { Self.event(source: "198.18.0.1", destination: "198.18.0.2", seconds: 1_795_442_341 + $0) }
        events.forEach(writer.append)
        writer.appendLost(42)
        writer.appendSkipped(7)
        var text = ""
        writer.flush { text += String(decoding: $0, as: UTF8.self) }
        #expect(text == (try events.map(Self.encoderLine).joined()) + "{\"lost\":42}\n{\"skipped\":7}\n")
        var again = ""
        writer.flush { again += String(decoding: $0, as: UTF8.self) }
        #expect(again.isEmpty, "a flush empties the writer")
    }

    /// `--fields`: only the named keys, each with the value the whole line has, in the same order.
    @Test func selectedFieldsOnly() throws {
        let event = Self.event(source: "198.18.0.1", destination: "198.18.0.2")
        let whole = try #require(try JSONSerialization.jsonObject(with: Data(Self.writerLine(event).utf8)) as? [String: Any])
        for selection: Set<EventField> in [[.time, .pod, .verdict], [.bytes], [.rule, .icmpID], Set(EventField.allCases)] {
            let writer = EventJSONWriter(fields: selection)
            writer.append(event)
            var text = ""
            writer.flush { text += String(decoding: $0, as: UTF8.self) }
            let line = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(text)")
            let expected = Set(selection.map(\.description)).intersection(whole.keys)  // icmpID: an echo's only
            #expect(Set(line.keys) == expected, "\(text)")
            for key in expected { #expect("\(line[key]!)" == "\(whole[key]!)") }
        }
        let none = EventJSONWriter(fields: [.icmpID])
        none.append(event)
        var text = ""
        none.flush { text += String(decoding: $0, as: UTF8.self) }
        #expect(text == "{}\n", "a line still, when the event has none of the fields")
    }
}
