import PortoutCore
import PortoutJournal
import Testing

@testable import PortoutRelay

/// The port-out index keeps its last project's place between events. Events that switch between tenants and
/// projects, and retention removing a project, must still land each port out in its own project.
struct PortOutIndexTests {
    static func event(tenant: String, project: String, portOut: Int, status: PortOutStatus, segment: UInt64)
        -> (EventRecord, JournalLocation)
    {
        let record = EventRecord(
            sequence: UInt64(portOut), acceptedAtMs: 1_000, isStale: false, isBare: false, status: status,
            dedupeKey: DigestKey(high: UInt64(portOut), low: 1), lifecycleKey: DigestKey(high: UInt64(portOut), low: 2),
            tenant: tenant, eventID: "evt_\(portOut)", type: "com.gigs.portOut.\(status.rawValue)",
            portOutID: "pout_\(portOut)", project: project, destinations: [], body: [], portOutCreatedAtMs: 500,
            subscription: "sub_\(portOut)")
        return (record, JournalLocation(segment: segment, offset: Int64(portOut), length: 10))
    }

    @Test func eventsSwitchingProjectsLandInTheirOwn() {
        var index = PortOutIndex()
        let places = [("t1", "acme-mobile"), ("t1", "acme-data"), ("t2", "acme-mobile")]
        for portOut in 0..<30 {
            let (tenant, project) = places[portOut % places.count]
            let (record, location) = Self.event(
                tenant: tenant, project: project, portOut: portOut, status: .initiated, segment: 1)
            index.apply(record, at: location)
        }
        #expect(index.count == 30)
        for portOut in 0..<30 {
            let (tenant, project) = places[portOut % places.count]
            #expect(index.entry(tenant: tenant, project: project, id: "pout_\(portOut)")?.subscription == "sub_\(portOut)")
            let (otherTenant, otherProject) = places[(portOut + 1) % places.count]
            #expect(index.entry(tenant: otherTenant, project: otherProject, id: "pout_\(portOut)") == nil)
        }

        // Retention removes t1's projects, whose port outs are all in segment 1, while t2's moves on to segment 2.
        for portOut in stride(from: 2, to: 30, by: 3) {
            let (record, location) = Self.event(
                tenant: "t2", project: "acme-mobile", portOut: portOut, status: .processing, segment: 2)
            index.apply(record, at: location)
        }
        #expect(index.forget(before: 2) == 20)
        let (record, location) = Self.event(
            tenant: "t1", project: "acme-data", portOut: 100, status: .initiated, segment: 3)
        index.apply(record, at: location)
        #expect(index.entry(tenant: "t1", project: "acme-data", id: "pout_100")?.status == .initiated)
        #expect(index.entry(tenant: "t2", project: "acme-mobile", id: "pout_2")?.status == .processing)
        #expect(index.count == 11)
    }

    /// Ids that are equal as Swift strings but differ in their bytes are one port out, whatever shard either
    /// spelling would hash to.
    @Test func equalIDsInOtherBytesAreOnePortOut() {
        var index = PortOutIndex()
        for number in 0..<50 {
            for (id, status) in [("pout_caf\u{E9}\(number)", PortOutStatus.initiated), ("pout_cafe\u{301}\(number)", .processing)] {
                var (record, location) = Self.event(
                    tenant: "t1", project: "acme-mobile", portOut: number, status: status, segment: 1)
                record.portOutID = id
                index.apply(record, at: location)
            }
        }
        #expect(index.count == 50)
        #expect(index.entry(tenant: "t1", project: "acme-mobile", id: "pout_caf\u{E9}7")?.status == .processing)
    }
}
