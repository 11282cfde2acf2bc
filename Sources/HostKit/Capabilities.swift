import Foundation

/// The effective capabilities of this process, read from /proc/self/status.
public struct Capabilities: Sendable {
    public let effective: UInt64

    /// The capabilities this process has now.
    public static func current() -> Capabilities {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("CapEff:") }
        let hex = line.map { $0.dropFirst("CapEff:".count).trimmingCharacters(in: .whitespaces) } ?? "0"
        return Capabilities(effective: UInt64(hex, radix: 16) ?? 0)
    }

    private func has(_ bit: UInt64) -> Bool { effective & (1 << bit) != 0 }
    /// CAP_SYS_ADMIN (21): listing every object on the host, and anything CAP_BPF allows.
    public var sysAdmin: Bool { has(21) }
    /// CAP_BPF (39): loading programs and creating maps.
    public var bpf: Bool { has(39) || sysAdmin }
}
