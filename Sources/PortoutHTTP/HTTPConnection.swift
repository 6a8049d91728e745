import CLinuxShim
import PortoutCore

/// One client connection: reads requests, hands them to the handler one at a time and writes responses in order.
///
/// Only one request is with the handler at a time. While it is, the connection stops polling for input, so
/// pipelined requests wait in the socket and the receive buffer and their responses go out in request order.
///
/// Thread-safety: confined to its loop's thread.
final class HTTPConnection: EventLoopHandler {
    enum Phase {
        /// Between requests: the idle timeout runs and a close by the client is normal.
        case awaitingRequest
        /// Some head bytes arrived: the header timeout runs from the first of them.
        case readingHead
        /// The head is parsed and the body timeout runs.
        case readingBody
        /// The handler has the request.
        case handling
        /// The last response is queued; after it is written the connection half-closes and drains input.
        case closing
    }

    let id: UInt64
    let fd: Int32
    let peer: String
    /// The address that `maxConnectionsPerClient` counts by: the peer's IPv4 address or IPv6 /64.
    let client: String
    /// The usage of `client`, to which this connection charges its buffered bytes.
    let usage: ClientUsage
    unowned let owner: LoopConnections
    private(set) var phase = Phase.awaitingRequest
    /// Monotonic milliseconds after which `deadlinePassed()` acts.
    private(set) var deadline: UInt64
    private var requestParser: HTTPRequestParser
    private var received = ByteBuffer()
    private var outbound: [UInt8] = []
    private var outboundOffset = 0
    private var pollingEvents: UInt32 = 0
    private var peerClosedInput = false
    private var hasHalfClosed = false
    /// Set once the descriptor is closed. Its number may already belong to another socket or file opened by any
    /// thread, so nothing may read, write or poll it after that.
    private var isClosed = false
    /// The connection settings of the request being handled.
    private var keepAlive = true
    private var isHeadRequest = false
    private var isHTTP10 = false
    /// Bytes read and counted in the server's `bufferedRequestBytes` that have had no response yet: the request
    /// under way and any read ahead of it. `settleCharge` lowers it to what is still buffered at each response.
    private var chargedBytes = 0
    /// Set while the handler has a request and the server has no room to read ahead; cleared by the response.
    private var isInputPaused = false
    /// A response chosen from the head alone, sent in place of calling the handler when the request completes.
    private var earlyResponse: HTTPResponse?
    /// The method, path and start of the request being handled, for the access log.
    private var requestMethod = ""
    private var requestPath: Substring = ""
    private var requestStartedAt: UInt64 = 0

    private static let inputEvents = EPOLLIN.rawValue | EPOLLRDHUP.rawValue
    private static let lingerMs: UInt64 = 2000

    init(id: UInt64, fd: Int32, peer: String, client: String, usage: ClientUsage, owner: LoopConnections) {
        self.id = id
        self.fd = fd
        self.peer = peer
        self.client = client
        self.usage = usage
        self.owner = owner
        self.requestParser = HTTPRequestParser(limits: owner.server.configuration.parserLimits)
        self.deadline = owner.loop.now + owner.server.configuration.idleTimeoutMs
        self.pollingEvents = Self.inputEvents
    }

    private var configuration: HTTPServer.Configuration {
        self.owner.server.configuration
    }

