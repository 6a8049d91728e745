import PortoutCore
import PortoutDelivery
import PortoutHTTP

extension AdminRequestHandler {
    /// Returns the reason journaled with each abandoned delivery, which the dead-letter list shows.
    static func abandonmentReason(_ given: String?) -> String {
        given.map { "abandoned by an operator: \($0)" } ?? "abandoned by an operator"
    }

    /// `POST /admin/destinations/{tenant}/{destination}/abandon`: dead-letters what a held destination has
    /// waiting, so that a destination gone for good stops holding memory and journal segments.
    func abandon(
        tenant: String, id: String, body: [UInt8], peer: String, respond: @escaping @Sendable (HTTPResponse) -> Void
    ) {
        let reason: String
        switch Self.reasonBody(body, known: ["reason"]) {
        case .failure(let error):
            return respond(HTTPResponse(error: error))
        case .success(let given):
            reason = Self.abandonmentReason(given)
        }
        let logger = self.logger
        let deadLetters = self.deadLetters
        self.engine.abandonWaiting(tenant: tenant, destination: id, reason: reason) { result in
            switch result {
            case .success(let abandonment):
                logger.info(
                    "admin action",
                    ["action": "abandon deliveries", "tenant": .string(tenant), "destination": .string(id),
                     "reason": .string(reason), "abandoned": .number(Double(abandonment.abandoned)),
                     "remaining": .number(Double(abandonment.remaining)),
                     "inFlight": .number(Double(abandonment.inFlight)), "configured": .bool(abandonment.isConfigured),
                     "peer": .string(peer)])
                let response = HTTPResponse(status: 200, json: .object(JSONObject([
                    ("object", "abandonment"), ("tenant", .string(tenant)), ("destination", .string(id)),
                    ("configured", .bool(abandonment.isConfigured)),
                    ("abandoned", .number(Double(abandonment.abandoned))),
                    ("remaining", .number(Double(abandonment.remaining))),
                    ("inFlight", .number(Double(abandonment.inFlight))), ("reason", .string(reason)),
                ])))
                // Sent once the dead letters are listed, so that a redelivery requested next finds them all.
                deadLetters.inListingOrder { respond(response) }
            case .failure(.notFound):
                respond(HTTPResponse(error: .notFound(
                    "No destination \(id) in tenant \(tenant), and no deliveries held for one of that name.")))
            case .failure(.active):
                respond(HTTPResponse(error: .conflict(
                    code: "destinationActive",
                    "Destination \(id) of tenant \(tenant) is active. Pause it first, so that no attempt starts "
                        + "while its deliveries are abandoned.")))
            case .failure(.stopped):
                respond(HTTPResponse(error: Self.shuttingDown))
            case .failure(.notJournaled(let error)):
                logger.error(
                    "admin action not journaled",
                    ["action": "abandon deliveries", "tenant": .string(tenant), "destination": .string(id),
                     "error": .string(error), "peer": .string(peer)])
                respond(HTTPResponse(error: .internalError(
                    code: "abandonmentNotJournaled",
                    "Nothing was abandoned, because the records could not be journaled: \(error). The "
                        + "deliveries wait as before, except copies of a replay cancelled meanwhile, which were "
                        + "withdrawn. Retry once the journal's disk accepts writes.")))
            }
        }
    }
}
