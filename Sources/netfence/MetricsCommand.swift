import BPFKit
import CommandTree
import Events
import Foundation
import Glibc
import HostKit
import Loader

/// `netfence metrics`: the datapath's counters for Prometheus.
struct MetricsCommand: Command {
    static let configuration = CommandConfiguration(
        name: "metrics",
        abstract: "Print the datapath's counters in Prometheus text format, or serve them over HTTP.",
        discussion: """
            Packets and bytes by pod, direction and verdict; lost events; parse drops; conntrack entries and \
            capacity; pods; what each DNS proxy counted (spoofed upstream answers among them). -o json prints the \
            same families as a JSON array (name, type, help, samples with labels). --serve serves GET /metrics on \
            \(MetricsServer.defaultAddress) until SIGINT or SIGTERM, --listen ADDRESS:PORT elsewhere: any number of \
            scrapers at once, idle connections closed after 5 s, 404 for other paths, 405 for other methods. Whoever \
            reaches the address reads every pod's counters: the default is loopback; an address pods can reach (or \
            0.0.0.0) shows them all to every pod, and netfence warns.
            """)

    static let serve = Flag(long: "serve", help: "Serve GET /metrics on \(MetricsServer.defaultAddress).")
    static let listen = Option<String?>(long: "listen", valueName: "address:port", help: "Serve /metrics here instead, e.g. [::1]:9464.",
                                        default: nil, showDefault: false)
    static let arguments = [serve.definition, listen.definition]

    let listen: String?
    init(parsed: ParsedArguments) { listen = parsed[Self.listen] ?? (parsed[Self.serve] ? MetricsServer.defaultAddress : nil) }

    func validate() throws {
        if let listen, MetricsServer.parse(listen) == nil {
            throw UsageError("'\(listen)' is not ADDRESS:PORT (for example 127.0.0.1:9464 or [::1]:9464)")
        }
    }

    func run(_ context: CommandContext) throws {
        let loader = try LoaderAccess.open(context)
        guard let listen, let (host, port) = MetricsServer.parse(listen) else {
            switch context.outputFormat {
            case .json: context.print(try JSONOutput.encode(try Metrics.collect(loader)))
            case .table: context.write(try Metrics.render(loader))
            }
            return
        }
        if MetricsServer.isWildcard(host) {
            context.warn("serving on every address of the node: any pod that reaches port \(port) reads every pod's counters")
        }
        let server: MetricsServer
        do {
            server = try MetricsServer(host: host, port: port, loader: loader)
        } catch let error as SystemError {
            throw RuntimeError("\(error)", hint: "choose an address of this node and a free port with --listen")
        } catch {
            throw RuntimeError("listen on \(listen): \(error)", hint: "choose an address of this node and a free port with --listen")
        }
        context.print("Serving http://\(listen)/metrics until SIGINT or SIGTERM")
        StopSignals.install()
        while stopRequested == 0 { usleep(100_000) }
        server.stop()
    }
}
