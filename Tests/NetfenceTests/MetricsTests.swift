import Datapath
import DatapathModel
import Foundation
import Glibc
import HostKit
import NodeNetwork
import Testing
import TestSupport

/// Parses Prometheus text exposition: every sample must follow its family's
/// HELP and TYPE lines. Returns `name{labels}` → value.
func parsePrometheus(_ text: String) throws -> [String: Double] {
    var samples: [String: Double] = [:]
    var declared = Set<String>()
    for line in text.split(separator: "\n") {
        if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
            let words = line.split(separator: " ")
            try #require(words.count >= 4, "malformed: \(line)")
            if words[1] == "TYPE" { #expect(["counter", "gauge"].contains(String(words[3]))) }
            declared.insert(String(words[2]))
            continue
        }
        let parts = line.split(separator: " ")
        try #require(parts.count == 2, "a sample is NAME[{LABELS}] VALUE: \(line)")
        let series = String(parts[0])
        let name = String(series.prefix { $0 != "{" })
        #expect(name.allSatisfy { $0.isLetter || $0 == "_" }, "metric name \(name)")
        #expect(declared.contains(name), "\(name) has HELP and TYPE before its samples")
        if series.contains("{") {
            #expect(series.hasSuffix("}") && series.range(of: #"^[a-z_]+\{([a-z]+="[^"]*",?)+\}$"#, options: .regularExpression) != nil, "labels: \(series)")
        }
        let value: Double? = Double(String(parts[1]))
        guard let value else {
            Issue.record("\(series) has no numeric value: \(parts[1])")
            continue
        }
        samples[series] = value
    }
    return samples
}

@Suite(.serialized) struct MetricsTests {
    @Test func countersMatchTheTrafficSent() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 2, ingressDefault: "deny")
        let before = try parsePrometheus(try bench.cli(["metrics"]).standardOutput)
        let datapath = try Datapath.open(pinnedUnder: bench.root.path)
        let ifindex = try bench.cluster.node.interfaceIndex(bench.cluster.pods[0].hostInterface)
        let frame = PacketBuilder.frame(from: IPAddress("198.18.9.9")!, to: IPAddress(bench.ip(0))!, .udp(sourcePort: 5, destinationPort: 53))
        _ = try datapath.run(frame, direction: .ingress, ifindex: ifindex, in: bench.cluster.node, repeat: 7)
        let after = try parsePrometheus(try bench.cli(["metrics"]).standardOutput)
        let denied = #"netfence_packets_total{pod="shop/pod0",direction="ingress",verdict="deny"}"#
        #expect((after[denied] ?? 0) - (before[denied] ?? 0) == 7)
        let deniedBytes = #"netfence_bytes_total{pod="shop/pod0",direction="ingress",verdict="deny"}"#
        #expect((after[deniedBytes] ?? 0) - (before[deniedBytes] ?? 0) == Double(7 * frame.count))
        #expect(after["netfence_pods"] == 2)
        #expect(after["netfence_conntrack_capacity"] == 524_288)
        #expect(after["netfence_events_lost_total"] != nil && after["netfence_unparseable_drops_total"] != nil)
    }

    @Test func theServerAnswersScrapersBesideAnIdleConnectionAndOnlyGETMetrics() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 1)
        let port = UInt16(19_000 + UniqueNames.next() % 1000)
        let server = try ChildProcess.start(NetfenceBinary.path, ["metrics", "--listen", "127.0.0.1:\(port)", "--bpffs-root", bench.root.path])
        defer { server.stop() }
        var first: HTTPResponse?
        for _ in 0..<50 where first == nil {
            Thread.sleep(forTimeInterval: 0.1)
            first = httpRequest(port: port, path: "/metrics")
        }
        #expect(first?.status == 200 && first?.contentType == "text/plain; version=0.0.4; charset=utf-8", "\(String(describing: first))")
        #expect(try parsePrometheus(try #require(first?.body))["netfence_pods"] == 1)

        // A client that connects and sends nothing holds no scrape up.
        let idle = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(idle) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        #expect(withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(idle, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0)
        let started = Date()
        let scrape = httpRequest(port: port, path: "/metrics")
        #expect(scrape?.status == 200 && Date().timeIntervalSince(started) < 1, "scraped in \(Date().timeIntervalSince(started)) s beside an idle connection")
        #expect(httpRequest(port: port, path: "/metricsXYZ")?.status == 404)
        #expect(httpRequest(port: port, path: "/")?.status == 404)
        #expect(httpRequest(port: port, path: "/metrics", method: "POST")?.status == 405)
        let many = (0..<8).map { _ in Background { httpRequest(port: port, path: "/metrics")?.status } }
        #expect(try many.map { try $0.result() } == Array(repeating: 200, count: 8), "scrapers at once")
        // The idle connection is closed by the server after its idle timeout.
        var byte: UInt8 = 0
        var limit = timeval(tv_sec: 8, tv_usec: 0)
        setsockopt(idle, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        #expect(recv(idle, &byte, 1, 0) == 0, "closed by the server")
    }

    @Test func aWildcardAddressIsWarnedAbout() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 1)
        let port = 19_000 + UniqueNames.next() % 1000
        let result = try ChildProcess.run("/usr/bin/timeout", ["-s", "TERM", "1", NetfenceBinary.path, "metrics", "--listen", "0.0.0.0:\(port)",
                                                              "--bpffs-root", bench.root.path])
        #expect(result.output.contains("warning: serving on every address of the node"), "\(result.output)")
    }

    /// An address the system refuses is named with its errno in words, not as the socket library spells its call.
    @Test func anAddressThisNodeDoesNotHaveIsRefusedInWords() throws {
        guard Privileges.require() else { return }
        let bench = try LoaderCluster(pods: 1)
        let result = try NetfenceBinary.run(["metrics", "--listen", "198.19.255.254:9464", "--bpffs-root", bench.root.path])
        #expect(result.status == 1)
        #expect(result.standardError == "error: listen on 198.19.255.254:9464: Cannot assign requested address (EADDRNOTAVAIL); "
            + "choose an address of this node and a free port with --listen\n")
    }
}

/// What an HTTP server answered.
struct HTTPResponse: Sendable {
    let status: Int
    let contentType: String?
    let body: String
}

/// `method path` to 127.0.0.1:`port` with a plain socket (Connection: close); nil when nothing answers within 2 s.
func httpRequest(port: UInt16, path: String, method: String = "GET") -> HTTPResponse? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var limit = timeval(tv_sec: 2, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
    let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard connected == 0 else { return nil }
    let request = "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    _ = request.withCString { send(fd, $0, strlen($0), 0) }
    var response = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let received = recv(fd, &buffer, buffer.count, 0)
        if received <= 0 { break }
        response += buffer.prefix(received)
    }
    let text = String(decoding: response, as: UTF8.self)
    guard text.hasPrefix("HTTP/1.1 "), let split = text.range(of: "\r\n\r\n"), let status = Int(text.dropFirst(9).prefix(3)) else { return nil }
    let headers = text[..<split.lowerBound].split(separator: "\r\n")
    let type = headers.first { $0.lowercased().hasPrefix("content-type:") }.map { $0.dropFirst(13).trimmingCharacters(in: .whitespaces) }
    return HTTPResponse(status: status, contentType: type, body: String(text[split.upperBound...]))
}
