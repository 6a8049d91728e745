import Foundation
import PortoutCore
import PortoutTestSupport
import Testing

@testable import PortoutHTTP

/// What a connection keeps once its requests have responses, and when a connection whose request is still with
/// the handler gives its resources back.
@Suite(.serialized)
struct ConnectionResourceTests {
    /// After a large request, an idle keep-alive connection keeps at most its idle allowance of buffer storage,
    /// not the storage of the largest request it carried.
    @Test func idleConnectionReleasesLargeBuffers() throws {
        let server = try RecordingServer { $0.maxBodyBytes = 256 * 1024 }
        defer { server.shutdown() }
        let body = String(repeating: "b", count: 200 * 1024)
        var clients: [LoopbackClient] = []
        for index in 0..<8 {
            let client = try LoopbackClient(port: server.port)
            client.send("POST /large/\(index) HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
            #expect(client.readResponse()?.text == "POST /large/\(index) \(body.utf8.count)")
            clients.append(client)
        }
        #expect(server.connectionCount == 8)
        // Holding each body would take 8 x 200 KiB; the allowance is 16 KiB per buffer, two buffers a connection.
        let storage = server.server.connectionBufferStorage()
        #expect(storage <= 8 * 2 * 16 * 1024, "idle connections hold \(storage) bytes of buffer storage")
        // The connections still serve requests after giving the storage back.
        for client in clients {
            #expect(client.request("GET", "/after")?.text == "GET /after 0")
        }
    }

    /// Parsed chunk framing stops counting against maxBufferedRequestBytes, so its buffer storage is given back
    /// too, even while the request is still unfinished.
    @Test func parsedChunkFramingReleasesStorage() throws {
        let server = try RecordingServer { $0.maxBodyBytes = 64 * 1024 }
        defer { server.shutdown() }
        // 2,000 one-byte chunks with 15-digit sizes: 40,000 bytes on the wire for 2,000 body bytes.
        let chunks = String(repeating: "000000000000001\r\nb\r\n", count: 2000)
        let client = try LoopbackClient(port: server.port)
        client.send("POST /unfinished HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
        // Only the head and the body bytes still count once the framing is parsed.
        #expect(waitUntil { (1..<4096).contains(server.server.bufferedBytes) })
        let storage = server.server.connectionBufferStorage()
        #expect(storage <= 16 * 1024, "an unfinished chunked request holds \(storage) bytes of buffer storage")
        client.send("0\r\n\r\n")
        #expect(client.readResponse()?.text == "POST /unfinished 2000")
    }

    /// A client that half-closes behind its request and then resets leaves a socket that reports a hang-up until it
    /// is closed. The server closes it at once, without waiting for the handler's response.
    @Test func hangUpDuringHandlingCloses() throws {
        let server = try RecordingServer()
        defer { server.shutdown() }
        var client: LoopbackClient? = try LoopbackClient(port: server.port)
        client?.send("GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        client?.finishSending()
        #expect(waitUntil { server.requestTargets == ["/held"] })
        // Time for the server to read the end of input before the reset arrives.
        usleep(100_000)
        client?.resetOnClose()
        client = nil
        #expect(waitUntil { server.connectionCount == 0 }, "the connection stayed open while its request was held")
        server.handler.release.signal()
        let next = try LoopbackClient(port: server.port)
        #expect(next.request("GET", "/next")?.text == "GET /next 0")
    }
}
