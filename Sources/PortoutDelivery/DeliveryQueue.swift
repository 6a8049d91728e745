/// The deliveries waiting for one destination, in one lane per ordering key.
///
/// Only the head of a lane is handed out. A lane whose head is in flight leaves the schedule until that attempt
/// settles, so the statuses of one port out go out in order while other lanes proceed. Lanes whose head is
/// waiting sit in a min-heap by due time, so finding the next delivery does not scan every lane. Each lane keeps
/// its deliveries in sequence order, so a replayed delivery goes in before later statuses that have not gone out.
///
/// Not thread-safe: owned by the delivery thread.
struct DeliveryQueue {
    private struct Lane {
        var items: [PendingDelivery] = []
        var head = 0
        var isHeadInFlight = false

        var isEmpty: Bool { self.head == self.items.count }
        var first: PendingDelivery { self.items[self.head] }

        /// Inserts a delivery in sequence order behind any head in flight, and returns whether it is the head.
        mutating func insert(_ delivery: PendingDelivery) -> Bool {
            let firstMovable = self.head + (self.isHeadInFlight ? 1 : 0)
            var index = self.items.count
            while index > firstMovable && self.items[index - 1].sequence > delivery.sequence {
                index -= 1
            }
            self.items.insert(delivery, at: index)
            return index == self.head
        }

        mutating func removeFirst() {
            self.head += 1
            if self.head == self.items.count {
                self.items.removeAll()
                self.head = 0
            } else if self.head >= 64 && self.head * 2 >= self.items.count {
                self.items.removeFirst(self.head)
                self.head = 0
            }
        }
    }

    /// A lane's head waiting to be due. An entry whose sequence is no longer the lane's waiting head is stale, and
    /// it is dropped when it reaches the top. A lane may have several entries after an insertion at its head.
    private struct Scheduled: Comparable {
        var dueMs: Int64
        var sequence: UInt64
        var key: String

        static func < (lhs: Scheduled, rhs: Scheduled) -> Bool {
            (lhs.dueMs, lhs.sequence) < (rhs.dueMs, rhs.sequence)
        }
    }

    private var lanes: [String: Lane] = [:]
    private var schedule = MinHeap<Scheduled>()
    private(set) var inFlight = 0
    /// Deliveries not yet settled, including those in flight.
    private(set) var count = 0

    /// Adds a delivery to its lane in sequence order, but never ahead of a head that is in flight.
    ///
    /// Lanes are changed in place in the dictionary, here and below, because a lane copied out and stored back
    /// shares its items while it is changed, so each change copied them.
    mutating func enqueue(_ delivery: PendingDelivery) {
        let isHead = self.lanes[delivery.orderingKey, default: Lane()].insert(delivery)
        self.count += 1
        if isHead {
            self.schedule.push(Scheduled(dueMs: delivery.nextAttemptAtMs, sequence: delivery.sequence, key: delivery.orderingKey))
        }
    }

    /// Returns whether the lane of `orderingKey` contains the delivery of event `sequence`.
    func contains(sequence: UInt64, orderingKey: String) -> Bool {
        guard let lane = self.lanes[orderingKey] else { return false }
        return lane.items[lane.head...].contains { $0.sequence == sequence }
    }

    /// Returns the earliest entry that is still a waiting lane head, dropping stale entries above it.
    private mutating func nextScheduled() -> Scheduled? {
        while let top = self.schedule.first {
            if let lane = self.lanes[top.key], !lane.isEmpty, !lane.isHeadInFlight, lane.first.sequence == top.sequence {
                return top
            }
            _ = self.schedule.pop()
        }
        return nil
    }

    /// Returns when the earliest waiting lane head is due, or nil if none waits.
    mutating func nextDueMs() -> Int64? {
        self.nextScheduled()?.dueMs
    }

    /// Returns whether a lane head is due by `nowMs`.
    mutating func hasDue(nowMs: Int64) -> Bool {
        (self.nextScheduled()?.dueMs ?? .max) <= nowMs
    }

    /// The oldest journal segment holding the event of a delivery here. Lanes are in sequence order, so their
    /// heads have the oldest events.
    var oldestSegment: UInt64? {
        self.lanes.values.lazy.filter { !$0.isEmpty }.map { $0.first.location.segment }.min()
    }

    /// When the oldest unsettled delivery's event was accepted. Scans every lane, so it is for occasional reports.
    var oldestAcceptedAtMs: Int64? {
        self.lanes.values.lazy.filter { !$0.isEmpty }.map { $0.first.acceptedAtMs }.min()
    }

    /// Hands out the earliest due lane head, if one is due by `nowMs`, and counts it in flight.
    mutating func takeDue(nowMs: Int64) -> PendingDelivery? {
        guard let next = self.nextScheduled(), next.dueMs <= nowMs else { return nil }
        _ = self.schedule.pop()
        self.inFlight += 1
        self.lanes[next.key]!.isHeadInFlight = true
        return self.lanes[next.key]!.first
    }

    /// Settles the in-flight head of `key`: a retry puts it back at `retryAtMs`; otherwise it leaves the queue
    /// and the lane's next delivery becomes due.
    mutating func settle(key: String, retryAtMs: Int64?, attempts: Int) {
        guard let index = self.lanes.index(forKey: key), !self.lanes.values[index].isEmpty,
            self.lanes.values[index].isHeadInFlight
        else {
            preconditionFailure("settled a delivery that is not in flight")
        }
        self.inFlight -= 1
        let next = Self.settleHead(of: &self.lanes.values[index], retryAtMs: retryAtMs, attempts: attempts)
        if retryAtMs == nil {
            self.count -= 1
        }
        guard let next else {
            self.lanes.remove(at: index)
            return
        }
        self.schedule.push(Scheduled(dueMs: next.nextAttemptAtMs, sequence: next.sequence, key: key))
    }

