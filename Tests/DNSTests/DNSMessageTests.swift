import DNS
import Testing

/// Messages built byte by byte as a server writes them: compression, CNAME chains,
/// A and AAAA, EDNS, and bytes that are not a message.
@Suite struct DNSMessageTests {
    static func name(_ text: String) -> [UInt8] {
        text.split(separator: ".").flatMap { [UInt8($0.utf8.count)] + Array($0.utf8) } + [0]
    }
    static func u16(_ value: Int) -> [UInt8] { [UInt8(value >> 8 & 0xff), UInt8(value & 0xff)] }
    static func u32(_ value: UInt32) -> [UInt8] { [UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)] }
    static func record(_ owner: [UInt8], type: Int, ttl: UInt32, data: [UInt8]) -> [UInt8] {
        owner + u16(type) + u16(1) + u32(ttl) + u16(data.count) + data
    }

    /// `www.example.com` → CNAME `edge.example.net` (TTL 300, written with a pointer into the question)
    /// → CNAME `a.edge.example.net` (TTL 30) → A 198.18.0.7 (TTL 600) and AAAA (TTL 10); an OPT record.
    static let chain: [UInt8] = {
        var bytes = u16(0x1234) + u16(0x8180) + u16(1) + u16(4) + u16(0) + u16(1)
        bytes += name("www.Example.COM") + u16(1) + u16(1)       // question at 12
        let edge = name("edge.example.net")
        bytes += record([0xc0, 12], type: 5, ttl: 300, data: edge) // target written out at its rdata
        let edgeOffset = 12 + name("www.Example.COM").count + 4 + 2 + 2 + 2 + 4 + 2
        bytes += record([0xc0, UInt8(edgeOffset)], type: 5, ttl: 30, data: [1, UInt8(ascii: "a"), 0xc0, UInt8(edgeOffset)])
        let aOffset = bytes.count - 4  // "a" + pointer: the rdata of the record just written
        bytes += record([0xc0, UInt8(aOffset)], type: 1, ttl: 600, data: [198, 18, 0, 7])
        bytes += record([0xc0, UInt8(aOffset)], type: 28, ttl: 10, data: [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [7])
        bytes += [0] + u16(41) + u16(1232) + u32(0x0000_8000) + u16(0)  // OPT: DO bit in the TTL field
        return bytes
    }()

    @Test func aCNAMEChainResolvesWithTheLowestTTLAlongIt() throws {
        let message = try DNSMessage(parsing: Self.chain)
        #expect(message.id == 0x1234 && message.isResponse && !message.isTruncated && message.responseCode == 0)
        #expect(message.questions == [DNSMessage.Question(name: DomainName("www.example.com")!, type: 1, recordClass: 1)])
        #expect(message.answers.map(\.type) == [5, 5, 1, 28])
        #expect(message.answers[1].canonicalName == DomainName("a.edge.example.net"))
        let resolved = message.resolved(for: DomainName("www.example.com")!)
        #expect(resolved == [.init(address: [198, 18, 0, 7], ttl: 30),
                             .init(address: [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [7], ttl: 10)])
        #expect(message.resolved(for: DomainName("other.example.com")!).isEmpty)
    }

    /// A CNAME loop (a → b → a) ends the chain with no address, and a chain of more than 16 aliases is
    /// followed no further than 16 hops, whatever an upstream (or a forger) puts in the answer.
    @Test func aCNAMELoopOrAChainOver16HopsResolvesNothing() throws {
        func answer(_ records: [[UInt8]]) throws -> DNSMessage {
            try DNSMessage(parsing: Self.u16(1) + Self.u16(0x8180) + Self.u16(1) + Self.u16(records.count) + Self.u16(0) + Self.u16(0)
                + Self.name("a.example") + Self.u16(1) + Self.u16(1) + records.flatMap { $0 })
        }
        let loop = try answer([Self.record(Self.name("a.example"), type: 5, ttl: 60, data: Self.name("b.example")),
                               Self.record(Self.name("b.example"), type: 5, ttl: 60, data: Self.name("a.example"))])
        #expect(loop.resolved(for: DomainName("a.example")!).isEmpty)
        func chain(_ hops: Int) throws -> [DNSMessage.Resolved] {
            let names = ["a.example"] + (1...hops).map { "h\($0).example" }
            let aliases = (0..<hops).map { Self.record(Self.name(names[$0]), type: 5, ttl: 60, data: Self.name(names[$0 + 1])) }
            return try answer(aliases + [Self.record(Self.name(names[hops]), type: 1, ttl: 60, data: [198, 18, 0, 9])])
                .resolved(for: DomainName("a.example")!)
        }
        #expect(try chain(16) == [.init(address: [198, 18, 0, 9], ttl: 60)], "16 hops are followed")
        #expect(try chain(17).isEmpty, "the 17th is not")
    }

    @Test func ttlsAreCappedInPlaceButNotTheOPTFlags() throws {
        let message = try DNSMessage(parsing: Self.chain)
        let capped = try DNSMessage(parsing: message.cappingTTLs(at: 20))
        #expect(capped.answers.map(\.ttl) == [20, 20, 20, 10])
        #expect(capped.additionals.first?.ttl == 0x8000, "EDNS flags untouched")
        #expect(capped.bytes.count == Self.chain.count)
    }

    @Test func refusedAndServerFailureRepliesCarryTheQuestion() throws {
        let query = Self.u16(0xbeef) + Self.u16(0x0100) + Self.u16(1) + Self.u16(0) + Self.u16(0) + Self.u16(1)
            + Self.name("blocked.example.org") + Self.u16(28) + Self.u16(1) + [0] + Self.u16(41) + Self.u16(1232) + Self.u32(0) + Self.u16(0)
        let message = try DNSMessage(parsing: query)
        for code in [DNSMessage.ResponseCode.refused, DNSMessage.ResponseCode.serverFailure, DNSMessage.ResponseCode.nameError] {
            let reply = try DNSMessage(parsing: message.reply(responseCode: code))
            #expect(reply.id == 0xbeef && reply.isResponse && reply.responseCode == code)
            #expect(reply.flags & 0x0100 != 0, "recursion desired is echoed")
            #expect(reply.questions == message.questions && reply.answers.isEmpty && reply.additionals.isEmpty)
        }
    }

    static let header = u16(1) + u16(0x8180)
    static let badMessages: [([UInt8], String)] = [
        ([], "message ends inside a field at byte 0"),
        (header + u16(1) + u16(0) + u16(0) + u16(0) + [3, 0x61, 0x62], "label runs past the message"),
        (header + u16(1) + u16(0) + u16(0) + u16(0) + [0xc0, 12] + u16(1) + u16(1), "compression pointer to 12 does not point back"),
        (header + u16(0) + u16(1) + u16(0) + u16(0) + [0] + u16(1) + u16(1) + u32(5) + u16(9) + [1, 2], "record data runs past the message"),
        (header + u16(1) + u16(0) + u16(0) + u16(0) + [0x40], "label type 1 is not supported"),
    ]

    @Test func badBytesAreErrorsNotTraps() {
        for (bytes, message) in Self.badMessages {
            #expect(throws: DNSParseError.self) { try DNSMessage(parsing: bytes) }
            do { _ = try DNSMessage(parsing: bytes) } catch { #expect(error.description == message) }
        }
    }

    @Test func everyTruncationOfAGoodMessageFailsCleanly() {
        for length in 0..<Self.chain.count - 1 {
            _ = try? DNSMessage(parsing: Array(Self.chain.prefix(length)))  // must not trap
        }
        #expect(throws: Never.self) { try DNSMessage(parsing: Self.chain) }
    }
}

