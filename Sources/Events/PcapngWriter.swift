import DatapathModel
import Foundation
import Rendering

/// Writes events' captured packets as pcapng (the format tcpdump, tshark and
/// Wireshark read): a section header, an interface description per host veth
/// (named after it, described by its pod) when its first packet comes, and an
/// enhanced packet block per event with the captured bytes, the packet's
/// original length, the event's time and a comment naming the pod, direction,
/// verdict, tier, policy and rule. Host byte order (the section header says
/// which). Blocks collect in the writer until `flush(to:)`.
public final class PcapngWriter {
    private let buffer = OutputBuffer(capacity: 256 * 1024)
    /// Interface id in this section, by the name its description block gave it.
    private var interfaces: [String: UInt32] = [:]
    /// Events that carried no packet (capture off, or not of their verdict), left out.
    public private(set) var withoutPacket = 0

    private static let linkTypeEthernet: UInt16 = 1
    private static let optionEnd: UInt16 = 0, optionComment: UInt16 = 1, interfaceName: UInt16 = 2, interfaceDescription: UInt16 = 3
    private static let sectionApplication: UInt16 = 4

    /// A writer whose section starts with its header.
    public init() {
        block(type: 0x0A0D_0D0A, reserve: 64) { block in
            block.put(binary: UInt32(0x1A2B_3C4D))  // byte-order magic
            block.put(binary: UInt16(1))
            block.put(binary: UInt16(0))
            block.put(binary: UInt64.max)  // section length: not known
            Self.option(Self.sectionApplication, "netfence", into: &block)
        }
    }

    /// Hands the blocks written since the last flush to `output`.
    public func flush(to output: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        try buffer.flush(to: output)
    }

    /// Appends `event`'s packet (nothing, when it carries none).
    public func append(_ event: DecodedEvent) {
        guard !event.packet.isEmpty else {
            withoutPacket += 1
            return
        }
        let name = event.interface ?? event.pod
        let interface = interfaces[name] ?? describe(name, pod: event.pod)
        let microseconds = UInt64(max(0, event.time.timeIntervalSince1970 * 1e6).rounded())
        let comment = "\(event.pod) \(event.direction) \(event.verdict) by \(event.tier): \(EventLine.decidedBy(event))"
        block(type: 6, reserve: 64 + event.packet.count + 8 * comment.utf8.count) { block in
            block.put(binary: interface)
            block.put(binary: UInt32(truncatingIfNeeded: microseconds >> 32))
            block.put(binary: UInt32(truncatingIfNeeded: microseconds))
            block.put(binary: UInt32(event.packet.count))
            block.put(binary: max(event.bytes, UInt32(event.packet.count)))
            let data = block.position
            event.packet.withUnsafeBytes { block.put(bytes: $0) }
            block.pad(toMultipleOf: 4, since: data)
            Self.option(Self.optionComment, comment, into: &block)
        }
    }

    /// An interface description block for `name`; returns its id.
    private func describe(_ name: String, pod: String) -> UInt32 {
        let id = UInt32(interfaces.count)
        interfaces[name] = id
        block(type: 1, reserve: 64 + 8 * (name.utf8.count + pod.utf8.count)) { block in
            block.put(binary: Self.linkTypeEthernet)
            block.put(binary: UInt16(0))
            block.put(binary: UInt32(DatapathSettings.maxSnaplen))
            Self.option(Self.interfaceName, name, into: &block)
            Self.option(Self.interfaceDescription, "pod \(pod)", into: &block)
        }
        return id
    }

    /// A block of `type`: its length before and after what `body` writes (options end included).
    private func block(type: UInt32, reserve: Int, _ body: (inout OutputCursor) -> Void) {
        buffer.write(atMost: reserve + 16) { block in
            let start = block.position
            block.put(binary: type)
            block.put(binary: UInt32(0))  // the length, once known
            body(&block)
            block.put(binary: Self.optionEnd)
            block.put(binary: UInt16(0))
            let length = UInt32(block.position - start + 4)
            block.put(binary: length)
            block.patch(length, at: start + 4)
        }
    }

    /// An option holding `text` (UTF-8, control characters escaped as a terminal shows them), padded to 4 bytes.
    private static func option(_ code: UInt16, _ text: String, into block: inout OutputCursor) {
        block.put(binary: code)
        let length = block.position
        block.put(binary: UInt16(0))
        let value = block.position
        block.put(text: text)
        block.patch(UInt16(block.position - value), at: length)
        block.pad(toMultipleOf: 4, since: value)
    }
}
