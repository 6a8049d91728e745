import PortoutCore

/// The destinations an operator paused or that were disabled by a 410, kept in `destinations.json` in the data
/// directory so that a restart does not start sending to them again.
struct DestinationControlFile: Sendable {
    struct Entry: Sendable, Equatable {
        var mode: DestinationMode
        var reason: String
        var changedAtMs: Int64
    }

    let path: String

    /// Reads the held destinations by `tenant/destination` key. A missing file means none are held.
    func load() throws -> [String: Entry] {
        guard let bytes = try DurableFile.read(path: self.path) else { return [:] }
        let document = try JSONParser.parse(bytes)
        var entries: [String: Entry] = [:]
        for element in document.objectValue?["destinations"]?.arrayValue ?? [] {
            guard let object = element.objectValue, let tenant = object["tenant"]?.stringValue,
                let destination = object["destination"]?.stringValue,
                let mode = object["mode"]?.stringValue.flatMap(DestinationMode.init(rawValue:))
            else {
                throw ControlFileError(path: self.path, reason: "an entry lacks tenant, destination or mode")
            }
            entries[tenant + "/" + destination] = Entry(
                mode: mode, reason: object["reason"]?.stringValue ?? "",
                changedAtMs: Int64(object["changedAtMs"]?.numberValue ?? 0))
        }
        return entries
    }

    /// Replaces the file with the destinations of `runtimes` that are not active.
    func save(_ runtimes: [DestinationRuntime]) throws(SystemError) {
        let held = runtimes.filter { $0.mode != .active }.sorted { ($0.tenant, $0.config.id) < ($1.tenant, $1.config.id) }
        let entries: [JSONValue] = held.map { runtime in
            [
                "tenant": .string(runtime.tenant), "destination": .string(runtime.config.id),
                "mode": .string(runtime.mode.rawValue), "reason": .string(runtime.modeReason),
                "changedAtMs": .number(Double(runtime.modeChangedAtMs)),
            ]
        }
        try DurableFile.replace(path: self.path, with: JSONWriter.encode(["destinations": .array(entries)]))
    }
}

struct ControlFileError: Error, CustomStringConvertible {
    let path: String
    let reason: String

    var description: String {
        "\(self.path): \(self.reason)"
    }
}
