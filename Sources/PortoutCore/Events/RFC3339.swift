/// Validation of RFC 3339 date-time strings such as `2026-11-02T09:38:11Z` or `2026-11-02T09:38:11.250+01:00`.
public enum RFC3339 {
    /// Whether the text is a complete RFC 3339 `date-time` with a valid calendar date and time of day.
    public static func isValid(_ text: String) -> Bool {
        self.parseSeconds(text) != nil
    }

    /// Parses the text into seconds since the Unix epoch, or returns nil when it is not an RFC 3339 `date-time`.
    public static func parseSeconds(_ text: String) -> Double? {
        text.utf8.withContiguousStorageIfAvailable { self.parseSeconds(utf8: $0) }
            ?? Array(text.utf8).withUnsafeBufferPointer { self.parseSeconds(utf8: $0) }
    }

    private static func parseSeconds(utf8 bytes: UnsafeBufferPointer<UInt8>) -> Double? {
        guard bytes.count >= 20 else { return nil }
        guard let year = digits(bytes, 0, 4), bytes[4] == UInt8(ascii: "-"),
            let month = digits(bytes, 5, 2), bytes[7] == UInt8(ascii: "-"),
            let day = digits(bytes, 8, 2),
            bytes[10] | 0x20 == UInt8(ascii: "t"),
            let hour = digits(bytes, 11, 2), bytes[13] == UInt8(ascii: ":"),
            let minute = digits(bytes, 14, 2), bytes[16] == UInt8(ascii: ":"),
            let second = digits(bytes, 17, 2)
        else { return nil }
        guard (1...12).contains(month), day >= 1, day <= self.daysInMonth(year: year, month: month),
            hour <= 23, minute <= 59, second <= 60
        else { return nil }

        var index = 19
        var fraction = 0.0
        if bytes[index] == UInt8(ascii: ".") {
            index += 1
            var scale = 0.1
            let fractionStart = index
            while index < bytes.count, let digit = digitValue(bytes[index]) {
                fraction += Double(digit) * scale
                scale /= 10
                index += 1
            }
            guard index > fractionStart else { return nil }
        }
        guard index < bytes.count else { return nil }

        var offsetSeconds = 0
        if bytes[index] | 0x20 == UInt8(ascii: "z") {
            index += 1
        } else if bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
            let sign = bytes[index] == UInt8(ascii: "-") ? -1 : 1
            guard index + 6 == bytes.count, let offsetHour = digits(bytes, index + 1, 2),
                bytes[index + 3] == UInt8(ascii: ":"), let offsetMinute = digits(bytes, index + 4, 2),
                offsetHour <= 23, offsetMinute <= 59
            else { return nil }
            offsetSeconds = sign * (offsetHour * 3600 + offsetMinute * 60)
            index += 6
        } else {
            return nil
        }
        guard index == bytes.count else { return nil }

        let days = self.daysFromCivil(year: year, month: month, day: day)
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds
        return Double(seconds) + fraction
    }

    /// Formats milliseconds since the Unix epoch as an RFC 3339 UTC time, such as `2026-11-02T09:38:11.250Z`.
    /// Formats whole seconds, as the carrier writes its times: `2026-11-02T09:38:11Z`.
    public static func format(epochSeconds: Int64) -> String {
        let text = self.format(epochMilliseconds: epochSeconds * 1000)
        return String(text.dropLast(5)) + "Z"
    }

    /// The times `format` writes with a four-digit year, 0000-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z,
    /// as Unix milliseconds. `parseSeconds` reads four-digit years only, but an offset can take a time it reads
    /// outside this range.
    public static let formattableMilliseconds: ClosedRange<Int64> = -62_167_219_200_000...253_402_300_799_999

    public static func format(epochMilliseconds: Int64) -> String {
        var totalSeconds = Int(epochMilliseconds / 1000)
        var milliseconds = Int(epochMilliseconds % 1000)
        if milliseconds < 0 {
            milliseconds += 1000
            totalSeconds -= 1
        }
        var days = totalSeconds / 86_400
        var secondsOfDay = totalSeconds % 86_400
        if secondsOfDay < 0 {
            secondsOfDay += 86_400
            days -= 1
        }
        let (year, month, day) = self.civilDate(daysSinceEpoch: days)
        func pad(_ value: Int, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(secondsOfDay / 3600, 2)):"
            + "\(pad(secondsOfDay / 60 % 60, 2)):\(pad(secondsOfDay % 60, 2)).\(pad(milliseconds, 3))Z"
    }

    private static func digitValue(_ byte: UInt8) -> Int? {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) ? Int(byte - UInt8(ascii: "0")) : nil
    }

    private static func digits(_ bytes: UnsafeBufferPointer<UInt8>, _ start: Int, _ count: Int) -> Int? {
        var value = 0
        for index in start..<(start + count) {
            guard index < bytes.count, let digit = digitValue(bytes[index]) else { return nil }
            value = value * 10 + digit
        }
        return value
    }

    private static func daysInMonth(year: Int, month: Int) -> Int {
        switch month {
        case 2:
            let isLeap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
            return isLeap ? 29 : 28
        case 4, 6, 9, 11:
            return 30
        default:
            return 31
        }
    }

    // Howard Hinnant's days-from-civil algorithm (proleptic Gregorian calendar, day 0 = 1970-01-01).
    private static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let adjustedYear = month <= 2 ? year - 1 : year
        let era = (adjustedYear >= 0 ? adjustedYear : adjustedYear - 399) / 400
        let yearOfEra = adjustedYear - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day), by Howard Hinnant's algorithm.
    public static func civilDate(daysSinceEpoch days: Int) -> (year: Int, month: Int, day: Int) {
        let shifted = days + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }
}
