import BPFKit
import DatapathModel
import Foundation
import Glibc
import HostKit
import NodeNetwork
import Testing
import TestSupport

/// Denied packets as pcapng, read by tshark and tcpdump; flow logs rotated, reopened and
/// continued across a killed reader, read back line by line. Real traffic between pods.
@Suite(.serialized) struct CaptureAndFlowLogTests {
    /// A tool from Debian's tshark or tcpdump package, or nil (and a recorded issue under CI).
    static func tool(_ name: String) -> String? {
        let path = "/usr/bin/\(name)"
        return Privileges.tools([path], from: name) ? path : nil
    }

    static func run(_ tool: String, _ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
        let result = try ChildProcess.run(tool, arguments, output: .separate)
        return (result.status, result.output, result.errorOutput)
    }

    /// A payload that says which datagram it is.
    static func payload(_ index: Int, size: Int) -> [UInt8] {
        let tag = Array("netfence-capture-\(index)-".utf8)
        return Array((tag + [UInt8](repeating: UInt8(ascii: "a") + UInt8(index % 26), count: max(0, size - tag.count))).prefix(size))
    }

    /// Two pods, pod0 denying what arrives, events without captures, the rings drained.
    static func denyingCluster() throws -> LoaderCluster {
        let bench = try LoaderCluster(pods: 2, ingressDefault: "deny")
        try bench.cli(["ebpf", "events", "capture", "--snaplen", "0"])
        _ = try bench.cli(["ebpf", "events"])
        return bench
    }

    /// Datagrams from pod1 to pod0 of distinct payload lengths (1, 2, …): each event says which one it was.
    struct NumberedDatagrams {
        let bench: LoaderCluster
        private(set) var sent = 0
        init(_ bench: LoaderCluster) { self.bench = bench }

        /// Sends `count` more; returns their lengths.
        @discardableResult
        mutating func send(_ count: Int) throws -> Set<Int> {
            let first = sent + 1
            for _ in 0..<count {
                sent += 1
                try bench.cluster.pods[1].namespace.sendPayload([UInt8](repeating: 0x6e, count: sent), to: bench.ip(0), port: 9999)
            }
            return Set(first...sent)
        }

        /// The payload lengths of pod0's events in JSON lines (`check` sees every line's object).
        static func lengths(inLines text: String, check: ([String: Any]) -> Void = { _ in }) throws -> [Int] {
            try text.split(separator: "\n").compactMap { line in
                let object = try jsonObject(String(line))
                check(object)
                return object["pod"] as? String == "shop/pod0" ? (object["bytes"] as? Int).map { $0 - 42 } : nil
            }
        }
    }

    /// `netfence ebpf events --follow … --bpffs-root` of `bench` as a process, its standard error to `errors`.
    static func startReader(_ bench: LoaderCluster, _ arguments: [String], output: FileHandle? = nil, errors: FileHandle? = nil) throws -> Process {
        let reader = Process()
        reader.executableURL = URL(fileURLWithPath: NetfenceBinary.path)
        reader.arguments = ["ebpf", "events", "--follow"] + arguments + ["--bpffs-root", bench.root.path]
        reader.standardOutput = output ?? FileHandle.nullDevice
        reader.standardError = errors ?? FileHandle.nullDevice
        try reader.run()
        return reader
    }

