import Foundation

/// A BPF ELF object compiled from `bpf/` at build time and carried in the binary.
public struct EmbeddedBPFObject: Sendable {
    /// The source's name without `.bpf.c`, e.g. `demo`.
    public let name: String
    /// The object's bytes.
    public let bytes: [UInt8]

    init(name: String, base64: String) {
        self.name = name
        // The build wrote this string; a failure here means a corrupt build.
        self.bytes = Array(Data(base64Encoded: base64)!)
    }
}
