import CLibBPF
import CNetfenceShim
import Glibc
import HostKit

/// What the kernel reports about a loaded program (`bpf_prog_info`).
public struct ProgramInfo: Sendable, Equatable {
    public let id: UInt32
    public let type: ProgramType
    /// The name the object gave it (the kernel keeps 15 characters).
    public let name: String
    /// The kernel's hash of the instructions, as 16 hex digits.
    public let tag: String
    /// When it was loaded, in ns since boot (``HostClock``.boot).
    public let loadTimeNanoseconds: UInt64
    public let ownerUID: UInt32
    public let mapIDs: [UInt32]
    public let btfID: UInt32
    public let translatedBytes: UInt32
    public let jitedBytes: UInt32
    /// Instructions the verifier processed loading it, of its budget (`verifierBudget`); 0 from kernels before 5.16.
    public let verifiedInstructions: UInt32
    /// Runs counted while run-time statistics were enabled (see ``StatisticsSession``).
    public let runCount: UInt64
    /// Total ns spent in those runs.
    public let runTimeNanoseconds: UInt64

    /// Instructions the verifier processes at most loading a program with CAP_BPF
    /// (`BPF_COMPLEXITY_LIMIT_INSNS`): a program that needs more fails to load.
    public static let verifierBudget = 1_000_000
}

/// A loaded BPF program, owning one file descriptor to it.
public final class BPFProgram: @unchecked Sendable {
    /// The descriptor that keeps the program alive while this object lives.
    public let descriptor: FileDescriptor

    /// Wraps a descriptor the caller hands over.
    public init(descriptor: FileDescriptor) {
        self.descriptor = descriptor
    }

    /// Opens the program with kernel id `id` (`BPF_PROG_GET_FD_BY_ID`).
    public convenience init(id: UInt32) throws {
        let fd = try check(bpf_prog_get_fd_by_id(id), "open program", "id \(id)")
        self.init(descriptor: FileDescriptor(owning: fd))
    }

    /// The ids of every program loaded on the host, ascending (`BPF_PROG_GET_NEXT_ID`).
    public static func allIDs() throws -> [UInt32] {
        try walkIDs(objectKind: "programs", next: bpf_prog_get_next_id)
    }

    /// Reads `bpf_prog_info`, including the ids of the maps it uses.
    public func info() throws -> ProgramInfo {
        var info = zeroed(bpf_prog_info.self)
        var length = UInt32(MemoryLayout<bpf_prog_info>.size)
        try check(bpf_obj_get_info_by_fd(descriptor.rawValue, &info, &length), "read program info", "fd \(descriptor.rawValue)")

        var mapIDs = [UInt32](repeating: 0, count: Int(info.nr_map_ids))
        if !mapIDs.isEmpty {
            var second = zeroed(bpf_prog_info.self)
            second.nr_map_ids = UInt32(mapIDs.count)
            let result = mapIDs.withUnsafeMutableBufferPointer { buffer in
                second.map_ids = UInt64(UInt(bitPattern: buffer.baseAddress))
                return bpf_obj_get_info_by_fd(descriptor.rawValue, &second, &length)
            }
            try check(result, "read map ids of program", "id \(info.id)")
            mapIDs = Array(mapIDs.prefix(Int(second.nr_map_ids)))
        }
        let tag = withUnsafeBytes(of: info.tag) { $0.map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined() }
        return ProgramInfo(
            id: info.id, type: ProgramType(rawValue: info.type), name: string(fromCArray: info.name),
            tag: tag, loadTimeNanoseconds: info.load_time, ownerUID: info.created_by_uid,
            mapIDs: mapIDs, btfID: info.btf_id, translatedBytes: info.xlated_prog_len,
            jitedBytes: info.jited_prog_len, verifiedInstructions: info.verified_insns, runCount: info.run_cnt, runTimeNanoseconds: info.run_time_ns)
    }

    /// What one `BPF_PROG_TEST_RUN` returned.
    public struct TestRunResult: Sendable, Equatable {
        /// The program's return value (a TC_ACT_* verdict for tc programs).
        public let verdict: UInt32
        /// Mean ns per run, as the kernel measured it.
        public let nanosecondsPerRun: UInt32
    }

    /// Runs the program on `packet` (an Ethernet frame) `repeat` times in the kernel
    /// (`BPF_PROG_TEST_RUN`). `ifindex` sets `__sk_buff.ifindex` for tc programs and
    /// must name an interface in `namespace` (nil: this process's; 0: the kernel uses 1).
    public func testRun(packet: [UInt8], repeat count: UInt32 = 1, ifindex: UInt32 = 0,
                        in namespace: NetworkNamespace? = nil) throws -> TestRunResult {
        var verdict: UInt32 = 0, duration: UInt32 = 0
        let result = try NetworkNamespace.withDescriptor(of: namespace) { nsfd in
            packet.withUnsafeBytes {
                nf_prog_test_run(nsfd, descriptor.rawValue, $0.baseAddress, UInt32($0.count), count, ifindex, &verdict, &duration)
            }
        }
        try check(result, "test-run program", "fd \(descriptor.rawValue)")
        return TestRunResult(verdict: verdict, nanosecondsPerRun: duration)
    }

    /// One run of a tc program on `packet` with a context (`skb->ifindex`, `skb->mark`, `skb->cb`):
    /// the TC action it returned and the five `cb` words as it left them.
    public func testRun(packet: [UInt8], ifindex: UInt32, mark: UInt32, cb: [UInt32], in namespace: NetworkNamespace? = nil) throws
        -> (verdict: UInt32, cb: [UInt32]) {
        var verdict: UInt32 = 0
        var words = (cb + [UInt32](repeating: 0, count: 5)).prefix(5).map { $0 }
        let result = try NetworkNamespace.withDescriptor(of: namespace) { nsfd in
            packet.withUnsafeBytes { bytes in
                words.withUnsafeMutableBufferPointer {
                    nf_prog_test_run_context(nsfd, descriptor.rawValue, bytes.baseAddress, UInt32(bytes.count), ifindex, mark, $0.baseAddress,
                                             &verdict)
                }
            }
        }
        try check(result, "test-run program", "fd \(descriptor.rawValue)")
        return (verdict, words)
    }

    /// Pins the program at `path` on bpffs (`BPF_OBJ_PIN`).
    public func pin(at path: String) throws {
        try check(bpf_obj_pin(descriptor.rawValue, path), "pin program to", path)
    }
}

/// Walks a `BPF_*_GET_NEXT_ID` sequence to its end (ENOENT).
func walkIDs(objectKind: String, next: (UInt32, UnsafeMutablePointer<UInt32>) -> Int32) throws -> [UInt32] {
    var ids: [UInt32] = []
    var current: UInt32 = 0
    while true {
        var following: UInt32 = 0
        let result = next(current, &following)
        if result == -ENOENT { return ids }
        try check(result, "list", "\(objectKind) on this host")
        ids.append(following)
        current = following
    }
}