@Suite struct DomainPatternTests {
    @Test func namesCompareWithoutCaseOrTrailingDot() {
        #expect(DomainName("GitHub.com.") == DomainName("github.com"))
        #expect(DomainName("") == nil && DomainName("a..b") == nil && DomainName(String(repeating: "a", count: 64) + ".com") == nil)
    }

    @Test func aWildcardMatchesOneOrMoreLabelsButNotTheApex() throws {
        let pattern = try #require(DomainPattern("*.Example.com"))
        #expect(pattern.matches(DomainName("a.example.com")!))
        #expect(pattern.matches(DomainName("b.a.example.com.")!))
        #expect(!pattern.matches(DomainName("example.com")!))
        #expect(!pattern.matches(DomainName("badexample.com")!))
        let exact = try #require(DomainPattern("github.com"))
        #expect(exact.matches(DomainName("GITHUB.COM")!) && !exact.matches(DomainName("api.github.com")!))
        #expect(DomainPattern("*.") == nil && DomainPattern("a.*.com") == nil && DomainPattern("**.com") == nil)
    }

    @Test func aBuiltQueryParsesBackToItsQuestion() throws {
        let query = try DNSMessage(parsing: DNSMessage.query(id: 0x1234, name: "a.Example.com", type: DNSMessage.RecordType.aaaa))
        #expect(query.id == 0x1234 && !query.isResponse && query.flags & 0x0100 != 0, "recursion desired")
        #expect(query.questions == [DNSMessage.Question(name: try #require(DomainName("a.example.com")), type: DNSMessage.RecordType.aaaa)])
        // Names off the wire fold case as typed names do: ASCII letters only among the ASCII bytes, Unicode beyond.
        for name in ["MiXeD-09_@[`{.Z", "Ünïcode.ÉXAMPLE"] {
            let parsed = try DNSMessage(parsing: DNSMessage.query(id: 1, name: name))
            #expect(parsed.questions.first?.name == DomainName(name), "\(name) → \(String(describing: parsed.questions.first?.name))")
        }
    }

    @Test func patternIdsAreFNV1aOfTheNormalisedText() throws {
        #expect(try #require(DomainPattern("a")).id == 0xaf63_dc4c_8601_ec8c, "FNV-1a 64 of \"a\"")
        #expect(DomainPattern("GitHub.COM.")?.id == DomainPattern("github.com")?.id)
        #expect(DomainPattern("*.github.com")?.id != DomainPattern("github.com")?.id)
    }

    @Test func aNameListsEveryPatternThatMatchesIt() throws {
        let name = try #require(DomainName("a.b.Example.com"))
        #expect(name.matchingPatterns.map(\.description) == ["a.b.example.com", "*.b.example.com", "*.example.com", "*.com"])
        for pattern in name.matchingPatterns { #expect(pattern.matches(name)) }
        #expect(try #require(DomainName("com")).matchingPatterns.map(\.description) == ["com"])
        for text in ["a.b.Example.com", "com", "x.y.z.w.example.org", "Ünïcode.example"] {
            let candidate = try #require(DomainName(text))
            #expect(candidate.matchingPatternIDs == candidate.matchingPatterns.map(\.id), "\(text): the fast ids are the patterns' ids")
        }
    }
}
