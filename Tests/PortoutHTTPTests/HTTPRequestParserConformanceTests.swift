import Foundation
import PortoutCore
import Synchronization
import PortoutTestSupport
import Testing

@testable import PortoutHTTP

/// Request-parsing cases from llhttp's test suite (llhttp 9.4.2), with what llhttp decided for each.
struct HTTPRequestParserConformanceTests {
    struct Case: Sendable, CustomTestStringConvertible {
        let id: String
        let mode: String
        let raw: [UInt8]
        let expectsOK: Bool
        let messages: [JSONObject]
        let upgradeOffset: Int?
        let incompleteTail: Bool

        var testDescription: String { self.id }

        /// Requests llhttp accepts in strict mode that this server rejects on purpose: CONNECT, because it never
        /// opens tunnels, and request lines that are not HTTP/1.x (RTSP, ICE and HTTP/0.9).
        var isRejectedByDesign: Bool {
            self.messages.contains { message in
                message["method"]?.stringValue == "CONNECT" || message["protocol"]?.stringValue != "HTTP"
            }
        }
    }

    static let cases: [Case] = {
        let url = Bundle.module.url(forResource: "Data/llhttp-requests", withExtension: "json")!
        let document = try! JSONParser.parse(Array(try! Data(contentsOf: url)))
        return document.objectValue!["cases"]!.arrayValue!.map { entry in
            let object = entry.objectValue!
            return Case(
                id: object["id"]!.stringValue!,
                mode: object["mode"]!.stringValue!,
                raw: Array(Data(base64Encoded: object["raw_base64"]!.stringValue!)!),
                expectsOK: object["expect"]!.stringValue! == "ok",
                messages: object["messages"]!.arrayValue!.map { $0.objectValue! },
                upgradeOffset: object["upgrade_offset"]?.intValue,
                incompleteTail: object["incomplete_tail"]?.boolValue ?? false)
        }
    }()

    static let limits = HTTPParserLimits(maxHeaderBytes: 16_384, maxBodyBytes: 1 << 20)

