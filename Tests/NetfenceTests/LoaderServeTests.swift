import Foundation
import Glibc
import HostKit
import LoaderService
import Testing
import TestSupport

/// `loader serve`: the loader's commands over its Unix socket, as an agent drives them.
@Suite(.serialized) struct LoaderServeTests {
    /// A server on `bench`'s pin root, stopped (and its socket gone) when the test ends.
    final class Server: @unchecked Sendable {
        let socket: String
        let process: ChildProcess.Running

        init(root: String, socket: String = "\(NSTemporaryDirectory())/nf-serve-\(UniqueNames.make("s")).sock", options: [String] = []) throws {
            self.socket = socket
            process = try ChildProcess.start(NetfenceBinary.path, ["loader", "serve", "--socket", socket, "--bpffs-root", root] + options)
            for _ in 0..<1000 where (try? LoaderClient(socketPath: socket)) == nil { usleep(10_000) }
        }

        func client() throws -> LoaderClient { try LoaderClient(socketPath: socket) }

        deinit {
            process.stop()
            unlink(socket)
        }
    }

    @Test func anAgentAttachesAppliesAndDetachesThroughTheSocket() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        let server = try Server(root: bench.root.path)
        var mode = stat()
        #expect(stat(server.socket, &mode) == 0 && mode.st_mode & 0o777 == 0o600, "only root may connect")
        let client = try server.client()
        let web = policyEndpoint("web", selecting: [0], isolation: ["Ingress"], ingress: rule("\(bench.ip(1))/32", ports: [("TCP", 8080, nil)]))
        let applied = try client.run(LoaderRequest(args: ["loader", "apply", "-f", "-", "-o", "json"], input: web))
        #expect(applied.exitCode == 0 && applied.stderr.isEmpty, "\(applied)")
        #expect(try jsonObject(applied.stdout)["objects"] as? [String] == ["PolicyEndpoint shop/web"])
        try bench.expectMatrix(allowed: everyEdge(pods: 2).subtracting(edges("1>0 *")).union(edges("1>0 tcp")), scope: everyEdge(pods: 2), "served apply")

        // The same words, the same answers as the command's process.
        let served = try client.run(LoaderRequest(args: ["loader", "status", "--pod", "shop/pod0", "-o", "json"]))
        let command = try bench.cli(["loader", "status", "--pod", "shop/pod0", "-o", "json"])
        #expect(served.exitCode == 0 && served.stdout == command.standardOutput)
        let missing = try client.run(LoaderRequest(args: ["loader", "detach", "--pod", "shop/nobody"]))
        let missingCommand = try NetfenceBinary.run(["loader", "detach", "--pod", "shop/nobody", "--bpffs-root", bench.root.path])
        #expect(missing.exitCode == 1 && missing.exitCode == missingCommand.status && missing.stderr == missingCommand.standardError)

