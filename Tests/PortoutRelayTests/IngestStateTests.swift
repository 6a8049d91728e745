import PortoutCore
import Testing

@testable import PortoutRelay

/// The lifecycle check when journal writes fail, driven on `IngestState` alone so that the order in which two
/// writes for one port out settle can be chosen.
struct IngestStateTests {
    static let portOut = DigestKey(high: 1, low: 1)

    static func key(_ status: PortOutStatus) -> DigestKey {
        DigestKey(high: 2, low: UInt64(PortOutStatus.allCases.firstIndex(of: status)!))
    }

    /// Admits `status` for the port out and returns whether it was taken as stale.
    static func admit(_ state: inout IngestState, _ status: PortOutStatus) -> Bool? {
        guard case .accept(_, let stale) = state.admit(
            dedupeKey: Self.key(status), lifecycleKey: Self.portOut, status: status, project: "acme-mobile")
        else { return nil }
        return stale
    }

    static func abandon(_ state: inout IngestState, _ status: PortOutStatus) {
        _ = state.abandon(Self.key(status), lifecycleKey: Self.portOut, status: status, stale: false)
    }

    static func confirm(_ state: inout IngestState, _ status: PortOutStatus) {
        _ = state.confirm(Self.key(status), lifecycleKey: Self.portOut, status: status, stale: false)
    }

    /// Two writes in flight for one port out both fail, in either order: neither status counts afterwards.
    @Test(arguments: [true, false])
    func bothWritesFail(laterFailsFirst: Bool) {
        var state = IngestState(capacity: 100)
        #expect(Self.admit(&state, .issued) == false)
        #expect(Self.admit(&state, .completed) == false)
        for status in laterFailsFirst ? [PortOutStatus.completed, .issued] : [.issued, .completed] {
            Self.abandon(&state, status)
        }
        // Nothing durable backs the port out, so no entry fixes its project.
        #expect(state.lifecycle.peek(Self.portOut) == nil)
        #expect(Self.admit(&state, .issued) == false)
        #expect(Self.admit(&state, .completed) == false)
    }

    static let updatedKey = DigestKey(high: 3, low: 1)

    /// Admits a `.updated` event for the port out under `project`.
    static func admitUpdated(_ state: inout IngestState, project: String) -> IngestState.Decision {
        state.admit(
            dedupeKey: Self.updatedKey, lifecycleKey: nil, status: nil, project: project, projectCheckKey: Self.portOut)
    }

    /// The project that a durable `.updated` event recorded before any status outlasts a failed status write.
    @Test func failedWriteKeepsRecordedProject() {
        var state = IngestState(capacity: 100)
        #expect(Self.admitUpdated(&state, project: "acme-mobile") == .accept(sequence: 1, stale: false))
        _ = state.confirm(
            Self.updatedKey, lifecycleKey: nil, status: nil, stale: false, projectCheckKey: Self.portOut,
            project: "acme-mobile")
        #expect(Self.admit(&state, .initiated) == false)
        Self.abandon(&state, .initiated)
        let other = state.admit(
            dedupeKey: Self.key(.initiated), lifecycleKey: Self.portOut, status: .initiated, project: "brit-tel")
        #expect(other == .otherProject)
        #expect(Self.admit(&state, .initiated) == false)
    }

    /// A failed write fixes no project: neither a first status's nor a `.updated` event's.
    @Test(arguments: [true, false])
    func failedWriteFixesNoProject(isUpdate: Bool) {
        var state = IngestState(capacity: 100)
        if isUpdate {
            #expect(Self.admitUpdated(&state, project: "acme-mobile") == .accept(sequence: 1, stale: false))
            _ = state.abandon(Self.updatedKey, lifecycleKey: nil, status: nil, stale: false, projectCheckKey: Self.portOut)
        } else {
            #expect(Self.admit(&state, .initiated) == false)
            Self.abandon(&state, .initiated)
        }
        #expect(state.lifecycle.peek(Self.portOut) == nil)
        let other = state.admit(
            dedupeKey: Self.key(.initiated), lifecycleKey: Self.portOut, status: .initiated, project: "brit-tel")
        #expect(other == .accept(sequence: 2, stale: false))
    }

    @Test func lifecycleEntryTakesEightBytes() {
        #expect(MemoryLayout<IngestState.LifecycleEntry>.size == 8)
    }

    /// A status that only a write in flight makes stale waits for that write: if it fails, the status is new.
    @Test(arguments: [true, false])
    func staleOnlyByWriteInFlightWaits(writeFails: Bool) {
        var state = IngestState(capacity: 100)
        #expect(Self.admit(&state, .initiated) == false)
        Self.confirm(&state, .initiated)
        #expect(Self.admit(&state, .issued) == false)
        let decision = state.admit(
            dedupeKey: Self.key(.processing), lifecycleKey: Self.portOut, status: .processing, project: "acme-mobile")
        #expect(decision == .writesInFlight)
        state.waitForWrites(Self.portOut) {}
        let waiters = writeFails
            ? state.abandon(Self.key(.issued), lifecycleKey: Self.portOut, status: .issued, stale: false)
            : state.confirm(Self.key(.issued), lifecycleKey: Self.portOut, status: .issued, stale: false)
        #expect(waiters.lifecycle.count == 1)
        #expect(Self.admit(&state, .processing) == !writeFails)
    }

    /// A failed write leaves the rank of the writes that succeeded or are still in flight.
    @Test func failedWriteKeepsOtherWrites() {
        var state = IngestState(capacity: 100)
        #expect(Self.admit(&state, .processing) == false)
        Self.confirm(&state, .processing)
        #expect(Self.admit(&state, .issued) == false)
        #expect(Self.admit(&state, .completed) == false)
        Self.abandon(&state, .completed)
        #expect(state.lifecycle.peek(Self.portOut)?.rank == Int8(PortOutStatus.issued.rank))
        Self.abandon(&state, .issued)
        #expect(state.lifecycle.peek(Self.portOut)?.rank == Int8(PortOutStatus.processing.rank))
        #expect(Self.admit(&state, .initiated) == true)
        #expect(Self.admit(&state, .issued) == false)
    }

    /// Dedupe and lifecycle keys pick their shard from their digest's high word, so those digests must spread
    /// over the shards as evenly as a hash would.
    @Test func digestKeysSpreadOverShards() {
        var dedupe = Array(repeating: 0, count: HashShards.count)
        var lifecycle = Array(repeating: 0, count: HashShards.count)
        for number in 0..<64_000 {
            dedupe[HashShards.index(of: IngestKeys.dedupe(tenant: "t1", portOutID: "pout_\(number)", status: .issued))] += 1
            lifecycle[HashShards.index(of: IngestKeys.lifecycle(tenant: "t1", portOutID: "pout_\(number)"))] += 1
        }
        for counts in [dedupe, lifecycle] {
            #expect(counts.min()! > 700)
            #expect(counts.max()! < 1_300)
        }
    }

    /// Project tags are 32-bit FNV-1a: the published values for the empty string and "a", and a project name
    /// against a byte-by-byte reference.
    @Test func projectTagIsFNV1a() {
        #expect(IngestState.projectTag("") == 0x811C_9DC5)
        #expect(IngestState.projectTag("a") == 0xE40C_292C)
        let project = "acme-mobile-prepaid-europe"
        let bytewise = project.utf8.reduce(UInt32(2_166_136_261)) { ($0 ^ UInt32($1)) &* 16_777_619 }
        #expect(IngestState.projectTag(project) == bytewise)
    }
}
