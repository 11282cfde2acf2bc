import Glibc

/// Other processes, as far as this one can see them.
public enum ProcessStatus {
    /// Whether `pid` names a live process (signal 0: EPERM still means it exists).
    public static func isRunning(_ pid: pid_t) -> Bool {
        pid > 0 && (kill(pid, 0) == 0 || errno == EPERM)
    }

    /// The CPU time `pid` has used so far, in user and kernel mode, every thread (nil: no such process).
    public static func cpuSeconds(_ pid: pid_t) -> Double? {
        guard let read = try? InputFile.read("/proc/\(pid)/stat", limit: 4096) else { return nil }
        let text = String(decoding: read.bytes, as: UTF8.self)
        guard let end = text.lastIndex(of: ")") else { return nil }
        // After the command's closing parenthesis: state is field 3, utime and stime are fields 14 and 15.
        let fields = text[text.index(after: end)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
