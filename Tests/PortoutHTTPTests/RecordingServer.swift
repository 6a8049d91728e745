import Foundation
import PortoutCore
import PortoutTestSupport

@testable import PortoutHTTP

/// An `HTTPServer` on an ephemeral 127.0.0.1 port whose handler records every request it is given and responds
/// to each with 200 and the text `METHOD target bodyLength`, after 300 ms for the path `/slow`, and for the path
/// `/held` only once the test signals `release`.
///
/// The limits start from the defaults with a 1 KiB head and a 4 KiB body, so that limit tests send little.
final class RecordingServer: Sendable {
    final class Handler: HTTPRequestHandler, Sendable {
        let requests = Locked<[HTTPRequest]>([])
        let release = DispatchSemaphore(value: 0)

        func checkHead(_ head: HTTPRequestHead, peer: String) -> HTTPResponse? {
            nil
        }

        func handle(_ request: HTTPRequest, peer: String, responder: HTTPResponder) {
            self.requests.withLock { $0.append(request) }
            let text = "\(request.head.method) \(request.head.target) \(request.body.count)"
            if request.head.path == "/slow" {
                DispatchQueue.global().asyncAfter(deadline: .now() + 0.3) {
                    responder.respond(HTTPResponse(status: 200, body: Array(text.utf8)))
                }
            } else if request.head.path == "/held" {
                DispatchQueue.global().async {
                    self.release.wait()
                    responder.respond(HTTPResponse(status: 200, body: Array(text.utf8)))
                }
            } else {
                responder.respond(HTTPResponse(status: 200, body: Array(text.utf8)))
            }
        }
    }

    let server: HTTPServer
    let handler = Handler()

    init(eventLoops: Int = 2, _ change: (inout Limits) -> Void = { _ in }) throws {
        var limits = Limits()
        limits.maxHeaderBytes = 1024
        limits.maxBodyBytes = 4096
        change(&limits)
        self.server = HTTPServer(
            configuration: HTTPServer.Configuration(host: "127.0.0.1", port: 0, eventLoops: eventLoops, limits: limits),
            handler: self.handler,
            logger: Logger(level: .error)
        )
        try self.server.start()
    }

    var port: Int {
        self.server.port
    }

    var connectionCount: Int {
        self.server.connectionCount
    }

    /// The requests the handler was given so far, in the order it got them.
    var requests: [HTTPRequest] {
        self.handler.requests.withLock { $0 }
    }

    var requestTargets: [String] {
        self.requests.map(\.head.target)
    }

    func shutdown() {
        self.server.shutdown()
    }
}

extension LoopbackClient.Response {
    var text: String {
        String(decoding: self.body, as: UTF8.self)
    }
}
