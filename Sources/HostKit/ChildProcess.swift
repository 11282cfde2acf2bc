import Glibc

/// Runs another program and waits for it, with posix_spawn and waitpid:
/// Foundation's Process notices an exit up to 50 ms late, which adds up over
/// the hundreds of `ip` calls a test run makes and would skew a benchmark.
public enum ChildProcess {
    public enum Output {
        /// Standard output and standard error, together, returned as text.
        case captured
        /// Standard output to /dev/null (as `> /dev/null`); standard error returned as text.
        case discarded
        /// Standard output and standard error returned apart (`output`, `errorOutput`).
        case separate
    }

    public struct Result: Sendable {
        /// The exit status, or 128 + the signal that ended it.
        public let status: Int32
        public let output: String
        /// Standard error, when it was kept apart (`.separate`); else empty.
        public var errorOutput = ""
        /// Wall time from spawn to exit, in seconds.
        public var seconds: Double = 0
        /// The process id it ran as.
        public var processID: pid_t = 0
    }

    /// Runs `executable` with `arguments`, standard input from the file `input` (default
    /// /dev/null), in this process's environment or in `environment` when given. Past
    /// `timeout` seconds the child is killed (SIGKILL: status 137) and what it wrote so far returned.
    public static func run(_ executable: String, _ arguments: [String], output: Output = .captured,
                           environment: [String: String]? = nil, input: String = "/dev/null", timeout: Double? = nil) throws -> Result {
        let out = try Pipe(for: executable), err = output == .separate ? try Pipe(for: executable) : nil
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, input, O_RDONLY, 0)
        switch output {
        case .captured, .separate: posix_spawn_file_actions_adddup2(&actions, out.writeEnd, 1)
        case .discarded: posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, err?.writeEnd ?? out.writeEnd, 2)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envp = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { envp?.forEach { free($0) } }
        var child: pid_t = 0
        let started = HostClock.monotonic.nanoseconds
        var attributes = ChildProcess.cleanSignals()
        defer { posix_spawnattr_destroy(&attributes) }
        let spawned = envp.map { posix_spawn(&child, executable, &actions, &attributes, argv, $0) }
            ?? posix_spawn(&child, executable, &actions, &attributes, argv, environ)
        out.closeWriteEnd()
        err?.closeWriteEnd()
        guard spawned == 0 else { throw SystemError("run", executable, errno: spawned) }
        let pid = child
        let removal = Interruption.register { kill(pid, SIGKILL) }  // a stop does not wait for it to end by itself
        // Read both to the end first: a child blocked on a full pipe would never exit.
        let deadline = timeout.map { started + UInt64($0 * 1e9) }
        var (text, errorText, timedOut) = readToEnd(out.readEnd, err?.readEnd, until: deadline)
        if timedOut, let timeout {
            kill(child, SIGKILL)
            let note = Array("\n[killed: still running after \(timeout) s]\n".utf8)
            if err == nil { text += note } else { errorText += note }
        }
        let status = reap(child, blocking: true, unregistering: removal) ?? 0
        return Result(status: exitCode(status), output: String(decoding: text, as: UTF8.self),
                      errorOutput: String(decoding: errorText, as: UTF8.self),
                      seconds: Double(HostClock.monotonic.nanoseconds - started) / 1e9, processID: child)
    }

    /// Everything written to `first` and `second` until both are closed (or the monotonic
    /// `deadline` in nanoseconds passed), read as it comes (poll).
    private static func readToEnd(_ first: Int32, _ second: Int32?, until deadline: UInt64?) -> ([UInt8], [UInt8], timedOut: Bool) {
        var texts: [[UInt8]] = [[], []]
        var open = [first, second ?? -1]
        var chunk = [UInt8](repeating: 0, count: 16384)
        while open.contains(where: { $0 >= 0 }) {
            var wait: Int32 = -1
            if let deadline {
                let now = HostClock.monotonic.nanoseconds
                guard now < deadline else { return (texts[0], texts[1], true) }
                wait = Int32(min((deadline - now) / 1_000_000 + 1, UInt64(Int32.max)))
            }
            var entries = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            guard poll(&entries, nfds_t(entries.count), wait) >= 0 || errno == EINTR else { break }
            for (index, entry) in entries.enumerated() where entry.fd >= 0 && entry.revents != 0 {
                let count = read(entry.fd, &chunk, chunk.count)
                if count > 0 { texts[index] += chunk[0..<count] } else if count == 0 || errno != EINTR { open[index] = -1 }
            }
        }
        return (texts[0], texts[1], false)
    }

    /// A pipe a child writes into: close-on-exec both ends, so other children started meanwhile do not hold the write end open.
    private final class Pipe {
        let readEnd: Int32
        private(set) var writeEnd: Int32

        init(for executable: String) throws {
            var ends: [Int32] = [0, 0]
            guard pipe(&ends) == 0 else { throw SystemError("create a pipe for", executable, errno: errno) }
            (readEnd, writeEnd) = (ends[0], ends[1])
            _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(writeEnd, F_SETFD, FD_CLOEXEC)
        }

        func closeWriteEnd() {
            if writeEnd >= 0 { close(writeEnd) }
            writeEnd = -1
        }

        deinit {
            closeWriteEnd()
            close(readEnd)
        }
    }
}

