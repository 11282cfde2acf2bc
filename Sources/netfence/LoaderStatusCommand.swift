import CommandTree
import DatapathModel
import Foundation
import HostKit
import Loader
import PolicyInput

/// `netfence loader status`: the loaded datapath, its pods, objects and drift.
struct LoaderStatusCommand: Command {
    static let configuration = CommandConfiguration(
        name: "status",
        abstract: "Show pods, interfaces, program ids, applied objects, revisions, drift, map fill and the events' state.",
        discussion: """
            Drift is any disagreement between what is stored and what is enforced: a pod whose live policy is not \
            what the stored objects give it (a change was killed half-way, or a map was written by hand), an \
            interface missing one of netfence's filters (or links, attached through tcx), netfence's program on an interface of no pod, a change \
            that did not finish. 'netfence loader reconcile' (or the next change) repairs it. Reads under the pin \
            root's shared lock, so a change another command is making is never seen half-made (waits for it up to \
            --wait-timeout). --check exits 1 when there is drift, after printing.

            The events line says which verdicts the datapath reports and what it captures, how full the per-CPU \
            event rings are, whether a reader (ebpf events --follow, a flow log) sleeps on them, and how many events \
            were lost and not yet reported.

            --pod NS/NAME shows that pod only. With --wait-applied it waits until the pod is attached and its live \
            policy is what every stored object selecting it gives it (both filters in place, no drift), then exits 0; \
            after --timeout seconds it exits 1 saying what is missing. An init container or a readiness gate can call \
            it to know that the pod's policy is in force.
            """)

    static let check = Flag(long: "check", help: "Exit 1 when there is drift (after printing it).")
    static let pod = Option<PodReference?>(long: "pod", help: "Show this pod only (NAMESPACE/NAME).", default: nil, showDefault: false)
    static let waitApplied = Flag(long: "wait-applied", help: "With --pod: wait until the pod enforces every stored object selecting it.")
    static let waitLimit = Option<Double>(long: "timeout", valueName: "seconds", help: "How long --wait-applied waits.", default: 60)
    static let arguments = [check.definition, pod.definition, waitApplied.definition, waitLimit.definition, LockWait.timeout.definition]

    let timeout: Double
    let check: Bool
    let pod: PodReference?
    let waitApplied: Bool
    let waitLimit: Double
    init(parsed: ParsedArguments) {
        timeout = parsed[LockWait.timeout]
        check = parsed[Self.check]
        pod = parsed[Self.pod]
        waitApplied = parsed[Self.waitApplied]
        waitLimit = parsed[Self.waitLimit]
    }

    func validate() throws {
        if waitApplied && pod == nil { throw UsageError("--wait-applied needs --pod NAMESPACE/NAME: it waits for one pod") }
        if !(waitLimit >= 0 && waitLimit <= 86_400) { throw UsageError("--timeout must be between 0 and 86400 seconds") }
    }

    func run(_ context: CommandContext) throws {
        if let pod { return try runForPod(pod, context) }
        let loader = try LoaderAccess.open(context)
        let snapshot = try loader.status(waitingUpTo: timeout)
        let status = LoaderStatus(
            root: context.pinRoot.path, programIDs: try loader.programIDs(), attachment: snapshot.attachment, maps: try loader.mapFill(),
            pods: try podStatuses(snapshot.pods, loader), dnsProxies: try loader.dnsProxies(), events: try loader.eventsState(),
            objects: snapshot.objects.map { ObjectStatus(kind: $0.object.key.kind.rawValue, namespace: $0.object.key.namespace, name: $0.object.key.name,
                                                         policyRef: $0.object.policyRef, mode: $0.object.mode.rawValue, index: $0.index,
                                                         appliedAt: $0.appliedAt) },
            detachedAwaitingSweep: snapshot.awaitingSweep, drift: snapshot.drift, consistent: snapshot.drift.isEmpty)
        switch context.outputFormat {
        case .json:
            context.print(try JSONOutput.encode(status))
        case .table:
            printTable(status, context)
        }
        if check, !status.consistent {
            throw RuntimeError("\(status.drift.count) drift finding(s) under \(status.root)", hint: "run 'netfence loader reconcile'")
        }
    }

    /// What `--pod -o json` prints.
    struct PodReport: Encodable {
        let pod: String
        let attached: Bool
        /// Attached, both filters in place, and its live policy is what the stored objects give it.
        let applied: Bool
        let revision: UInt32?
        let objects: [String]
        /// What keeps it from being applied.
        let missing: [String]
        let waitedSeconds: Double?
    }

