import Foundation
import PortoutCore

/// IMF-fixdate text for the `Date` header (RFC 9110 section 5.6.7), such as `Fri, 04 Dec 2026 15:11:01 GMT`.
enum HTTPDate {
    private static let weekdays = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    static func now() -> String {
        self.format(epochSeconds: Int(Date().timeIntervalSince1970))
    }

    static func format(epochSeconds: Int) -> String {
        let days = epochSeconds / 86_400
        let secondsOfDay = epochSeconds % 86_400
        // 1970-01-01 was a Thursday.
        let weekday = self.weekdays[days % 7]
        let stamp = RFC3339.civilDate(daysSinceEpoch: days)
        func pad(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(weekday), \(pad(stamp.day)) \(self.months[stamp.month - 1]) \(stamp.year) "
            + "\(pad(secondsOfDay / 3600)):\(pad(secondsOfDay / 60 % 60)):\(pad(secondsOfDay % 60)) GMT"
    }

    /// A per-thread cache, so a busy loop formats the date once a second instead of once a response.
    final class Cache {
        private var second = -1
        private var text = ""

        func current() -> String {
            let now = Int(Date().timeIntervalSince1970)
            if now != self.second {
                self.second = now
                self.text = HTTPDate.format(epochSeconds: now)
            }
            return self.text
        }
    }
}