    @Test func deniedPacketsAreInThePcapngWithTheirBytesLengthAndWhoDecided() throws {
        guard Privileges.require(), let tshark = Self.tool("tshark"), let tcpdump = Self.tool("tcpdump") else { return }
        let bench = try LoaderCluster(pods: 3)
        try bench.cli(["loader", "apply"], input: policyEndpoint("web", selecting: [0], isolation: ["Ingress"],
                                                               ingress: rule("\(bench.ip(1))/32", ports: [("TCP", 8080, nil)])))
        try bench.cli(["ebpf", "events", "capture", "--snaplen", "128", "--verdict", "deny"])
        _ = try bench.cli(["ebpf", "events"])
        let sizes = [10, 60, 300]
        let sender = bench.cluster.pods[2].namespace
        for (index, size) in sizes.enumerated() {
            try sender.sendPayload(Self.payload(index, size: size), to: bench.ip(0), port: 9000 + UInt16(index))
        }
        #expect(try bench.reaches(1, 0, .tcp), "allowed: an allow event at level deny is not written")
        usleep(200_000)
        let folder = try TemporaryFolder("nf-capture")
        let file = "\(folder.path)/denied.pcapng"
        let result = try bench.cli(["ebpf", "events", "--pcap", file, "--proto", "udp", "-o", "json"])
        let events = result.standardOutput.split(separator: "\n").map { try? jsonObject(String($0)) }.compactMap { $0 }
        #expect(events.count == sizes.count, "the JSON lines still print: \(result.standardOutput)")
        var attributes = stat()
        #expect(stat(file, &attributes) == 0 && attributes.st_mode & 0o777 == 0o600, "packets can hold secrets")

        let fields = try Self.run(tshark, ["-r", file, "-T", "fields", "-E", "separator=|", "-e", "frame.len", "-e", "frame.cap_len", "-e", "ip.src",
                                           "-e", "ip.dst", "-e", "udp.dstport", "-e", "udp.payload", "-e", "frame.comment", "-e", "frame.interface_name"])
        #expect(fields.status == 0, "\(fields.error)")
        let rows = fields.output.split(separator: "\n").map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
        #expect(rows.count == sizes.count, "\(fields.output)")
        for (index, size) in sizes.enumerated() {
            let row = try #require(rows.first { $0.count == 8 && $0[4] == String(9000 + index) }, "datagram \(index): \(rows)")
            let length = 14 + 20 + 8 + size
            #expect(row[0] == String(length) && row[1] == String(min(length, 128)), "original and captured length: \(row)")
            #expect(row[2] == bench.ip(2) && row[3] == bench.ip(0))
            let captured = Array(Self.payload(index, size: size).prefix(128 - 42))
            #expect(row[5] == captured.map { String(format: "%02x", $0) }.joined(), "the packet's exact bytes up to the snaplen")
            #expect(row[6] == "shop/pod0 ingress deny by network-policy: isolation by shop/web", "\(row[6])")
            #expect(row[7] == bench.cluster.pods[0].hostInterface)
        }
        let dump = try Self.run(tcpdump, ["-r", file, "-n"])
        #expect(dump.status == 0 && dump.output.split(separator: "\n").count == sizes.count, "\(dump.output) \(dump.error)")

        // A denied TCP connect and ping: the SYN and the echo request are in the capture too.
        #expect(try !bench.reaches(2, 0, .tcp) && !bench.reaches(2, 0, .icmp))
        usleep(200_000)
        let other = "\(folder.path)/tcp-icmp.pcapng"
        _ = try bench.cli(["ebpf", "events", "--pcap", other, "--ip", bench.ip(2)])
        let packets = try Self.run(tshark, ["-r", other, "-T", "fields", "-E", "separator=|", "-e", "frame.len", "-e", "frame.cap_len", "-e", "ip.proto",
                                            "-e", "tcp.flags.syn", "-e", "tcp.dstport", "-e", "icmp.type", "-e", "frame.comment"])
        let frames = packets.output.split(separator: "\n").map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
        #expect(frames.contains { $0.count == 7 && $0[2] == "6" && $0[3] == "1" && $0[4] == String(LoaderCluster.port) }, "the SYN: \(frames)")
        #expect(frames.contains { $0.count == 7 && $0[2] == "1" && $0[5] == "8" }, "the echo request: \(frames)")
        #expect(frames.allSatisfy { $0.count == 7 && $0[1] == String(min(Int($0[0]) ?? 0, 128)) && $0[6].hasPrefix("shop/pod0 ingress deny") }, "\(frames)")
    }

