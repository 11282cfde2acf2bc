/// A DNS message (RFC 1035) as the proxy needs it: the question, every record with
/// where its TTL sits (so TTLs can be capped in place), A/AAAA addresses and CNAME
/// targets decoded, names decompressed. Parsing checks every length and pointer:
/// bytes from the network never trap.
public struct DNSMessage: Sendable {
    public enum RecordType {
        public static let a: UInt16 = 1, cname: UInt16 = 5, aaaa: UInt16 = 28, opt: UInt16 = 41
    }

    public enum ResponseCode {
        public static let noError: UInt8 = 0, formatError: UInt8 = 1, serverFailure: UInt8 = 2, nameError: UInt8 = 3, refused: UInt8 = 5
    }

    public struct Question: Sendable, Equatable {
        public let name: DomainName
        public let type: UInt16
        public let recordClass: UInt16

        public init(name: DomainName, type: UInt16, recordClass: UInt16 = 1) {
            self.name = name
            self.type = type
            self.recordClass = recordClass
        }
    }

    public struct Record: Sendable {
        public let name: DomainName
        public let type: UInt16
        public let recordClass: UInt16
        public let ttl: UInt32
        /// Where the TTL's four bytes are in the message.
        public let ttlOffset: Int
        /// An A (4 bytes) or AAAA (16 bytes) record's address.
        public let address: [UInt8]?
        /// A CNAME record's target.
        public let canonicalName: DomainName?
    }

    public let bytes: [UInt8]
    public let id: UInt16
    public let flags: UInt16
    public let questions: [Question]
    public let answers: [Record]
    public let authorities: [Record]
    public let additionals: [Record]
    /// Where the first question ends (a reply copies it: bytes 12..<firstQuestionEnd).
    let firstQuestionEnd: Int

    public var isResponse: Bool { flags & 0x8000 != 0 }
    public var isTruncated: Bool { flags & 0x0200 != 0 }
    public var responseCode: UInt8 { UInt8(flags & 0x000f) }

    public init(parsing bytes: [UInt8]) throws(DNSParseError) {
        var reader = Reader(bytes: bytes)
        id = try reader.u16()
        flags = try reader.u16()
        let counts = (try reader.u16(), try reader.u16(), try reader.u16(), try reader.u16())
        guard counts.0 <= 16 else { throw DNSParseError("\(counts.0) questions") }
        var questions: [Question] = [], firstQuestionEnd = reader.offset
        for index in 0..<counts.0 {
            questions.append(Question(name: try reader.name(), type: try reader.u16(), recordClass: try reader.u16()))
            if index == 0 { firstQuestionEnd = reader.offset }
        }
        self.firstQuestionEnd = firstQuestionEnd
        answers = try (0..<counts.1).map { _ throws(DNSParseError) in try reader.record() }
        authorities = try (0..<counts.2).map { _ throws(DNSParseError) in try reader.record() }
        additionals = try (0..<counts.3).map { _ throws(DNSParseError) in try reader.record() }
        self.questions = questions
        self.bytes = bytes
    }

    /// An address the answer gives for the question, with the lowest TTL along the CNAME chain that led to it.
    public struct Resolved: Sendable, Equatable {
        public let address: [UInt8]
        public let ttl: UInt32

        public init(address: [UInt8], ttl: UInt32) {
            self.address = address
            self.ttl = ttl
        }
    }

    /// The A and AAAA records the answer section gives for `name`, following CNAMEs within
    /// the answer (at most 16 hops; a loop ends the chain).
    public func resolved(for name: DomainName) -> [Resolved] {
        var current = name, chainTTL = UInt32.max, aliases: [DomainName] = []  // most answers have none: nothing allocated
        while aliases.count < 16, let alias = answers.first(where: { $0.type == RecordType.cname && $0.name == current }),
              let target = alias.canonicalName, target != name, !aliases.contains(target) {
            aliases.append(target)
            chainTTL = min(chainTTL, alias.ttl)
            current = target
        }
        return answers.compactMap { record in
            guard record.name == current, let address = record.address else { return nil }
            return Resolved(address: address, ttl: min(chainTTL, record.ttl))
        }
    }

