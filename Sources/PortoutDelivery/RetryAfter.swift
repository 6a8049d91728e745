import Foundation

/// Parses `Retry-After`: delay seconds or an HTTP date.
enum RetryAfter {
    static func seconds(_ value: String?) -> Double? {
        guard let value, !value.isEmpty else { return nil }
        if value.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) {
            // Digits beyond Int's range still ask for a long wait, which the caller caps, so they are not
            // dropped as unreadable.
            return Int(value).map(Double.init) ?? Double(Int.max)
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        guard let date = formatter.date(from: value) else { return nil }
        return max(0, date.timeIntervalSinceNow)
    }
}
