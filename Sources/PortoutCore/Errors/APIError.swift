/// An error response in the API's error shape: `{"object":"error","type":…,"message":…}` with optional `code`,
/// `hint` and `details`.
public struct APIError: Error, Sendable {
    public let status: Int
    public let type: String
    public let code: String?
    public let message: String
    public let hint: String?
    public let details: [ValidationIssue]
    /// Extra response headers, such as `Allow` or `Retry-After`.
    public let headers: [(name: String, value: String)]

    public init(
        status: Int, type: String, code: String? = nil, message: String, hint: String? = nil,
        details: [ValidationIssue] = [], headers: [(name: String, value: String)] = []
    ) {
        self.status = status
        self.type = type
        self.code = code
        self.message = message
        self.hint = hint
        self.details = details
        self.headers = headers
    }

    public var jsonValue: JSONValue {
        var members: [(key: String, value: JSONValue)] = [
            ("object", "error"),
            ("type", .string(self.type)),
        ]
        if let code = self.code {
            members.append(("code", .string(code)))
        }
        members.append(("message", .string(self.message)))
        if let hint = self.hint {
            members.append(("hint", .string(hint)))
        }
        if !self.details.isEmpty {
            let details = self.details.map { issue -> JSONValue in
                ["field": .string(issue.field), "message": .string(issue.message)]
            }
            members.append(("details", .array(details)))
        }
        return .object(JSONObject(members))
    }

    public static func badRequest(code: String, _ message: String, hint: String? = nil) -> APIError {
        APIError(status: 400, type: "invalidRequest", code: code, message: message, hint: hint)
    }

    public static func unauthorized(code: String, _ message: String, hint: String? = nil) -> APIError {
        APIError(status: 401, type: "unauthorized", code: code, message: message, hint: hint)
    }

    public static func notFound(_ message: String) -> APIError {
        APIError(status: 404, type: "notFound", code: "notFound", message: message)
    }

    public static func methodNotAllowed(_ method: String, allowed: [String]) -> APIError {
        APIError(
            status: 405, type: "invalidRequest", code: "methodNotAllowed",
            message: "Method \(method) is not allowed here.", headers: [("Allow", allowed.joined(separator: ", "))])
    }

    public static func payloadTooLarge(limit: Int) -> APIError {
        APIError(
            status: 413, type: "invalidRequest", code: "bodyTooLarge",
            message: "The request body is larger than the limit of \(limit) bytes.")
    }

    /// The longest Content-Type value, in Unicode scalars, that a 415 repeats in full. A longer one is cut, so
    /// that a header of several kilobytes is not sent back whole. Counted in scalars rather than characters,
    /// since thousands of combining marks make one character.
    static let echoedContentTypeLimit = 100

    public static func unsupportedMediaType(_ contentType: String?) -> APIError {
        let quotedValue = contentType.map { value in
            guard value.unicodeScalars.count > Self.echoedContentTypeLimit else { return "\"\(value)\"" }
            var cut = String.UnicodeScalarView()
            cut.append(contentsOf: value.unicodeScalars.prefix(Self.echoedContentTypeLimit))
            return "\"\(String(cut))...\" (cut to \(Self.echoedContentTypeLimit) code points)"
        }
        return APIError(
            status: 415, type: "invalidRequest", code: "unsupportedMediaType",
            message: "Content-Type \(quotedValue ?? "(missing)") is not supported.",
            hint: "Send the event as application/json.")
    }

    /// Returns the 417 error for an `Expect` field with a member other than `100-continue`. The value is not
    /// repeated, since it can be as long as the head allows.
    public static func expectationFailed() -> APIError {
        APIError(
            status: 417, type: "invalidRequest", code: "expectationFailed",
            message: "The Expect header has an expectation other than 100-continue, the only one supported.",
            hint: "Send the request without Expect, or with Expect: 100-continue.")
    }

    public static func headersTooLarge(limit: Int) -> APIError {
        APIError(
            status: 431, type: "invalidRequest", code: "headersTooLarge",
            message: "The request headers are larger than the limit of \(limit) bytes.")
    }

    public static func unprocessable(code: String, _ message: String, details: [ValidationIssue] = []) -> APIError {
        APIError(status: 422, type: "unprocessableEntity", code: code, message: message, details: details)
    }

    public static func conflict(code: String, _ message: String, details: [ValidationIssue] = []) -> APIError {
        APIError(status: 409, type: "conflict", code: code, message: message, details: details)
    }

    public static func internalError(code: String, _ message: String) -> APIError {
        APIError(status: 500, type: "internalError", code: code, message: message)
    }

    public static func serviceUnavailable(code: String, _ message: String, retryAfterSeconds: Int) -> APIError {
        APIError(
            status: 503, type: "serviceUnavailable", code: code, message: message,
            headers: [("Retry-After", String(retryAfterSeconds))])
    }
}