    /// The bytes of a recursive query for `name` (class IN), as a stub resolver sends it; with
    /// an EDNS OPT record offering UDP answers of `ednsPayloadSize` bytes when one is given.
    public static func query(id: UInt16, name: String, type: UInt16 = RecordType.a, ednsPayloadSize: UInt16? = nil) -> [UInt8] {
        var bytes: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xff), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, ednsPayloadSize == nil ? 0 : 1]
        for label in name.split(separator: ".") { bytes += [UInt8(label.utf8.count)] + Array(label.utf8) }
        bytes += [0, UInt8(type >> 8), UInt8(type & 0xff), 0, 1]
        if let size = ednsPayloadSize { bytes += [0, 0, UInt8(RecordType.opt), UInt8(size >> 8), UInt8(size & 0xff), 0, 0, 0, 0, 0, 0] }
        return bytes
    }

    /// A reply to this query with `responseCode` and its question, nothing else (REFUSED, SERVFAIL).
    public func reply(responseCode: UInt8) -> [UInt8] {
        let opcodeAndDesire = flags & 0x7900  // opcode, RD
        let replyFlags = 0x8000 | opcodeAndDesire | 0x0080 | UInt16(responseCode & 0xf)  // QR, RA
        var reply: [UInt8] = []
        for word in [id, replyFlags, UInt16(questions.isEmpty ? 0 : 1), 0, 0, 0] {
            reply += [UInt8(word >> 8), UInt8(word & 0xff)]
        }
        reply += bytes[12..<firstQuestionEnd]
        return reply
    }

    /// These bytes with every answer and authority TTL above `maximum` lowered to it
    /// (OPT records are left alone: their TTL field holds EDNS flags).
    public func cappingTTLs(at maximum: UInt32) -> [UInt8] {
        var capped = bytes
        capped.withUnsafeMutableBytes { message in
            func cap(_ section: [Record]) {
                for record in section where record.type != RecordType.opt && record.ttl > maximum {
                    message.storeBytes(of: maximum.bigEndian, toByteOffset: record.ttlOffset, as: UInt32.self)
                }
            }
            cap(answers)
            cap(authorities)
            cap(additionals)
        }
        return capped
    }

    /// Reads big-endian fields and names, every read bounds-checked.
    struct Reader {
        let bytes: [UInt8]
        var offset = 0

        mutating func u16() throws(DNSParseError) -> UInt16 {
            guard offset + 2 <= bytes.count else { throw DNSParseError("message ends inside a field at byte \(offset)") }
            defer { offset += 2 }
            return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
        }

        mutating func u32() throws(DNSParseError) -> UInt32 {
            UInt32(try u16()) << 16 | UInt32(try u16())
        }

        /// A name at the current offset, compression pointers followed (each must point
        /// backwards, so no loop); the offset moves past the name as written here.
        mutating func name() throws(DNSParseError) -> DomainName {
            var labels: [String] = [], length = 0, position = offset, jumped = false
            while true {
                guard position < bytes.count else { throw DNSParseError("name runs past the message") }
                let byte = bytes[position]
                if byte & 0xc0 == 0xc0 {
                    guard position + 1 < bytes.count else { throw DNSParseError("compression pointer cut short") }
                    let target = Int(byte & 0x3f) << 8 | Int(bytes[position + 1])
                    guard target < position else { throw DNSParseError("compression pointer to \(target) does not point back") }
                    if !jumped { offset = position + 2 }
                    jumped = true
                    position = target
                    continue
                }
                guard byte & 0xc0 == 0 else { throw DNSParseError("label type \(byte >> 6) is not supported") }
                if byte == 0 {
                    if !jumped { offset = position + 1 }
                    return DomainName(lowercasedLabels: labels)
                }
                let count = Int(byte)
                guard position + 1 + count <= bytes.count else { throw DNSParseError("label runs past the message") }
                length += count + 1
                guard length <= 255 else { throw DNSParseError("name longer than 255 bytes") }
                labels.append(DomainName.lowercasedLabel(bytes[(position + 1)..<(position + 1 + count)]))
                position += 1 + count
            }
        }

        mutating func record() throws(DNSParseError) -> Record {
            let name = try name(), type = try u16(), recordClass = try u16()
            let ttlOffset = offset
            let ttl = try u32(), length = Int(try u16())
            guard offset + length <= bytes.count else { throw DNSParseError("record data runs past the message") }
            let start = offset
            offset += length
            var address: [UInt8]?, canonicalName: DomainName?
            switch type {
            case RecordType.a where length == 4, RecordType.aaaa where length == 16:
                address = Array(bytes[start..<offset])
            case RecordType.cname:
                var inner = Reader(bytes: bytes, offset: start)
                canonicalName = try inner.name()
                guard inner.offset <= offset else { throw DNSParseError("CNAME target runs past its record") }
            default:
                break
            }
            return Record(name: name, type: type, recordClass: recordClass, ttl: ttl, ttlOffset: ttlOffset, address: address,
                          canonicalName: canonicalName)
        }
    }
}

/// Bytes that are not a DNS message this proxy can read.
public struct DNSParseError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ description: String) { self.description = description }
}
