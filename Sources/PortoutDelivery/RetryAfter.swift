import Foundation

/// Parses `Retry-After`: delay seconds or an HTTP date.
enum RetryAfter {
    static func seconds(_ value: String?) -> Double? {
        guard let value, !value.isEmpty else { return nil }
        if let seconds = Int(value), seconds >= 0 {
            return Double(seconds)
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        guard let date = formatter.date(from: value) else { return nil }
        return max(0, date.timeIntervalSinceNow)
    }
}
