import Foundation
import PortoutCore
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
}