    /// Parses everything in `bytes`, fed `chunkSize` bytes at a time, the way a connection would.
    static func parseAll(_ bytes: [UInt8], chunkSize: Int) -> (requests: [HTTPRequest], failed: Bool, midRequest: Bool) {
        var parser = HTTPRequestParser(limits: self.limits)
        var buffer = ByteBuffer()
        var requests: [HTTPRequest] = []
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + chunkSize)
            buffer.append(bytes[offset..<end])
            offset = end
            parsing: while true {
                switch parser.parse(&buffer) {
                case .needMoreData: break parsing
                case .head: continue
                case .request(let request):
                    requests.append(request)
                    // A server reads nothing after a request that ends the connection or switches protocols.
                    if !request.head.keepAlive || request.head.requestsUpgrade {
                        return (requests, false, false)
                    }
                case .failure: return (requests, true, false)
                }
            }
        }
        return (requests, false, parser.isMidRequest || !buffer.isEmpty)
    }

    static func matches(_ request: HTTPRequest, _ expected: JSONObject) -> Bool {
        guard request.head.method == expected["method"]?.stringValue,
            request.head.target == expected["url"]?.stringValue,
            expected["protocol"]?.stringValue == "HTTP",
            "\(request.head.version.major).\(request.head.version.minor)" == expected["version"]?.stringValue
        else { return false }
        let headers = expected["headers"]!.arrayValue!.map { pair -> [String] in
            let parts = pair.arrayValue!.map { $0.stringValue! }
            return [parts[0], parts[1].trimmingCharacters(in: CharacterSet(charactersIn: " \t"))]
        }
        guard request.head.headers.map({ [$0.name, $0.value] }) == headers else { return false }
        let body = Array(Data(base64Encoded: expected["body_base64"]!.stringValue!)!)
        return request.body == body
    }

    @Test(arguments: cases)
    func parserAgreesWithLLHTTP(_ testCase: Case) {
        for chunkSize in [testCase.raw.count, 1] {
            let (requests, failed, midRequest) = Self.parseAll(testCase.raw, chunkSize: chunkSize)
            // Never read a request differently from llhttp: each one parsed must match llhttp's message.
            #expect(requests.count <= max(testCase.messages.count, 0) || !testCase.expectsOK, "chunk size \(chunkSize)")
            for (request, expected) in zip(requests, testCase.messages) {
                #expect(Self.matches(request, expected), "chunk size \(chunkSize): \(request.head.method) \(request.head.target)")
            }
            if testCase.isRejectedByDesign {
                #expect(failed, "chunk size \(chunkSize)")
            } else if testCase.expectsOK && testCase.mode == "strict" {
                #expect(!failed, "strict case rejected, chunk size \(chunkSize)")
                #expect(requests.count == testCase.messages.count, "chunk size \(chunkSize)")
                if testCase.incompleteTail {
                    #expect(midRequest, "chunk size \(chunkSize)")
                }
            } else if !testCase.expectsOK {
                // A case llhttp rejects is rejected here too, unless the requests before the fault end the
                // connection, in which case the server never reads the faulty bytes.
                let endedConnection = requests.last.map { !$0.head.keepAlive || $0.head.requestsUpgrade } ?? false
                #expect(failed || endedConnection || midRequest, "error case accepted, chunk size \(chunkSize)")
                #expect(requests.count <= testCase.messages.count, "chunk size \(chunkSize)")
            } else if !failed {
                #expect(requests.count == testCase.messages.count, "lenient case parsed differently, chunk size \(chunkSize)")
            }
        }
    }

    /// One server for every case, with the default head limit, a body limit above any case's body, and short
    /// timeouts for the cases that stop mid-request.
    static let server: RecordingServer = {
        try! RecordingServer(eventLoops: 1) { limits in
            limits.maxHeaderBytes = Limits().maxHeaderBytes
            limits.maxBodyBytes = 1 << 20
            limits.headerTimeoutMs = 1000
            limits.bodyTimeoutMs = 1000
        }
    }()

    /// Sends the raw bytes on a fresh connection, ends the sending side, and returns everything the server sent
    /// until it closed, with the requests it handed to the handler.
    static func exchange(_ raw: [UInt8]) throws -> (requests: [HTTPRequest], response: String) {
        Self.server.handler.requests.withLock { $0.removeAll() }
        let client = try LoopbackClient(port: Self.server.port, readTimeoutSeconds: 5)
        client.send(raw)
        Socket.shutdownWrite(client.fd)
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(client.fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { break }
            received.append(contentsOf: buffer[0..<count])
        }
        return (Self.server.requests, String(decoding: received, as: UTF8.self))
    }

    /// Through a live socket, a case's requests reach the handler exactly as llhttp read them, or the server
    /// refuses with 400 (or 505 for a version it does not speak) and hands over nothing after the refusal.
    @Test(.serialized, arguments: cases)
    func socketAgreesWithLLHTTP(_ testCase: Case) throws {
        let (requests, response) = try Self.exchange(testCase.raw)
        let rejected = response.contains("HTTP/1.1 400 ") || response.contains("HTTP/1.1 505 ")
        for (request, expected) in zip(requests, testCase.messages) {
            #expect(Self.matches(request, expected), "\(request.head.method) \(request.head.target)")
        }
        if testCase.isRejectedByDesign {
            #expect(rejected)
        } else if testCase.expectsOK && testCase.mode == "strict" {
            // Either every request arrives, or the server rejected the first one it would read differently.
            #expect(requests.count == testCase.messages.count || rejected, "\(requests.count) of \(testCase.messages.count)")
        } else if !testCase.expectsOK {
            // No request beyond those llhttp read before the fault reaches the handler.
            #expect(requests.count <= testCase.messages.count)
        }
    }
}