        #expect(try client.run(LoaderRequest(args: ["loader", "detach", "--pod", "shop/pod0"])).exitCode == 0)
        try bench.expectMatrix(allowed: everyEdge(pods: 2), scope: everyEdge(pods: 2), "detached through the socket")
        let reattached = try client.run(LoaderRequest(args: ["loader", "attach", "--pod", "shop/pod0", "--iface", bench.cluster.pods[0].hostInterface,
                                                             "--netns", bench.cluster.node.name, "-o", "json"]))
        #expect(reattached.exitCode == 0, "\(reattached)")
        #expect(try !bench.reaches(1, 0, .udp) && bench.reaches(1, 0, .tcp), "the stored object is in force again")
    }

    @Test func twoAgentsAtOnceBothLandAndCommandsInterleave() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2)
        let server = try Server(root: bench.root.path)
        let failures = NSLock(), done = DispatchGroup()
        nonisolated(unsafe) var problems: [String] = []
        for (index, pod) in [0, 1].enumerated() {
            done.enter()
            Thread.detachNewThread {
                defer { done.leave() }
                do {
                    let client = try server.client()
                    for round in 0..<5 {
                        let object = policyEndpoint("agent\(index)", selecting: [pod], isolation: ["Ingress"],
                                                    ingress: rule("198.19.\(round).0/24"))
                        let response = try client.run(LoaderRequest(args: ["loader", "apply", "-f", "-"], input: object))
                        if response.exitCode != 0 { failures.withLock { problems.append(response.stderr) } }
                    }
                } catch {
                    failures.withLock { problems.append("\(error)") }
                }
            }
        }
        // A command beside the server takes the same lock.
        try bench.cli(["loader", "apply"], input: policyEndpoint("beside", selecting: [0], isolation: ["Egress"], egress: rule("198.19.9.0/24")))
        done.wait()
        #expect(problems.isEmpty, "\(problems)")
        let status = try jsonObject(try bench.cli(["loader", "status", "-o", "json"]).standardOutput)
        let names = (status["objects"] as? [[String: Any]])?.compactMap { $0["name"] as? String }.sorted()
        #expect(names == ["agent0", "agent1", "beside"] && status["consistent"] as? Bool == true, "\(status)")
    }

    @Test func whatTheServerDoesNotServeIsRefusedInWords() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 1)
        let server = try Server(root: bench.root.path)
        let client = try server.client()
        for args in [["ebpf", "progs"], ["loader", "init"], ["loader", "reset"], ["loader", "serve"], [],
                     ["loader", "status", "--bpffs-root", "/sys/fs/bpf/other"], ["loader", "status", "--pod", "shop/pod0", "--wait-applied"],
                     ["loader", "apply", "-f", "-"]] {
            let response = try client.run(LoaderRequest(args: args))
            #expect(response.exitCode == 64 && response.stdout.isEmpty && response.stderr.hasPrefix("error: ")
                    && response.stderr.filter { $0 == "\n" }.count == 1, "\(args): \(response)")
        }
        let notJSON = try client.send(raw: Array("loader status".utf8))
        #expect(notJSON.status == 400 && String(decoding: notJSON.body, as: UTF8.self).contains("\"error\""))
        #expect(try client.send(raw: [], method: "GET").status == 405)
        #expect(try client.send(raw: [], path: "/v1/other").status == 404)
        #expect(try client.run(LoaderRequest(args: ["loader", "status"])).exitCode == 0, "the connection serves on after refusals")

        // A second server on the same socket is refused; what is not a socket is never replaced.
        let second = try NetfenceBinary.run(["loader", "serve", "--socket", server.socket, "--bpffs-root", bench.root.path])
        #expect(second.status == 1 && second.standardError.contains("another server listens on \(server.socket)"), "\(second.standardError)")
        for wait in ["-1", "nan", "86401"] {
            let refused = try NetfenceBinary.run(["loader", "serve", "--socket", server.socket + "-x", "--tcx-after", wait, "--bpffs-root", bench.root.path])
            #expect(refused.status == 64 && refused.standardError.hasPrefix("Error: ") && refused.standardError.contains("--tcx-after"),
                    "\(wait): \(refused.standardError)")
        }
        let file = "\(NSTemporaryDirectory())/nf-serve-file-\(getpid())"
        try "keep me".write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file) }
        let onFile = try NetfenceBinary.run(["loader", "serve", "--socket", file, "--bpffs-root", bench.root.path])
        #expect(onFile.status == 1 && onFile.standardError.contains("is not a socket"))
        #expect(try String(contentsOfFile: file, encoding: .utf8) == "keep me")

        // Killed, it leaves its socket: the next server replaces the stale one.
        server.process.stop(signal: SIGKILL)
        let next = try Server(root: bench.root.path, socket: server.socket)
        #expect(try next.client().run(LoaderRequest(args: ["loader", "status"])).exitCode == 0)
    }
}
