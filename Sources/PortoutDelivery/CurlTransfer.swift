import CCurl
import CCurlShim
import PortoutCore

/// One libcurl easy handle sending one POST, with what came back.
///
/// Thread-safety: confined to the delivery thread, which is why it is `@unchecked Sendable`; libcurl handles
/// must not be used from two threads at once.
package final class CurlTransfer: @unchecked Sendable {
    package let handle: UnsafeMutableRawPointer
    private var headerList: UnsafeMutablePointer<curl_slist>?
    /// The first `bodyLimit` bytes of the response body.
    private(set) var responseBody: [UInt8] = []
    /// Whether the response body went past `bodyLimit`.
    private(set) var isResponseTruncated = false
    private var bodyLimit = 0
    private(set) var retryAfterValue: String?
    private(set) var contentType: String?
    var delivery: PendingDelivery?
    var startedAtMs: Int64 = 0

    package init() {
        CurlGlobal.initialise()
        guard let handle = curl_easy_init() else {
            fatalError("curl_easy_init failed: libcurl could not allocate a handle")
        }
        self.handle = handle
    }

    deinit {
        curl_slist_free_all(self.headerList)
        curl_easy_cleanup(self.handle)
    }

    /// Prepares a request; libcurl copies the body and the header strings. A POST always sends its body, even
    /// an empty one, and GET sends none. Redirects are never followed.
    package func prepare(
        method: String = "POST", url: String, headers: [String], body: [UInt8], timeoutMs: Int, bodyLimit: Int = 256
    ) {
        curl_easy_reset(self.handle)
        curl_slist_free_all(self.headerList)
        self.headerList = nil
        self.responseBody.removeAll(keepingCapacity: true)
        self.isResponseTruncated = false
        self.bodyLimit = bodyLimit
        self.retryAfterValue = nil
        self.contentType = nil
        for header in headers {
            self.headerList = curl_slist_append(self.headerList, header)
        }
        let context = Unmanaged.passUnretained(self).toOpaque()
        self.set(CURLOPT_URL, url)
        self.set(CURLOPT_NOSIGNAL, 1)
        self.set(CURLOPT_FOLLOWLOCATION, 0)
        self.set(CURLOPT_PROTOCOLS_STR, "http,https")
        self.set(CURLOPT_TIMEOUT_MS, timeoutMs)
        self.set(CURLOPT_CONNECTTIMEOUT_MS, min(timeoutMs, 10_000))
        if method == "GET" {
            self.set(CURLOPT_HTTPGET, 1)
        } else {
            self.set(CURLOPT_POST, 1)
            _ = portout_curl_easy_setopt_offset(self.handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count))
            var empty: UInt8 = 0
            body.withUnsafeBytes { bytes in
                let pointer = bytes.baseAddress.map { UnsafeMutableRawPointer(mutating: $0) }
                    ?? withUnsafeMutablePointer(to: &empty) { UnsafeMutableRawPointer($0) }
                _ = portout_curl_easy_setopt_pointer(self.handle, CURLOPT_COPYPOSTFIELDS, pointer)
            }
            if method != "POST" {
                self.set(CURLOPT_CUSTOMREQUEST, method)
            }
        }
        _ = portout_curl_easy_setopt_slist(self.handle, CURLOPT_HTTPHEADER, self.headerList)
        _ = portout_curl_easy_setopt_data_callback(self.handle, CURLOPT_WRITEFUNCTION, curlWriteBody)
        _ = portout_curl_easy_setopt_pointer(self.handle, CURLOPT_WRITEDATA, context)
        _ = portout_curl_easy_setopt_data_callback(self.handle, CURLOPT_HEADERFUNCTION, curlReadHeader)
        _ = portout_curl_easy_setopt_pointer(self.handle, CURLOPT_HEADERDATA, context)
    }

    package var responseStatus: Int {
        var status = 0
        _ = portout_curl_easy_getinfo_long(self.handle, CURLINFO_RESPONSE_CODE, &status)
        return status
    }

    fileprivate func receiveBody(_ bytes: UnsafeBufferPointer<UInt8>) {
        let room = self.bodyLimit - self.responseBody.count
        if room > 0 {
            self.responseBody.append(contentsOf: bytes.prefix(room))
        }
        if bytes.count > room {
            self.isResponseTruncated = true
        }
    }

    /// Takes one response header line as libcurl passes it, CRLF included. Only `Retry-After` and
    /// `Content-Type` are kept, and a string is made only for them, since this runs for every line of every
    /// response.
    fileprivate func receiveHeader(_ line: UnsafeBufferPointer<UInt8>) {
        if line.starts(with: "HTTP/".utf8) {
            // A new response (after a 100 Continue, say): forget the previous one's fields.
            self.retryAfterValue = nil
            self.contentType = nil
            return
        }
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return }
        let name = UnsafeBufferPointer(rebasing: line[..<colon])
        let isRetryAfter = Self.retryAfterName.withUnsafeBufferPointer { ASCII.equalsIgnoringCase(name, $0) }
        let isContentType = !isRetryAfter
            && Self.contentTypeName.withUnsafeBufferPointer { ASCII.equalsIgnoringCase(name, $0) }
        guard isRetryAfter || isContentType else { return }
        var start = colon + 1
        var end = line.endIndex
        let isSpace = { (byte: UInt8) in byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A }
        while start < end, isSpace(line[start]) { start += 1 }
        while end > start, isSpace(line[end - 1]) { end -= 1 }
        let value = String(decoding: UnsafeBufferPointer(rebasing: line[start..<end]), as: UTF8.self)
        if isRetryAfter {
            self.retryAfterValue = value
        } else {
            self.contentType = value
        }
    }

    private static let retryAfterName = Array("retry-after".utf8)
    private static let contentTypeName = Array("content-type".utf8)

    private func set(_ option: CURLoption, _ value: Int) {
        _ = portout_curl_easy_setopt_long(self.handle, option, value)
    }

    private func set(_ option: CURLoption, _ value: String) {
        _ = portout_curl_easy_setopt_string(self.handle, option, value)
    }
}

private func curlWriteBody(_ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ context: UnsafeMutableRawPointer?) -> Int {
    guard let data, let context else { return 0 }
    let transfer = Unmanaged<CurlTransfer>.fromOpaque(context).takeUnretainedValue()
    data.withMemoryRebound(to: UInt8.self, capacity: size * count) { bytes in
        transfer.receiveBody(UnsafeBufferPointer(start: bytes, count: size * count))
    }
    return size * count
}

private func curlReadHeader(_ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ context: UnsafeMutableRawPointer?) -> Int {
    guard let data, let context else { return 0 }
    let transfer = Unmanaged<CurlTransfer>.fromOpaque(context).takeUnretainedValue()
    data.withMemoryRebound(to: UInt8.self, capacity: size * count) { bytes in
        transfer.receiveHeader(UnsafeBufferPointer(start: bytes, count: size * count))
    }
    return size * count
}

/// `curl_global_init`, run once before the first handle is made.
enum CurlGlobal {
    private static let initialised: Bool = {
        let code = curl_global_init(Int(CURL_GLOBAL_DEFAULT))
        precondition(code == CURLE_OK, "curl_global_init failed: \(String(cString: curl_easy_strerror(code)))")
        return true
    }()

    static func initialise() {
        _ = self.initialised
    }
}