extension ChildProcess {
    /// Reaps the child `pid` once it exited (waiting for that when `blocking`; nil while it runs),
    /// unregistering its stop's kill first: a stop never kills a pid that was reaped and may be
    /// another process's by then. The raw wait status, or nil.
    static func reap(_ pid: pid_t, blocking: Bool, unregistering removal: Interruption.Removal) -> Int32? {
        var exited = siginfo_t()
        while waitid(P_PID, id_t(pid), &exited, WEXITED | WNOWAIT | (blocking ? 0 : WNOHANG)) < 0 {
            guard errno == EINTR else { removal.forget(); return nil }  // not our child (reaped already)
        }
        guard exited._sifields._sigchld.si_pid == pid else { return nil }
        removal.forget()
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) < 0, errno == EINTR {}
        return raw
    }

    /// A raw wait status as a shell gives it: the exit code, or 128 + the signal that ended the child.
    static func exitCode(_ raw: Int32) -> Int32 { raw & 0x7f == 0 ? (raw >> 8) & 0xff : 128 + raw & 0x7f }

    /// Spawn attributes that give the child an empty signal mask and default dispositions: what this
    /// process blocks or ignores (a test runner's mask, SIGPIPE ignored) must not reach a program that
    /// counts on its signals (sockperf ends its run with a timer signal; a blocked one hangs it).
    static func cleanSignals() -> posix_spawnattr_t {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        return attributes
    }

    /// A program started in the background (a server a test or benchmark runs beside it).
    public final class Running: @unchecked Sendable {
        public let processID: pid_t
        private var status: Int32?
        /// Killed if a stop ends this process first (``Interruption``), until it is reaped.
        let removal: Interruption.Removal

        init(processID: pid_t) {
            self.processID = processID
            removal = Interruption.register {
                kill(processID, SIGKILL)
                var raw: Int32 = 0  // reaped: this process is ending, and an orphaned zombie may find no reaper
                while waitpid(processID, &raw, 0) < 0, errno == EINTR {}
            }
        }

        /// Sends `signal` and waits for the exit, killing it (SIGKILL) past `seconds`;
        /// returns the status as `run` does. Once only.
        @discardableResult
        public func stop(signal: Int32 = SIGTERM, within seconds: Double = 30) -> Int32 {
            if let status { return status }
            kill(processID, signal)
            let deadline = HostClock.monotonic.nanoseconds + UInt64(seconds * 1e9)
            while isRunning {
                guard HostClock.monotonic.nanoseconds < deadline else {
                    kill(processID, SIGKILL)
                    _ = ChildProcess.reap(processID, blocking: true, unregistering: removal)
                    status = 128 + SIGKILL
                    break
                }
                usleep(5_000)
            }
            return status!
        }

        /// Whether it is still running (not exited, or exited and not yet waited for).
        public var isRunning: Bool {
            guard status == nil else { return false }
            if let raw = ChildProcess.reap(processID, blocking: false, unregistering: removal) {
                status = ChildProcess.exitCode(raw)
            }
            return status == nil
        }

        deinit { _ = stop(signal: SIGKILL) }
    }

    /// Starts `executable` with `arguments`, standard input, output and error on /dev/null.
    public static func start(_ executable: String, _ arguments: [String]) throws -> Running {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        var attributes = cleanSignals()
        defer { posix_spawnattr_destroy(&attributes) }
        let spawned = posix_spawn(&child, executable, &actions, &attributes, argv, environ)
        guard spawned == 0 else { throw SystemError("start", executable, errno: spawned) }
        return Running(processID: child)
    }
}
