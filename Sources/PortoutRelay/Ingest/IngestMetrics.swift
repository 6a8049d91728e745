import PortoutCore

/// Webhook intake counts, by tenant.
final class IngestMetrics: Sendable {
    let requests = CounterFamily(
        name: "portout_webhook_requests_total",
        help: "Webhook requests by tenant and outcome: accepted, duplicate, signatureFailed, invalid, tooLarge, unavailable, "
            + "unknownTenant.",
        labelNames: ["tenant", "outcome"])
    let signatureFailures = CounterFamily(
        name: "portout_signature_failures_total", help: "Webhooks rejected with 401 for a missing, wrong or expired signature.",
        labelNames: ["tenant"])
    let duplicates = CounterFamily(
        name: "portout_duplicate_events_total", help: "Webhooks that got 200 because their port out and status were accepted before.",
        labelNames: ["tenant"])
    let staleEvents = CounterFamily(
        name: "portout_stale_events_total",
        help: "Accepted events whose status did not move their port out forward; journaled, not forwarded by default.",
        labelNames: ["tenant"])

    /// The counters of one tenant, looked up once so that the request path takes no lock for them. A class, so
    /// that the closures of a request retain it once rather than each of its counters.
    final class TenantCounters: Sendable {
        let accepted: Counter
        let duplicate: Counter
        let signatureFailed: Counter
        let invalid: Counter
        /// Bodies over `limits.maxBodyBytes`, rejected with 413 before the signature could be checked.
        let tooLarge: Counter
        let unavailable: Counter
        let signatureFailures: Counter
        let duplicates: Counter
        let stale: Counter

        init(family: IngestMetrics, tenant: String) {
            self.accepted = family.requests.labels(tenant, "accepted")
            self.duplicate = family.requests.labels(tenant, "duplicate")
            self.signatureFailed = family.requests.labels(tenant, "signatureFailed")
            self.invalid = family.requests.labels(tenant, "invalid")
            self.tooLarge = family.requests.labels(tenant, "tooLarge")
            self.unavailable = family.requests.labels(tenant, "unavailable")
            self.signatureFailures = family.signatureFailures.labels(tenant)
            self.duplicates = family.duplicates.labels(tenant)
            self.stale = family.staleEvents.labels(tenant)
        }
    }

    func counters(tenant: String) -> TenantCounters {
        TenantCounters(family: self, tenant: tenant)
    }

    init() {
        // Present at 0 from the start, so that a rate over it counts the first such request too.
        _ = self.requests.labels("", "unknownTenant")
    }

    /// Counts a request for a tenant that is not configured. The path's tenant is not used as a label, since any
    /// client could create label values with it.
    func countUnknownTenant() {
        self.requests.labels("", "unknownTenant").increment()
    }
}
