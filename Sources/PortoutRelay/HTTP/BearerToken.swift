import PortoutCore
import PortoutHTTP

/// Reads the token of `Authorization: Bearer <token>`, which the read API and the admin listener both take.
enum BearerToken {
    static func presented(in headers: HTTPHeaders, hint: String) -> Result<[UInt8], APIError> {
        guard let authorization = headers["Authorization"] else {
            return .failure(.unauthorized(code: "apiKeyMissing", "The request has no Authorization header.", hint: hint))
        }
        // A proxy in front may have checked the other copy, so neither is taken.
        guard headers.count(of: "Authorization") == 1 else {
            return .failure(.unauthorized(
                code: "apiKeyInvalid", "The request has more than one Authorization header.", hint: hint))
        }
        let parts = authorization.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            return .failure(.unauthorized(code: "apiKeyInvalid", "The Authorization header is not a Bearer token."))
        }
        return .success(Array(parts[1].utf8))
    }
}