    /// One pod; with --wait-applied, polled until it is applied or the time is up.
    private func runForPod(_ pod: PodReference, _ context: CommandContext) throws {
        let loader = try LoaderAccess.open(context)
        let started = HostClock.monotonic.nanoseconds
        var waited: Double { Double(HostClock.monotonic.nanoseconds - started) / 1e9 }
        var report: PodReport
        while true {
            let attached = try loader.status(of: pod, waitingUpTo: timeout)
            let missing = attached?.problems ?? ["not attached on this node"]
            report = PodReport(pod: pod.description, attached: attached != nil, applied: missing.isEmpty, revision: attached?.record?.revision,
                               objects: attached?.objects.map(\.description) ?? [], missing: missing,
                               waitedSeconds: waitApplied ? (waited * 1000).rounded() / 1000 : nil)
            if report.applied || !waitApplied || waited >= waitLimit { break }
            usleep(50_000)
        }
        switch context.outputFormat {
        case .json:
            context.print(try JSONOutput.encode(report))
        case .table:
            let objects = report.objects.isEmpty ? "no object selects it" : "\(report.objects.count) object(s) select it: \(report.objects.joined(separator: ", "))"
            context.print(TerminalText.escaped(report.applied
                ? "\(pod) is applied (revision \(report.revision ?? 0)); \(objects)"
                : "\(pod) is not applied: \(report.missing.joined(separator: "; "))"))
        }
        // --check holds for one pod as for the node: what is not applied is drift.
        if (waitApplied || check) && !report.applied {
            throw RuntimeError("\(pod) " + (waitApplied ? "was not applied within \(waitLimit.formatted()) s" : "is not applied")
                               + ": \(report.missing.joined(separator: "; "))",
                               hint: report.attached ? "see 'netfence loader status'; 'netfence loader reconcile' repairs drift"
                                   : "the pod is attached by 'netfence loader attach' or the netfence-cni plugin")
        }
    }

    /// The pods with their own event level and what rate limits suppressed of their events: three
    /// lookups a pod (reading both whole tables, 12,289 entries, took ~2.4 ms on any node).
    private func podStatuses(_ pods: [Loader.AttachedPod], _ loader: Loader) throws -> [PodStatus] {
        try pods.map { pod in
            var suppressed: [String: [String: UInt64]] = [:]
            for direction in Direction.allCases {
                let counts = try loader.datapath.suppressedEvents(podID: pod.podID, direction: direction)
                guard counts.total > 0 else { continue }
                suppressed[direction.description] = Dictionary(uniqueKeysWithValues: counts.byVerdict.filter { $0.value > 0 }
                    .map { ($0.key.description, $0.value) })
            }
            return PodStatus(pod, eventLevel: try loader.datapath.eventLevel(podID: pod.podID), suppressedEvents: suppressed)
        }
    }

