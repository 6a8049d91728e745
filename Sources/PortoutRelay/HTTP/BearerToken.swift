import PortoutCore
import PortoutHTTP

/// Reads the token of `Authorization: Bearer <token>`, which the read API and the admin listener both take.
enum BearerToken {
    /// The credential a token is, which names the codes of its 401s: `apiKeyMissing`, `adminTokenInvalid` and so on.
    enum Credential: String {
        case apiKey
        case adminToken

        var missingCode: String { self.rawValue + "Missing" }
        var invalidCode: String { self.rawValue + "Invalid" }
    }

    /// Returns the token the request presents, or the 401 to send.
    static func presented(
        in headers: HTTPHeaders, credential: Credential, hint: String
    ) -> Result<[UInt8], APIError> {
        guard let authorization = headers["Authorization"] else {
            return .failure(
                self.rejection(code: credential.missingCode, "The request has no Authorization header.", hint: hint))
        }
        // A proxy in front may have checked the other copy, so neither is taken.
        guard headers.count(of: "Authorization") == 1 else {
            return .failure(self.rejection(
                code: credential.invalidCode, "The request has more than one Authorization header.", hint: hint))
        }
        // RFC 9110 section 11.4 allows one or more spaces between the scheme and the token.
        let parts = authorization.split(separator: " ", maxSplits: 1)
        let token = parts.count == 2 ? parts[1].drop { $0 == " " } : ""
        guard parts.first?.lowercased() == "bearer", !token.isEmpty else {
            return .failure(
                self.rejection(
                    code: credential.invalidCode, "The Authorization header is not a Bearer token.", hint: hint))
        }
        return .success(Array(token.utf8))
    }

    /// Returns a 401 with the `WWW-Authenticate` field that RFC 9110 section 15.5.2 requires of it, naming the
    /// Bearer scheme. `isWrongToken` adds `error="invalid_token"`, which RFC 6750 section 3.1 keeps for a
    /// Bearer token that was sent and is not valid.
    static func rejection(
        code: String, _ message: String, hint: String? = nil, isWrongToken: Bool = false
    ) -> APIError {
        let challenge = isWrongToken ? #"Bearer realm="portout-relay", error="invalid_token""#
            : #"Bearer realm="portout-relay""#
        return APIError(
            status: 401, type: "unauthorized", code: code, message: message, hint: hint,
            headers: [("WWW-Authenticate", challenge)])
    }
}