    func handleEvents(_ events: UInt32) {
        if events & EPOLLOUT.rawValue != 0 {
            self.flush()
        }
        // A failed write closes the connection, and the same event usually reports the hang-up that caused it.
        guard !self.isClosed else { return }
        if events & (EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 && self.phase == .handling {
            // Both directions are gone, so the response could not be delivered. epoll reports these whether or
            // not they are polled for, so leaving the socket open would wake the loop until the handler responds.
            self.close()
            return
        }
        if events & (EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 {
            self.readAvailable()
        }
    }

    // MARK: Reading

    private func readAvailable() {
        let buffer = self.owner.loop.readBuffer
        while !self.isClosed && !self.peerClosedInput && self.received.readableCount < self.maxBuffered {
            // While the handler has a request, reading stops instead of refusing, since that request's response must
            // go out first. Input polling resumes after the response.
            if self.phase == .handling && self.owner.server.bufferRoom(for: self.usage) < buffer.count {
                self.isInputPaused = true
                break
            }
            // Otherwise a read takes no more than the room left, so that bytes pipelined behind a request that fits
            // cannot get it rejected. With no room left, one byte is read, and if one arrived its charge fails.
            var readLimit = buffer.count
            if self.phase != .handling && self.phase != .closing {
                readLimit = min(buffer.count, max(1, self.owner.server.bufferRoom(for: self.usage)))
            }
            let result: IOResult<Int>
            do {
                result = try Socket.read(self.fd, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<readLimit]))
            } catch {
                // ECONNRESET and the like: nothing more can be sent either.
                self.close()
                return
            }
            guard case .done(let count) = result else { break }
            if count == 0 {
                self.peerClosedInput = true
                break
            }
            if self.phase != .closing {
                // While the handler has a request, the room was checked before the read, so these are not refused.
                // NOTE: loops reading at the same moment can together pass the limit by up to a read each. Taking
                // the room before reading closed that gap, but every such wake-up then took 64 KiB, which could
                // reject another client's request that fitted.
                if let limit = self.owner.server.chargeBuffered(count, client: self.usage, force: self.phase == .handling) {
                    self.rejectBufferFull(limit)
                    return
                }
                self.chargedBytes += count
                self.received.append(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            }
            // Otherwise the connection is draining after its final response. The bytes are discarded so that the
            // kernel does not send a reset that could destroy the response before the client reads it.
            if count < buffer.count {
                // A short read almost always drained the socket. Polling is level-triggered, so any rest wakes
                // the loop again, and the read that would only return EAGAIN is saved. A read cut to the room
                // left also ends here, so that the requests it completed are parsed before anything more is read.
                break
            }
        }
        if self.phase == .closing {
            if self.peerClosedInput {
                self.close()
            }
            return
        }
        self.processReceived()
        if self.peerClosedInput && self.phase != .handling && self.phase != .closing && self.outbound.isEmpty {
            // The client finished sending. Every request it sent has a response, and a partial one never will.
            self.close()
            return
        }
        self.updatePolling()
    }

    /// The most received bytes kept unparsed: the parser bounds each request, and this bounds what a client may
    /// pipeline behind the one being handled.
    private var maxBuffered: Int {
        self.configuration.parserLimits.maxHeaderBytes + self.configuration.parserLimits.maxBodyBytes + 65_536
    }

    /// Parses buffered bytes until a request goes to the handler or more data is needed.
    private func processReceived() {
        defer { self.compactReceived() }
        while !self.isClosed && self.phase != .handling && self.phase != .closing && self.outbound.isEmpty {
            let event = self.requestParser.parse(&self.received)
            // Chunk framing is parsed away, unlike body bytes, so it stops counting at once. Otherwise a body
            // sent in one-byte chunks would count several times its size against maxBufferedRequestBytes.
            let framing = min(self.requestParser.takeFramingBytes(), self.chargedBytes)
            if framing > 0 {
                self.chargedBytes -= framing
                self.owner.server.releaseBuffered(framing, client: self.usage)
            }
            switch event {
            case .needMoreData:
                self.noteProgress()
                return
            case .head(let head):
                self.begin(head)
            case .request(let request):
                self.dispatch(request)
            case .failure(let error):
                self.reject(error)
                return
            }
        }
    }

    private func noteProgress() {
        let now = self.owner.loop.now
        if self.requestParser.isReadingBody {
            if self.phase != .readingBody {
                self.phase = .readingBody
                self.deadline = now + self.configuration.bodyTimeoutMs
            }
        } else if self.requestParser.isMidRequest {
            if self.phase != .readingHead {
                self.phase = .readingHead
                self.deadline = now + self.configuration.headerTimeoutMs
            }
        }
    }

    private func begin(_ head: HTTPRequestHead) {
        // RFC 9112 section 3.2: an HTTP/1.1 request carries exactly one Host field.
        if head.version == .http1_1 && head.headers.count(of: "Host") != 1 {
            self.reject(.badRequest("an HTTP/1.1 request needs exactly one Host header"))
            return
        }
        self.keepAlive = head.keepAlive && !head.requestsUpgrade
        self.requestMethod = head.method
        self.requestPath = head.path
        self.requestStartedAt = self.owner.loop.now
        self.isHeadRequest = head.method == "HEAD"
        self.isHTTP10 = head.version == .http1_0
        self.phase = .readingBody
        self.deadline = self.owner.loop.now + self.configuration.bodyTimeoutMs
        let hasBody: Bool
        switch head.framing {
        case .none, .contentLength(0): hasBody = false
        default: hasBody = true
        }
        // The handler's rejection comes first, so that an unknown path or a missing credential gets its 404 or
        // 401 whatever the request expects.
        var early = self.owner.server.handler.checkHead(head, peer: self.peer)
        if early == nil && head.hasUnsupportedExpectation {
            // RFC 9110 section 10.1.1 allows a 417 response to an expectation other than 100-continue.
            self.owner.server.logger.info(
                "request rejected", ["reason": "unsupported expectation", "status": 417, "peer": .string(self.peer)])
            early = HTTPResponse(error: .expectationFailed())
        }
        if let response = early {
            if hasBody {
                // The unread body would be taken for the next request, so the connection ends with this response.
                self.keepAlive = false
                self.phase = .handling
                self.send(response)
            } else {
                self.earlyResponse = response
            }
            return
        }
        if hasBody && head.expectsContinue {
            self.queue(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
            self.flush()
        }
    }

    /// Responds 503 and ends the connection, because the bytes just read would pass `maxBufferedRequestBytes` or
    /// the client's share of it. They are dropped, so the connection cannot go on: the rest of its stream would be
    /// misread.
    private func rejectBufferFull(_ limit: HTTPServer.BufferLimit) {
        let reason: String
        switch limit {
        case .total:
            self.owner.server.bufferFullRejections.add(1, ordering: .relaxed)
            reason = "buffered request bytes reached limits.maxBufferedRequestBytes"
        case .clientShare:
            self.owner.server.clientShareRejections.add(1, ordering: .relaxed)
            reason = "this client's buffered request bytes reached its share of limits.maxBufferedRequestBytes"
        }
        self.owner.server.logger.warning(
            "request rejected", ["reason": .string(reason), "status": 503, "peer": .string(self.peer)])
        self.keepAlive = false
        self.isHeadRequest = false
        self.phase = .handling
        self.send(HTTPResponse(
            error: .serviceUnavailable(
                code: "serverBusy", "The server has too many request bytes waiting for responses. Retry shortly.",
                retryAfterSeconds: 1),
            closeConnection: true))
    }

    /// Keeps charged only the bytes still buffered, which belong to requests that have no response yet.
    private func settleCharge() {
        let buffered = self.received.readableCount
        if self.chargedBytes > buffered {
            self.owner.server.releaseBuffered(self.chargedBytes - buffered, client: self.usage)
            self.chargedBytes = buffered
        }
        // An emptied buffer would otherwise keep the storage of the largest request so far while the connection idles.
        self.compactReceived()
    }

    var bufferStorage: Int {
        self.received.storage.capacity + self.outbound.capacity
    }

    /// Replaces the receive buffer with one sized to its unparsed bytes once they fill less than half its storage,
    /// so that storage stays near the bytes counted against maxBufferedRequestBytes. Parsed chunk framing stops
    /// counting at once, so its storage must not stay held while the rest of a slow request arrives.
    private func compactReceived() {
        let storage = self.received.storage.capacity
        guard storage > Self.idleBufferBytes, self.received.readableCount * 2 < storage else { return }
        self.received = ByteBuffer(self.received.withReadableBytes { Array($0) })
    }

    /// Buffer storage a connection keeps between requests; ordinary webhooks and their responses fit in it.
    private static let idleBufferBytes = 16 * 1024

    /// Hands a request to the handler.
    ///
    /// NOTE: pipelined bytes that arrived in the same read as the request stay counted against
    /// maxBufferedRequestBytes until their own responses, up to a read (64 KiB) a connection. A pipelining client
    /// behind a slow request takes up that much of the limit. Later bytes wait in the socket.
    private func dispatch(_ request: HTTPRequest) {
        self.phase = .handling
        self.deadline = UInt64.max
        self.updatePolling()
        if let response = self.earlyResponse {
            self.earlyResponse = nil
            self.send(response)
            return
        }
        self.owner.server.handler.handle(request, peer: self.peer, responder: self.owner.responder(for: self.id))
    }

    private func reject(_ error: HTTPParseError) {
        if let head = error.head {
            // A body announced over the limit fails before the head is handed on, so the access log takes it here.
            self.requestMethod = head.method
            self.requestPath = head.path
        }
        if !self.owner.server.handler.rejected(error, peer: self.peer) {
            self.owner.server.logger.info(
                "request rejected",
                ["reason": .string(error.reason), "status": .number(Double(error.status)), "peer": .string(self.peer)])
        }
        let apiError: APIError
        switch error.status {
        case 413: apiError = .payloadTooLarge(limit: self.configuration.parserLimits.maxBodyBytes)
        case 431: apiError = .headersTooLarge(limit: self.configuration.parserLimits.maxHeaderBytes)
        case 505: apiError = .badRequest(code: "httpVersionNotSupported", error.reason)
        default: apiError = .badRequest(code: "malformedRequest", error.reason)
        }
        var response = HTTPResponse(error: apiError, closeConnection: true)
        response.status = error.status
        self.keepAlive = false
        self.isHeadRequest = false
        self.phase = .handling
        self.send(response)
    }

    // MARK: Writing

    /// Sends the response to the request being handled. Called on the loop thread.
    func send(_ response: HTTPResponse) {
        guard self.phase == .handling else { return }
        self.isInputPaused = false
        if self.owner.server.accessLog.load(ordering: .relaxed) {
            self.logAccess(response)
        }
        // Cleared with the access log off too, since a reload can turn it on between two requests.
        self.requestMethod = ""
        self.requestPath = ""
        self.requestStartedAt = 0
        let close = response.closeConnection || !self.keepAlive || self.owner.isDraining
        var response = response
        if self.isHTTP10 && !close {
            response.headers.add(name: "Connection", value: "keep-alive")
        }
        let date = self.owner.dateCache.current()
        self.queue(response.serialize(date: date, includeBody: !self.isHeadRequest, close: close))
        if close {
            self.phase = .closing
            self.deadline = self.owner.loop.now + Self.lingerMs
            // Nothing more is parsed, so bytes read ahead go now rather than when the client closes.
            self.received = ByteBuffer()
        } else {
            self.phase = .awaitingRequest
            self.deadline = self.owner.loop.now + self.configuration.idleTimeoutMs
        }
        self.settleCharge()
        // Once the response is written, flush parses what the client sent meanwhile.
        self.flush()
        self.updatePolling()
    }

    /// Parses what the client sent while its previous request was handled, and closes the connection if the client
    /// has finished sending and no request is with the handler, since a partial request can then never complete.
    private func parseAfterResponse() {
        self.processReceived()
        if !self.isClosed && self.peerClosedInput && self.phase != .handling && self.phase != .closing
            && self.outbound.isEmpty
        {
            self.close()
        }
    }

    /// Logs one line per response. The query string is left out, since it may carry subscription ids.
    private func logAccess(_ response: HTTPResponse) {
        let started = self.requestStartedAt == 0 ? self.owner.loop.now : self.requestStartedAt
        self.owner.server.logger.info(
            "request",
            ["method": .string(self.requestMethod), "path": .string(String(self.requestPath)),
             "status": .number(Double(response.status)), "bytes": .number(Double(response.body.count)),
             "milliseconds": .number(Double(self.owner.loop.now - started)), "peer": .string(self.peer)])
    }

    private func queue(_ bytes: [UInt8]) {
        if self.outbound.isEmpty {
            self.outbound = bytes
            self.outboundOffset = 0
        } else {
            self.outbound.append(contentsOf: bytes)
        }
    }

    private func flush() {
        guard !self.isClosed else { return }
        while self.outboundOffset < self.outbound.count {
            let result: IOResult<Int>
            do {
                result = try self.outbound.withUnsafeBytes { bytes throws(SystemError) in
                    try Socket.write(self.fd, UnsafeRawBufferPointer(rebasing: bytes[self.outboundOffset...]))
                }
            } catch {
                self.close()
                return
            }
            guard case .done(let count) = result else {
                self.updatePolling()
                return
            }
            self.outboundOffset += count
        }
        self.outbound.removeAll(keepingCapacity: self.outbound.capacity <= Self.idleBufferBytes)
        self.outboundOffset = 0
        if self.phase == .closing && !self.hasHalfClosed {
            self.hasHalfClosed = true
            Socket.shutdownWrite(self.fd)
            if self.peerClosedInput {
                self.close()
                return
            }
        } else if self.phase == .awaitingRequest && (!self.received.isEmpty || self.peerClosedInput) {
            self.parseAfterResponse()
            guard !self.isClosed else { return }
        }
        self.updatePolling()
    }

    /// Polls for output while bytes wait to be written, and for input unless the buffer is full, output is
    /// pending or the client has finished sending.
    ///
    /// Input stays polled while the handler has a request, so the usual client, which sends nothing more until
    /// it has its response, costs no `epoll_ctl` call per request. Pipelined bytes are read into the buffer and
    /// parsed after the response.
    private func updatePolling() {
        guard !self.isClosed else { return }
        var events: UInt32 = 0
        if !self.outbound.isEmpty {
            events |= EPOLLOUT.rawValue
        } else if !self.peerClosedInput && !self.isInputPaused && self.received.readableCount < self.maxBuffered {
            events |= Self.inputEvents
        }
        if events != self.pollingEvents {
            self.pollingEvents = events
            self.owner.loop.modify(self.fd, events: events)
        }
    }

    // MARK: Timeouts and closing

    func deadlinePassed() {
        switch self.phase {
        case .awaitingRequest where self.outbound.isEmpty:
            self.close()
        case .readingHead, .readingBody:
            self.owner.server.logger.info(
                "request timed out",
                ["phase": .string(self.phase == .readingHead ? "header" : "body"), "peer": .string(self.peer)])
            let error = APIError(
                status: 408, type: "invalidRequest", code: "requestTimeout",
                message: "The request was not received in time.")
            self.keepAlive = false
            self.phase = .handling
            self.send(HTTPResponse(error: error, closeConnection: true))
        default:
            // A client that stopped reading its responses, or one that never closed after the final response.
            self.close()
        }
    }

    /// Closes the connection now if it is between requests with nothing buffered. Otherwise the connection closes
    /// after responding to the request under way, or to a request already in the buffer.
    func drain() {
        let isIdle = self.phase == .awaitingRequest && self.received.isEmpty
        // A closing connection with its last response written waits only for the client's close.
        if (isIdle || self.phase == .closing) && self.outbound.isEmpty {
            self.close()
        }
    }

    func close() {
        guard !self.isClosed else { return }
        self.isClosed = true
        self.owner.server.releaseBuffered(self.chargedBytes, client: self.usage)
        self.chargedBytes = 0
        self.owner.remove(self)
    }
}
