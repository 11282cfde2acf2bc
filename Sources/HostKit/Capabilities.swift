/// The effective capabilities of this process, read from /proc/self/status.
public struct Capabilities: Sendable {
    public let effective: UInt64

    /// The capabilities this process has now (none when the status cannot be read).
    public static func current() -> Capabilities {
        // Bytes, not Foundation strings: every privileged command asks this first, in a process that starts anew.
        let status = (try? InputFile.read("/proc/self/status", limit: 1 << 16).bytes) ?? []
        return Capabilities(effective: hexField("CapEff:", in: status) ?? 0)
    }

    /// The hexadecimal number after `name` at the start of a line of `text`.
    static func hexField(_ name: String, in text: [UInt8]) -> UInt64? {
        let label = Array(name.utf8)
        var lineStart = 0
        while lineStart < text.count {
            let lineEnd = text[lineStart...].firstIndex(of: UInt8(ascii: "\n")) ?? text.count
            if text[lineStart..<lineEnd].starts(with: label) {
                let digits = text[(lineStart + label.count)..<lineEnd].drop { $0 == UInt8(ascii: "\t") || $0 == UInt8(ascii: " ") }
                return UInt64(String(decoding: digits, as: UTF8.self), radix: 16)
            }
            lineStart = lineEnd + 1
        }
        return nil
    }

    private func has(_ bit: UInt64) -> Bool { effective & (1 << bit) != 0 }
    /// CAP_SYS_ADMIN (21): listing every object on the host, and anything CAP_BPF allows.
    public var sysAdmin: Bool { has(21) }
    /// CAP_BPF (39): loading programs and creating maps.
    public var bpf: Bool { has(39) || sysAdmin }
}