    @Test func aFollowedCaptureStreamsIntoTcpdump() throws {
        guard Privileges.require(), let tcpdump = Self.tool("tcpdump") else { return }
        let bench = try LoaderCluster(pods: 2, ingressDefault: "deny")
        _ = try bench.cli(["ebpf", "events"])
        let folder = try TemporaryFolder("nf-capture")
        let printed = "\(folder.path)/tcpdump.txt", errors = "\(folder.path)/errors.txt"
        // A session of its own, so a failing test can end the whole pipeline.
        let pipeline = try ChildProcess.start("/usr/bin/setsid", ["/bin/sh", "-c", "'\(NetfenceBinary.path)' ebpf events --follow --pcap - "
                                                                  + "--bpffs-root '\(bench.root.path)' 2>'\(errors)' | \(tcpdump) -r - -n -c 3 udp >'\(printed)' 2>/dev/null"])
        defer {
            kill(-pipeline.processID, SIGKILL)
            pipeline.stop(signal: SIGKILL)
        }
        Thread.sleep(forTimeInterval: 0.5)
        try bench.cluster.pods[1].namespace.sendDatagrams(5, to: bench.ip(0), port: 9999)
        let deadline = Date().addingTimeInterval(10)
        while pipeline.isRunning, Date() < deadline { usleep(50_000) }
        #expect(!pipeline.isRunning, "tcpdump -c 3 and netfence finish within 10 s")
        let lines = try String(contentsOfFile: printed, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 3 && lines.allSatisfy { $0.contains("\(bench.ip(1))") && $0.contains(".9999") }, "\(lines)")
        #expect(pipeline.stop() == 0, "\((try? String(contentsOfFile: errors, encoding: .utf8)) ?? "")")
    }

    /// Rotation by size, a logrotate-style move and SIGHUP, and a reader killed and started again:
    /// every event exactly once across all the files, a loss while it was down reported.
    @Test func aFlowLogRotatesReopensAndContinuesAfterAKillWithNothingRepeatedOrLost() throws {
        guard Privileges.require() else { return }
        let bench = try Self.denyingCluster()
        let folder = try TemporaryFolder("nf-capture")
        let path = "\(folder.path)/flows.jsonl"
        func startReader() throws -> Process {
            let reader = try Self.startReader(bench, ["--output-file", path, "--max-size", "8KB", "--max-files", "100",
                                                      "--fields", "sourcePort,bytes,verdict,pod"])
            Thread.sleep(forTimeInterval: 0.4)
            return reader
        }
        var datagrams = NumberedDatagrams(bench)
        func send(_ count: Int) throws { try datagrams.send(count) }
        var reader = try startReader()
        try send(100)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(rename(path, "\(folder.path)/moved.jsonl") == 0)
        kill(reader.processIdentifier, SIGHUP)
        Thread.sleep(forTimeInterval: 0.3)
        try send(100)
        Thread.sleep(forTimeInterval: 0.3)
        reader.stop(signal: SIGKILL, within: 5)
        try send(100)  // while no reader runs: the ring keeps them
        reader = try startReader()
        try send(50)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(reader.stop(signal: SIGTERM, within: 5) && reader.terminationStatus == 0)

        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { !$0.hasPrefix(".") }
        let sizes = names.compactMap { (try? FileManager.default.attributesOfItem(atPath: "\(folder.path)/\($0)"))?[.size] as? Int }
        #expect(sizes.allSatisfy { $0 <= 8192 } && names.count > 3, "rotated by size: \(zip(names, sizes).map { "\($0) \($1)" })")
        var lengths: [Int] = []
        for name in names {
            lengths += try NumberedDatagrams.lengths(inLines: String(contentsOfFile: "\(folder.path)/\(name)", encoding: .utf8)) { object in
                #expect(Set(object.keys).isSubset(of: ["sourcePort", "bytes", "verdict", "pod", "lost", "suppressed", "direction", "seconds"]), "\(object)")
            }
        }
        let sent = datagrams.sent
        #expect(lengths.count == sent, "\(lengths.count) of \(sent) events")
        #expect(Set(lengths) == Set(1...sent), "each exactly once: missing \(Set(1...sent).subtracting(lengths).sorted().prefix(10))")
    }

