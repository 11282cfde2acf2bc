import CNetfenceABI
import Testing

@testable import DatapathModel

/// The loader's state values through their codecs and back, and what the C
/// structs read of them: no kernel needed to know the bytes are right.
@Suite struct StateCodecTests {
    @Test func aRegistrationRoundTripsAndRefusesNamesThatDoNotFit() throws {
        let pod = PodRegistration(ifindex: 42, denyByDefault: [.ingress: true, .egress: false], namespace: "shop", name: "web-0",
                                  interface: "nfveth0", netns: "node")
        let bytes = pod.encode()
        #expect(bytes.count == PodRegistration.size && PodRegistration.decode(bytes) == pod)
        let raw = try #require(nf_pod_registration.load(bytes))
        #expect(raw.ifindex == 42 && ABIArray.text(raw.pod_name) == "web-0" && ABIArray.elements(raw.defaults, of: UInt8.self) == [1, 0])
        #expect(pod.pod == PodReference(namespace: "shop", name: "web-0"))
        var long = pod
        long.name = String(repeating: "a", count: Int(NF_POD_NAME_BYTES))
        #expect(!long.fitsTheABI, "a name as long as the field leaves no room for its NUL: refused, never cut")
        long.name = String(repeating: "a", count: Int(NF_POD_NAME_BYTES) - 1)
        #expect(long.fitsTheABI && PodRegistration.decode(long.encode())?.name == long.name)
        #expect(PodRegistration.decode(Array(bytes.dropLast())) == nil)
    }

    @Test func storedObjectsSplitIntoChunksAndJoinAgain() throws {
        let data = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let chunks = ObjectStoreCodec.chunks(data)
        #expect(chunks.count == 3 && chunks.allSatisfy { $0.count == ObjectStoreCodec.chunkSize })
        #expect(chunks.compactMap(ObjectStoreCodec.chunkData).flatMap { $0 } == data)
        #expect(ObjectStoreCodec.chunks([]).count == 1 && ObjectStoreCodec.chunkData(ObjectStoreCodec.chunks([])[0]) == [])
        var damaged = chunks[0]
        damaged.replaceSubrange(0..<4, with: [0xff, 0xff, 0, 0])
        #expect(ObjectStoreCodec.chunkData(damaged) == nil, "a length past the chunk is damage, not data")
        let manifest = ObjectStoreCodec.manifest(length: 10_000, chunks: 3, appliedNanoseconds: 99)
        #expect(ObjectStoreCodec.decodeManifest(manifest)! == (10_000, 3, 99))
        #expect(ObjectStoreCodec.chunkKey(object: 5, chunk: 2) == nf_object_chunk_key(object_index: 5, chunk: 2).bytes)
    }

    @Test func changesCountersRetiredNamesAndProxyStatsRoundTrip() {
        let change = PendingChange(operation: .apply, processID: 1234, startedNanoseconds: 5)
        #expect(PendingChange.decode(change.encode()) == change && PendingChange.decode(PendingChange.none) == nil)
        let counters = LoaderCounters(lastRevision: 7, nextPodID: 3)
        #expect(LoaderCounters.decode(counters.encode()) == counters && LoaderCounters.decode([]) == LoaderCounters())
        #expect(RetiredObjectCodec.decode(RetiredObjectCodec.encode(policyRef: "shop/web")) == "shop/web")
        let long = String(repeating: "é", count: 400)
        let kept = RetiredObjectCodec.decode(RetiredObjectCodec.encode(policyRef: long))
        #expect(kept.map { $0.utf8.count < RetiredObjectCodec.size && long.hasPrefix($0) } == true, "cut at a character boundary")
        var stats = DNSProxyStats()
        stats[.spoofed] = 9
        stats[.idleClosed] = 2
        #expect(DNSProxyStats.decode(stats.encode()) == stats)
        let proxy = DNSProxyRecord(pid: 77, port: 5353, startedNanoseconds: 12)
        #expect(DNSProxyRecord.decode(proxy.encode()) == proxy)
    }
}
