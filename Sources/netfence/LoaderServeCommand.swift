import CommandTree
import Foundation
import Glibc
import Loader
import LoaderService

/// `netfence loader serve`: the loader's commands on a Unix socket, without a process per call.
struct LoaderServeCommand: Command {
    static let configuration = CommandConfiguration(
        name: "serve",
        abstract: "Serve the loader's commands over HTTP on a Unix socket, for agents that call often.",
        discussion: """
            An agent that attaches, detaches and applies often pays a process start per call with the commands \
            (most of a small call). serve runs them in this one process: POST /v1/run with a JSON body \
            {"args": ["loader", "attach", "--pod", "shop/web", "--iface", "veth1", "-o", "json"], "input": null} runs that \
            command line and answers {"exitCode": 0, "stdout": "...", "stderr": "..."}: what the command's process \
            would have exited with and written. "input" is what `-f -` reads. Served: loader attach, detach, apply, \
            delete, status (not --wait-applied: it would hold every request behind it) and reconcile, on this \
            server's pin root (--bpffs-root is the server's, not the request's). Requests run one at a time, in \
            arrival order, under the same locks as the commands, so servers, commands and netfence-cni can change the \
            node together. A server also keeps spare tries: empty tries in the policies map that a change of a pod's \
            policy fills instead of inserting one, and into which it turns the tries changes let go once no packet \
            can read them; neither waits for the kernel's grace period (milliseconds) on the caller's path. On a root \
            initialized with --attach tc-then-tcx, a server also moves each pod that has stayed --tcx-after seconds \
            from its tc filters onto tcx links (what every packet of it then saves: the classifier's layers), making \
            the links before it takes the root's lock (each waits for a grace period in the kernel), so an attach \
            costs a filter's price and a move holds the lock only to pin the links and remove the filters. The \
            socket is created 0600 (only root may connect); a stale one is replaced, one another server listens on is \
            refused. Runs until SIGINT or SIGTERM.
            """)

    static let socket = Option<String>(long: "socket", valueName: "path", help: "The Unix socket to listen on.",
                                       default: "/run/netfence/loader.sock")
    static let tcxAfter = Option<Double>(long: "tcx-after", valueName: "seconds",
                                         help: "How long a pod stays on filters before it moves onto tcx links (roots attached tc-then-tcx).",
                                         default: LinkMover.defaultAfter)
    static let arguments = [socket.definition, tcxAfter.definition]
    /// The loader commands a server runs.
    static let served: Set<String> = ["attach", "detach", "apply", "delete", "status", "reconcile"]

    let socket: String
    let tcxAfter: Double
    init(parsed: ParsedArguments) {
        socket = parsed[Self.socket]
        tcxAfter = parsed[Self.tcxAfter]
    }

    func validate() throws {
        if socket.isEmpty || socket.utf8.count >= 108 { throw UsageError("--socket must be a path of 1 to 107 bytes") }
        if !(0...86_400).contains(tcxAfter) { throw UsageError("--tcx-after must be between 0 and 86400 seconds") }
    }

    func run(_ context: CommandContext) throws {
        try NodeAccess.requirePrivileges(context)
        try NodeAccess.requireBPFFilesystem(context)
        let folder = (socket as NSString).deletingLastPathComponent
        if !folder.isEmpty { try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        let root = context.pinRoot.path
        var environment = context.environment
        environment["NETFENCE_BPFFS_ROOT"] = root
        let served = environment
        StopSignals.install()
        // Changes served here leave the tries they let go to the keeper, which also keeps spares ready for them.
        let keeper = TrieKeeper(root: context.pinRoot) { message in
            FileHandle.standardError.write(Data("warning: \(TerminalText.escaped(message))\n".utf8))
        }
        keeper.start()
        defer { keeper.stop() }
        let mover = LinkMover(root: context.pinRoot, after: tcxAfter, keeper: keeper) { message in
            FileHandle.standardError.write(Data("warning: \(TerminalText.escaped(message))\n".utf8))
        }
        mover.start()
        defer { mover.stop() }
        let server: LoaderServer
        do {
            server = try LoaderServer(socketPath: socket) { request in
                keeper.inTurn(wakes: request.args.dropFirst().first != "status") { Self.execute(request, environment: served) }
            }
        } catch let error as ServeError {
            throw RuntimeError(error.description, hint: "serve on another --socket, or stop the server already serving this one")
        }
        context.print("Serving loader \(Self.served.sorted().joined(separator: ", ")) for \(root) on \(socket); until SIGINT or SIGTERM")
        if (try? Loader(root: context.pinRoot).attachment()) == .tcThenTCX {
            context.print("Pods that stay \(tcxAfter.formatted()) s on their filters move onto tcx links (the root attaches tc-then-tcx)")
        }
        while stopRequested == 0 { usleep(100_000) }
        server.stop()
    }

    /// Runs one request's command line in this process, as its own process would have run it.
    static func execute(_ request: LoaderRequest, environment: [String: String]) -> LoaderResponse {
        let args = request.args
        func refused(_ why: String) -> LoaderResponse { LoaderResponse(exitCode: CommandTree.usageExitCode, stdout: "", stderr: "error: \(why)\n") }
        guard args.count >= 2, args[0] == "loader", served.contains(args[1]) else {
            return refused("the server runs 'loader \(served.sorted().joined(separator: "|"))' only")
        }
        if args.contains(where: { $0 == "--bpffs-root" || $0.hasPrefix("--bpffs-root=") }) {
            return refused("the server serves \(environment["NETFENCE_BPFFS_ROOT"] ?? "its pin root"): leave --bpffs-root out")
        }
        if args.contains("--wait-applied") {
            return refused("--wait-applied would hold every request behind it: ask 'loader status --pod NS/NAME' again instead")
        }
        if request.input == nil, args.contains("-") {
            return refused("'-' reads the request's \"input\", and this request has none")  // never the server's own standard input
        }
        var words = args
        var inputDescriptor: Int32 = -1
        defer { if inputDescriptor >= 0 { close(inputDescriptor) } }
        if let input = request.input {
            // What `-f -` reads: a file no one else can open (unlinked at once, 0600), named by its descriptor.
            var template = Array("\(NSTemporaryDirectory())/netfence-request-XXXXXX".utf8CString)
            inputDescriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
            if inputDescriptor >= 0 {
                _ = fcntl(inputDescriptor, F_SETFD, FD_CLOEXEC)
                template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
            }
            guard inputDescriptor >= 0 else { return LoaderResponse(exitCode: 1, stdout: "", stderr: "error: could not hold the request's input\n") }
            let bytes = Array(input.utf8)
            var offset = 0
            while offset < bytes.count {
                let written = bytes.withUnsafeBytes { write(inputDescriptor, $0.baseAddress! + offset, bytes.count - offset) }
                guard written > 0 else { return LoaderResponse(exitCode: 1, stdout: "", stderr: "error: could not hold the request's input\n") }
                offset += written
            }
            lseek(inputDescriptor, 0, SEEK_SET)
            words = words.map { $0 == "-" ? "/proc/self/fd/\(inputDescriptor)" : $0 }
        }
        var output: [UInt8] = [], errors: [UInt8] = []
        let exitCode = Netfence.tree.run(words, environment: environment,
                                         standardOutput: OutputSink { output += $0 }, standardError: OutputSink { errors += $0 })
        return LoaderResponse(exitCode: exitCode, stdout: String(decoding: output, as: UTF8.self), stderr: String(decoding: errors, as: UTF8.self))
    }
}