    /// Readers beside each other: two watchers see every event, with no flow log (they give the
    /// rings back between them) and beside one (which keeps every event exactly once); a second
    /// flow log is refused in one line.
    @Test func watchersSeeEveryEventAndTakeNoneFromTheFlowLog() throws {
        guard Privileges.require() else { return }
        let bench = try Self.denyingCluster()
        let folder = try TemporaryFolder("nf-watch")
        func start(_ arguments: [String], output: String) throws -> Process {
            let files = try [output, output + ".err"].map { path in
                guard FileManager.default.createFile(atPath: path, contents: nil), let file = FileHandle(forWritingAtPath: path) else {
                    throw SystemError("create", path, errno: EIO)
                }
                return file
            }
            return try Self.startReader(bench, ["--fields", "bytes,pod"] + arguments, output: files[0], errors: files[1])
        }
        func lengths(_ path: String) throws -> [Int] { try NumberedDatagrams.lengths(inLines: String(contentsOfFile: path, encoding: .utf8)) }
        var datagrams = NumberedDatagrams(bench)
        func send(_ count: Int) throws -> Set<Int> { try datagrams.send(count) }

        /// Two watchers (their files named `name`), started before `during` runs, see each of the next 150 datagrams.
        func twoWatchersSeeEveryEvent(_ name: String, during: () throws -> Void) throws -> Set<Int> {
            let watchers = try (0..<2).map { try start(["-o", "json"], output: "\(folder.path)/\(name)\($0).jsonl") }
            Thread.sleep(forTimeInterval: 0.4)
            try during()
            let sent = try send(150)
            Thread.sleep(forTimeInterval: 0.8)
            for (index, watcher) in watchers.enumerated() {
                #expect(watcher.stop(signal: SIGTERM, within: 5) && watcher.terminationStatus == 0)
                let seen = try lengths("\(folder.path)/\(name)\(index).jsonl")
                #expect(seen.count == sent.count && Set(seen) == sent, "watcher \(index) \(name): \(seen.count) of \(sent.count)")
            }
            return sent
        }
        /// `loader status`'s word on who consumes the rings.
        func consumer() throws -> String? {
            let status = try jsonObject(bench.cli(["loader", "status", "-o", "json"]).standardOutput)
            return (status["events"] as? [String: Any])?["consumer"] as? String
        }
        _ = try twoWatchersSeeEveryEvent("alone") {
            let named = try consumer()
            #expect(named == nil, "watchers consume nothing: \(named ?? "")")
        }

        let log = "\(folder.path)/flows.jsonl"
        let flowLog = try start(["--output-file", log], output: "\(folder.path)/flowlog.out")
        let beside = try twoWatchersSeeEveryEvent("beside the flow log") {
            let second = try NetfenceBinary.run(["ebpf", "events", "--output-file", "\(folder.path)/other.jsonl", "--bpffs-root", bench.root.path])
            #expect(second.status == 1 && second.standardError.hasPrefix("error: another reader consumes the events under \(bench.root.path)")
                    && second.standardError.split(separator: "\n").count == 1, "\(second.standardError)")
            let named = try consumer()
            #expect(named?.hasPrefix("pid \(flowLog.processIdentifier) (netfence ebpf events --follow") == true, "\(named ?? "none")")
            let text = try bench.cli(["loader", "status"]).standardOutput
            #expect(text.contains("consumed by pid \(flowLog.processIdentifier) (netfence ebpf events"), "\(text)")
        }
        #expect(flowLog.stop(signal: SIGTERM, within: 5) && flowLog.terminationStatus == 0)
        let logged = try lengths(log)
        #expect(logged.count == beside.count && Set(logged) == beside, "the flow log: \(logged.count) of \(beside.count)")
    }

    /// A watcher stopped while the datapath writes more than a CPU's ring beside a flow log that keeps
    /// up says so when it resumes: one `{"skipped":N}` line where the gap is, N the events it did not
    /// see of those the flow log has, and every event after it.
    @Test func aWatcherLappedWhileStoppedSaysWhatItSkippedAndReadsOn() throws {
        guard Privileges.require() else { return }
        let bench = try Self.denyingCluster()
        let folder = try TemporaryFolder("nf-skip")
        let (log, watched) = ("\(folder.path)/flows.jsonl", "\(folder.path)/watcher.jsonl")
        guard FileManager.default.createFile(atPath: watched, contents: nil), let output = FileHandle(forWritingAtPath: watched) else {
            throw SystemError("create", watched, errno: EIO)
        }
        let flowLog = try Self.startReader(bench, ["--output-file", log, "--fields", "bytes,pod"])
        let watcher = try Self.startReader(bench, ["-o", "json", "--fields", "bytes,pod"], output: output)
        Thread.sleep(forTimeInterval: 0.4)
        var datagrams = NumberedDatagrams(bench)
        let before = try datagrams.send(20)
        Thread.sleep(forTimeInterval: 0.3)
        kill(watcher.processIdentifier, SIGSTOP)
        // More than a ring's worth on one CPU, in bursts the flow log keeps up with; 1,000-byte payloads,
        // longer than any numbered one.
        let ringHolds = DatapathLimits.eventCPURingBytes / ABISizes.eventRecord(captured: 0)
        try OneCPU.pinning {
            for _ in 0..<(ringHolds / 400 + 2) {
                try bench.cluster.pods[1].namespace.sendDatagrams(400, to: bench.ip(0), port: 9999, size: 1_000)
                usleep(30_000)
            }
        }
        kill(watcher.processIdentifier, SIGCONT)
        Thread.sleep(forTimeInterval: 0.3)
        let after = try datagrams.send(20)
        Thread.sleep(forTimeInterval: 0.8)
        #expect(watcher.stop(signal: SIGTERM, within: 5) && watcher.terminationStatus == 0)
        #expect(flowLog.stop(signal: SIGTERM, within: 5) && flowLog.terminationStatus == 0)

        /// The lines of a JSON Lines file, split where the numbered datagrams of `before` end and those of `after` begin.
        func gap(_ path: String) throws -> (events: Int, skipped: [Int], ahead: Set<Int>, behind: Set<Int>) {
            var (events, skipped, ahead, behind) = (0, [Int](), Set<Int>(), Set<Int>())
            for line in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
                let object = try jsonObject(String(line))
                if let count = object["skipped"] as? Int {
                    #expect(ahead == before && behind.isEmpty, "the gap comes where the datagrams the watcher missed were")
                    skipped.append(count)
                } else if object["pod"] as? String == "shop/pod0", let length = (object["bytes"] as? Int).map({ $0 - 42 }) {
                    if before.contains(length) { ahead.insert(length) } else if after.contains(length) { behind.insert(length) } else {
                        #expect(ahead == before && behind.isEmpty, "the burst lies between the numbered datagrams")
                        events += 1
                    }
                }
            }
            return (events, skipped, ahead, behind)
        }
        let logged = try gap(log), seen = try gap(watched)
        #expect(logged.events >= ringHolds && logged.skipped.isEmpty && logged.ahead == before && logged.behind == after,
                "the flow log has every event: \(logged.events) of the burst")
        #expect(seen.skipped.count == 1 && seen.ahead == before && seen.behind == after, "\(seen.skipped)")
        let skipped = seen.skipped.first ?? 0
        #expect(skipped > 0 && skipped + seen.events == logged.events,
                "\(skipped) skipped and \(seen.events) seen of the \(logged.events) the flow log has")
    }

    @Test func badCaptureAndFileOptionsAreOneLineErrors() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 1)
        for (words, status) in [(["ebpf", "events", "capture", "--snaplen", "9999"], Int32(64)), (["ebpf", "events", "--max-size", "1MB"], 64),
                                (["ebpf", "events", "--fields", "time,nope"], 64), (["ebpf", "events", "--fields", "time"], 64),
                                (["ebpf", "events", "--output-file", "/tmp/x", "--max-size", "lots"], 64),
                                (["ebpf", "events", "--pcap", "-", "--output-file", "/tmp/x"], 64), (["ebpf", "events", "--aws", "--pcap", "x"], 64),
                                (["ebpf", "events", "--pcap", "/nonexistent-dir/x.pcapng"], 1),
                                (["ebpf", "events", "--output-file", "/proc/version"], 1)] {
            let result = try NetfenceBinary.run(words + ["--bpffs-root", bench.root.path])
            // A runtime failure is one line; a usage error adds the usage line and where help is.
            #expect(result.status == status && result.standardError.split(separator: "\n").count <= (status == 1 ? 1 : 3),
                    "\(words): \(result.status) \(result.standardError)")
            #expect(!result.standardError.contains("Error Domain") && !result.standardError.contains("Fatal"))
        }
    }
}
