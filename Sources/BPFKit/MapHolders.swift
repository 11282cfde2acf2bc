import Foundation
import Glibc

/// Which processes hold a BPF map open (their descriptors' fdinfo names its id).
public enum MapHolders {
    /// `pid 812 (aws-network-pol)` for each other process with a descriptor of map `id`.
    public static func processes(holding id: UInt32) -> [String] {
        let own = getpid()
        var holders: [String] = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), pid != own else { continue }
            let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
            let holds = descriptors.contains { fd in
                guard (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)")) == "anon_inode:bpf-map",
                      let info = try? String(contentsOfFile: "/proc/\(pid)/fdinfo/\(fd)", encoding: .utf8) else { return false }
                return info.split(separator: "\n").contains { $0 == "map_id:\t\(id)" }
            }
            guard holds else { continue }
            let name = (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
            holders.append("pid \(pid) (\(name))")
        }
        return holders.sorted()
    }
}
