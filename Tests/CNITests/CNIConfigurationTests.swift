import Foundation
import Testing
@testable import CNI

/// The configuration netfence-cni reads, and the previous result it passes on byte for byte.
struct CNIConfigurationTests {
    @Test func thePreviousResultIsKeptByteForByte() throws {
        let result = #"{ "cniVersion":"1.0.0", "interfaces":[{"name":"veth1"},{"name":"eth0","sandbox":"/run/netns/x"}], "#
            + #""dns":{"nameservers":["10.0.0.10"],"search":["a\"b}]"]}, "ips":[{"address":"10.1.0.2/24","interface":1}], "x":[1,[2,{"y":null}]]}"#
        let text = #"{"cniVersion":"1.0.0","name":"n","type":"netfence-cni","prevResult":"# + result + #","ingressDefault":"deny"}"#
        let configuration = try CNIConfiguration(decoding: Array(text.utf8))
        let previous = try #require(configuration.previousResult)
        #expect(String(decoding: previous.bytes, as: UTF8.self) == result)
        #expect(previous.interfaces.map(\.name) == ["veth1", "eth0"] && previous.interfaces.map(\.sandbox) == [nil, "/run/netns/x"])
        #expect(try CNIPlugin.hostInterface(in: previous) == "veth1")
        #expect(configuration.ingressDefault == .deny && configuration.egressDefault == .allow && configuration.lockTimeout == 30)
    }

    @Test(arguments: [
        ("", 6), ("[]", 6), ("{", 6), (#"{"cniVersion":"1.0.0","prevResult":{},"prevResult":{"interfaces":[]}}"#, 6), (#"{"cniVersion":"1.0.0"} x"#, 6), (#"{"cniVersion":"1.0.0","prevResult":"#, 6),
        (#"{"name":"n"}"#, 7), (#"{"cniVersion":"2.0.0"}"#, 1), (#"{"cniVersion":1}"#, 7),
        (#"{"cniVersion":"1.0.0","prevResult":[]}"#, 7), (#"{"cniVersion":"1.0.0","prevResult":"x"}"#, 7),
        (#"{"cniVersion":"1.0.0","lockTimeout":true}"#, 7), (#"{"cniVersion":"1.0.0","lockTimeout":1e9}"#, 7),
        (#"{"cniVersion":"1.0.0","egressDefault":"open"}"#, 7),
    ])
    func badConfigurationsAreTheSpecsCodes(text: String, code: Int) {
        #expect(throws: CNIError.self) { try CNIConfiguration(decoding: Array(text.utf8)) }
        do {
            _ = try CNIConfiguration(decoding: Array(text.utf8))
        } catch {
            #expect(error.code.rawValue == code, "\(text): \(error)")
        }
    }

    @Test func argumentsAreKeyValuePairs() throws {
        #expect(try CNIRequest.parseArguments("IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;;")
            == ["IgnoreUnknown": "1", "K8S_POD_NAMESPACE": "shop", "K8S_POD_NAME": "web-0"])
        #expect(try CNIRequest.parseArguments("A=b=c") == ["A": "b=c"])
        #expect(throws: CNIError.self) { try CNIRequest.parseArguments("novalue") }
    }

    /// ADD and CHECK name the pod as kubelet does; a name no cluster admits is refused, naming the variable.
    @Test func podNamesInCNIArgsAreKubernetesNames() throws {
        func request(_ arguments: String) throws -> CNIRequest {
            try CNIRequest(environment: ["CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0",
                                         "CNI_ARGS": arguments],
                           standardInput: Array(#"{"cniVersion":"1.0.0","name":"n","type":"netfence-cni"}"#.utf8))
        }
        #expect(try CNIPlugin.podReference(request("K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0")).description == "shop/web-0")
        #expect(throws: CNIError.self) { try CNIPlugin.podReference(request("K8S_POD_NAMESPACE=shop;K8S_POD_NAME=Web_0")) }
        let hostile = try request("K8S_POD_NAMESPACE=sh\u{1b}op;K8S_POD_NAME=web-0")
        let error = #expect(throws: CNIError.self) { try CNIPlugin.podReference(hostile) }
        #expect(error?.description.hasPrefix("K8S_POD_NAMESPACE 'sh\\x1bop' is not a Kubernetes namespace") == true, "\(String(describing: error))")
    }
}
