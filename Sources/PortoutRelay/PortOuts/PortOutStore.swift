import PortoutCore
import PortoutJournal
import Synchronization

/// The port-out index shared between the journal's writer thread, which applies accepted events, and the
/// event loops, which read it; the port-out objects are read back from the journal outside the lock.
final class PortOutStore: Sendable {
    private let index: Locked<PortOutIndex>
    private let journal: Journal
    /// Port-out objects recently read back, by journal location. The record at a location never changes while
    /// the relay runs, because the index only names records that were written durably, so no entry goes stale.
    private let recentObjects = Locked(LRUIndex<JournalLocation, [UInt8]>(capacity: PortOutStore.recentObjectCount))

    /// Enough for the pages that clients poll over and over, such as the newest port outs of each project. Under
    /// a load of list requests, reading and slicing objects took 29 percent of the relay's CPU time.
    static let recentObjectCount = 4096

    /// A port-out object is about 400 bytes, but extra fields can make it as large as a request body. Larger
    /// objects are read from the journal each time, so the kept objects take at most about 8 MiB.
    static let maxRecentObjectBytes = 2048

    init(index: PortOutIndex, journal: Journal) {
        self.index = Locked(index)
        self.journal = journal
    }

    func apply(_ record: EventRecord, at location: JournalLocation) {
        self.index.withLock { $0.apply(record, at: location) }
    }

    func forget(before segment: UInt64) -> Int {
        self.index.withLock { $0.forget(before: segment) }
    }

    func stalled(nowMs: Int64, thresholdsMs: [PortOutStatus: Int64], tenant: String? = nil) -> [PortOutIndex.Stalled] {
        self.index.withLock { $0.stalled(nowMs: nowMs, thresholdsMs: thresholdsMs, tenant: tenant) }
    }

    /// Returns the port-out object as last accepted, in the JSON bytes it arrived as, or nil if the project has
    /// no such port out.
    func portOut(tenant: String, project: String, id: String) throws(JournalError) -> [UInt8]? {
        guard let entry = self.index.withLock({ $0.entry(tenant: tenant, project: project, id: id) }) else {
            return nil
        }
        return try self.object(at: entry.location)
    }

    func list(tenant: String, project: String, _ query: PortOutPaging.ListQuery) throws(JournalError)
        -> Result<(items: [[UInt8]], page: PortOutPaging.Page), PortOutPaging.ListError>
    {
        let (result, locations) = self.index.withLock { index in
            let result = index.list(tenant: tenant, project: project, query)
            let locations = (try? result.get())?.ids.compactMap {
                index.entry(tenant: tenant, project: project, id: $0)?.location
            } ?? []
            return (result, locations)
        }
        switch result {
        case .failure(let error):
            return .failure(error)
        case .success(let page):
            var items: [[UInt8]] = []
            items.reserveCapacity(locations.count)
            for location in locations {
                items.append(try self.object(at: location))
            }
            return .success((items, page))
        }
    }

    /// The number of port-out objects kept in memory now.
    var keptObjectCount: Int {
        self.recentObjects.withLock { $0.count }
    }

    /// Returns the port-out object of the event at `location`, from memory if it was read recently.
    private func object(at location: JournalLocation) throws(JournalError) -> [UInt8] {
        if let object = self.recentObjects.withLock({ $0.lookup(location) }) {
            return object
        }
        let object = try self.readObject(at: location)
        if object.count <= Self.maxRecentObjectBytes {
            self.recentObjects.withLock { _ = $0.insert(location, object) }
        }
        return object
    }

    /// Reads the event at `location` and returns its port-out object: the body itself for a bare object, or
    /// the envelope's `data`, sliced out of the body without parsing it when the key is spelled plainly.
    private func readObject(at location: JournalLocation) throws(JournalError) -> [UInt8] {
        let (body, isBare) = try self.journal.readEventBody(at: location)
        if isBare {
            return body
        }
        if let span = JSONSpan.member("data", in: body) {
            return Array(body[span])
        }
        guard let data = (try? JSONParser.parse(body))?.objectValue?["data"] else {
            throw JournalError(path: self.journal.directory, reason: "event at \(location) has no data")
        }
        return JSONWriter.encode(data)
    }
}