    /// Puts a lane's head back to wait until `retryAtMs`, or removes it when `retryAtMs` is nil. Returns the
    /// lane's new waiting head, or nil when the lane is empty.
    private static func settleHead(of lane: inout Lane, retryAtMs: Int64?, attempts: Int) -> PendingDelivery? {
        lane.isHeadInFlight = false
        if let retryAtMs {
            lane.items[lane.head].attempts = attempts
            lane.items[lane.head].nextAttemptAtMs = retryAtMs
        } else {
            lane.removeFirst()
        }
        return lane.isEmpty ? nil : lane.first
    }

    /// Makes every delivery not in flight that waits for a later retry due at `nowMs`, and returns how many it
    /// changed. Deliveries behind a lane's head are included, because a replayed earlier status goes in ahead of
    /// a waiting retry. The schedule is rebuilt from the lanes, so no entry for a later time remains.
    mutating func makeWaitingDue(nowMs: Int64) -> Int {
        var advanced = 0
        var schedule = MinHeap<Scheduled>()
        for position in self.lanes.values.indices {
            guard !self.lanes.values[position].isEmpty else { continue }
            // Read field by field, since a copy of the lane would share its items and make each change copy them.
            let isHeadInFlight = self.lanes.values[position].isHeadInFlight
            let firstWaiting = self.lanes.values[position].head + (isHeadInFlight ? 1 : 0)
            for index in firstWaiting..<self.lanes.values[position].items.count
            where self.lanes.values[position].items[index].nextAttemptAtMs > nowMs {
                self.lanes.values[position].items[index].nextAttemptAtMs = nowMs
                advanced += 1
            }
            guard !isHeadInFlight else { continue }
            let first = self.lanes.values[position].first
            schedule.push(Scheduled(dueMs: first.nextAttemptAtMs, sequence: first.sequence, key: self.lanes.keys[position]))
        }
        self.schedule = schedule
        return advanced
    }

    /// Marks the replayed deliveries not in flight as stranded, and returns how many it marked by replay id.
    /// Those marked before are not counted again.
    mutating func markStranded() -> [String: Int] {
        var counts: [String: Int] = [:]
        for position in self.lanes.values.indices {
            Self.markStranded(&self.lanes.values[position], counts: &counts)
        }
        return counts
    }

    private static func markStranded(_ lane: inout Lane, counts: inout [String: Int]) {
        let firstWaiting = lane.head + (lane.isHeadInFlight ? 1 : 0)
        for index in firstWaiting..<lane.items.count {
            guard let replayID = lane.items[index].replayID, !lane.items[index].isStranded else { continue }
            lane.items[index].isStranded = true
            counts[replayID, default: 0] += 1
        }
    }

    /// Marks the delivery at the head of the lane of `key` as stranded, as `markStranded()` does for those waiting.
    mutating func markStranded(headOf key: String) {
        guard let index = self.lanes.index(forKey: key), !self.lanes.values[index].isEmpty else { return }
        let head = self.lanes.values[index].head
        self.lanes.values[index].items[head].isStranded = true
    }

    /// Counts the deliveries in flight that match.
    func inFlightCount(where matches: (PendingDelivery) -> Bool) -> Int {
        self.lanes.values.count { $0.isHeadInFlight && matches($0.first) }
    }

    /// Removes and returns the deliveries that match and are not in flight, as cancelling a replay does. With a
    /// `limit`, it stops at the first lane after which at least that many are removed.
    mutating func removeWaiting(
        limit: Int = .max, where shouldRemove: (PendingDelivery) -> Bool
    ) -> [PendingDelivery] {
        var removed: [PendingDelivery] = []
        for key in Array(self.lanes.keys) {
            guard removed.count < limit else { break }
            var lane = self.lanes[key]!
            let firstMovable = lane.head + (lane.isHeadInFlight ? 1 : 0)
            let before = lane.items.count
            let remaining = lane.items[firstMovable...].filter { delivery in
                guard shouldRemove(delivery) else { return true }
                removed.append(delivery)
                return false
            }
            guard remaining.count != before - firstMovable else { continue }
            lane.items = Array(lane.items[lane.head..<firstMovable]) + remaining
            lane.head = 0
            if lane.isEmpty {
                self.lanes.removeValue(forKey: key)
                continue
            }
            if !lane.isHeadInFlight {
                self.schedule.push(Scheduled(dueMs: lane.first.nextAttemptAtMs, sequence: lane.first.sequence, key: key))
            }
            self.lanes[key] = lane
        }
        self.count -= removed.count
        if self.count == 0 {
            // Frees the emptied table's capacity and the schedule's stale entries, which both grow with the largest
            // backlog the queue ever had.
            self.lanes = [:]
            self.schedule = MinHeap()
        }
        return removed
    }
}

/// A binary min-heap.
struct MinHeap<Element: Comparable> {
    private var elements: [Element] = []

    var first: Element? { self.elements.first }
    var count: Int { self.elements.count }

    mutating func push(_ element: Element) {
        self.elements.append(element)
        var child = self.elements.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard self.elements[child] < self.elements[parent] else { break }
            self.elements.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> Element? {
        guard !self.elements.isEmpty else { return nil }
        self.elements.swapAt(0, self.elements.count - 1)
        let top = self.elements.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < self.elements.count && self.elements[left] < self.elements[smallest] { smallest = left }
            if right < self.elements.count && self.elements[right] < self.elements[smallest] { smallest = right }
            if smallest == parent { break }
            self.elements.swapAt(parent, smallest)
            parent = smallest
        }
        return top
    }
}