    private func printTable(_ status: LoaderStatus, _ context: CommandContext) {
        context.print("Datapath under \(status.root): nf_to_pod id \(status.programIDs["nf_to_pod"] ?? 0), nf_from_pod id \(status.programIDs["nf_from_pod"] ?? 0), "
                      + "attached through \(status.attachment.summary)\n")
        if status.pods.isEmpty {
            context.print("No pods attached.")
        } else {
            var table = Table(headers: ["POD", "INTERFACE", "NETNS", "IFINDEX", "ID", "REVISION", "INGRESS", "EGRESS", "OBJECTS", "EVENTS",
                                        "SUPPRESSED"])
            for pod in status.pods {
                let suppressed = pod.suppressedEvents.values.flatMap(\.values).reduce(0, +)
                table.append([pod.pod, pod.interface, pod.netns.isEmpty ? "-" : pod.netns, String(pod.ifindex), String(pod.podID),
                              pod.revision.map(String.init) ?? "-", pod.ingress, pod.egress, String(pod.objects.count),
                              pod.eventLevel ?? "node", String(suppressed)])
            }
            context.print(table.render())
        }
        if status.detachedAwaitingSweep > 0 {
            context.print("\n\(status.detachedAwaitingSweep) detached pod(s) keep their ids until a sweep (every \(Loader.sweepEvery)th detach, "
                          + "or 'netfence loader reconcile'); 'netfence conntrack list' shows their flows as orphan.")
        }
        let audited = status.objects.filter { $0.mode == PolicyMode.audit.rawValue }
        context.print("\n\(status.objects.count) object(s) applied" + (audited.isEmpty ? "" : ", \(audited.count) in audit mode (deciding nothing): "
            + audited.map { TerminalText.escaped($0.namespace.isEmpty ? $0.name : "\($0.namespace)/\($0.name)") }.joined(separator: ", ")))
        var mapTable = Table(headers: ["MAP", "ENTRIES", "MAX", "FILL"])
        for map in status.maps { mapTable.append([map.name, String(map.entries), String(map.maxEntries), String(format: "%.1f%%", map.fillPercent)]) }
        context.print("\n" + mapTable.render())
        let events = status.events
        let captured = events.snaplen == 0 ? "no capture" : "\(events.snaplen)-byte captures of \(events.captureVerdicts == "all" ? "every event" : "denied packets")"
        context.print("\nEvents: level \(events.level), \(captured); \(events.rings) ring(s) of \(events.ringBytes / 1024) KiB, "
                      + "\(events.waitingBytes) B waiting (fullest \(String(format: "%.1f", events.fullestPercent))%), "
                      + (events.consumer.map { "consumed by \(TerminalText.escaped($0))" + (events.readerAsleep ? ", asleep" : "") } ?? "no flow log consuming them")
                      + "; \(events.lost) lost"
                      + (events.lostUnreported > 0 ? " (\(events.lostUnreported) not yet reported: 'netfence ebpf events' does)" : ""))
        if status.dnsProxies.isEmpty {
            context.print("\nNo DNS proxy has run (pods with domain rules can resolve nothing).")
        } else {
            for proxy in status.dnsProxies {
                let counted = proxy.counters.isEmpty ? "" : "; \(proxy.counters["queries"] ?? 0) queries, "
                    + "\(proxy.counters["spoofed"] ?? 0) upstream answers dropped as forged, \(proxy.counters["client_limited"] ?? 0) over a client's bound"
                context.print("\nDNS proxy on \(proxy.address) port \(proxy.port): " + (proxy.running
                    ? "running (pid \(proxy.pid), last heartbeat \(String(format: "%.1f", proxy.heartbeatAgeSeconds ?? 0)) s ago)"
                    : "not running: pods with domain rules fail closed") + counted)
            }
        }
        context.print(status.drift.isEmpty ? "\nNo drift." : "\nDrift:\n" + status.drift.map { "  \(TerminalText.escaped($0))" }.joined(separator: "\n"))
    }
}

struct PodStatus: Encodable {
    let pod: String
    let interface: String
    let netns: String
    let ifindex: UInt32
    let podID: UInt32
    let revision: UInt32?
    let ingress: String
    let egress: String
    let objects: [String]
    /// How each hook of its host veth is to carry netfence's program (`tc` or `tcx`), by hook: its ingress
    /// sees what the pod sends. Under tc-then-tcx, `tcx` once `loader serve` moved the pod. A hook that
    /// does not carry it so is in `drift`.
    let hostVethHooks: [String: String]
    /// How what the pod enforces differs from what the stored objects give it.
    let drift: [String]
    /// Its own event level; nil: the node's.
    let eventLevel: String?
    /// Events the rate limits held back since it was attached: direction → verdict → count.
    let suppressedEvents: [String: [String: UInt64]]

    init(_ state: Loader.AttachedPod, eventLevel: EventLevel?, suppressedEvents: [String: [String: UInt64]]) {
        self.eventLevel = eventLevel?.description
        self.suppressedEvents = suppressedEvents
        pod = state.registration.pod.description
        interface = state.registration.interface
        netns = state.registration.netns
        ifindex = state.registration.ifindex
        podID = state.podID
        revision = state.record?.revision
        ingress = state.record?.states[.ingress].map(\.description) ?? "-"
        egress = state.record?.states[.egress].map(\.description) ?? "-"
        objects = state.objects.map(\.description)
        hostVethHooks = Dictionary(uniqueKeysWithValues: state.hookKinds.map { ($0.key.rawValue, $0.value.rawValue) })
        drift = state.enforcementDrift
    }
}

struct ObjectStatus: Encodable {
    let kind: String
    let namespace: String
    let name: String
    let policyRef: String
    /// `enforce`, or `audit`: decides nothing, events say what it would decide.
    let mode: String
    let index: UInt32
    let appliedAt: Date
}

struct LoaderStatus: Encodable {
    let root: String
    let programIDs: [String: UInt32]
    /// How pods' programs sit on their hooks: `tc` (cls_bpf filters) or `tcx` (links).
    let attachment: Attachment
    let maps: [MapFill]
    let pods: [PodStatus]
    let dnsProxies: [DNSProxyState]
    let events: EventsState
    let objects: [ObjectStatus]
    /// Detached pods whose ids and flows wait for a sweep (conntrack list shows the flows as orphan).
    let detachedAwaitingSweep: Int
    let drift: [String]
    /// What is stored and what each pod enforces agree (no drift of any kind).
    let consistent: Bool
}
