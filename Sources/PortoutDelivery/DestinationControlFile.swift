import PortoutCore

/// The destinations an operator paused or that were disabled by a 410, kept in `destinations.json` in the data
/// directory so that a restart does not start sending to them again.
struct DestinationControlFile: Sendable {
    struct Entry: Sendable, Equatable {
        var mode: DestinationMode
        var reason: String
        var changedAtMs: Int64
    }

    /// The record that a start could not read the file, so that the modes of destinations it does not name
    /// are unknown: they may have been held. It stays in every later save.
    struct UnknownModes: Sendable, Equatable {
        /// The reason given to the destinations paused for it.
        var reason: String
        var sinceMs: Int64
    }

    /// The file's contents.
    struct Contents: Equatable {
        /// The destinations the file names, by `tenant/destination` key, active ones included.
        var entries: [String: Entry] = [:]
        var unknownModes: UnknownModes?
        /// False for a file saved by a version that wrote only held destinations, so that a destination it does
        /// not name may have been resumed at a time the file does not show.
        var namesEveryDestination = true
    }

    /// The `version` that `save` writes: files with it name every destination with its time of change.
    static let version = 2

    let path: String

    /// Reads the file. A missing file means that no destination is held.
    func load() throws -> Contents {
        guard let bytes = try DurableFile.read(path: self.path) else { return Contents() }
        let document = try JSONParser.parse(bytes)
        // Only the shape that `save` writes is read, because any other shape could be hiding held destinations.
        guard let elements = document.objectValue?["destinations"]?.arrayValue else {
            throw ControlFileError(path: self.path, reason: "the file is not an object with a \"destinations\" array")
        }
        var contents = Contents()
        // No version is a file of an earlier version. Any other than this one's could mean anything.
        if let version = document.objectValue?["version"] {
            guard version.intValue == Self.version else {
                throw ControlFileError(path: self.path, reason: "version \(version) is not \(Self.version)")
            }
        } else {
            contents.namesEveryDestination = false
        }
        if let unknown = document.objectValue?["unknownModes"] {
            guard let reason = unknown.objectValue?["reason"]?.stringValue,
                let sinceMs = unknown.objectValue?["sinceMs"]?.intValue.flatMap({ Int64(exactly: $0) })
            else {
                throw ControlFileError(path: self.path, reason: "unknownModes lacks a reason or an integer sinceMs")
            }
            contents.unknownModes = UnknownModes(reason: reason, sinceMs: sinceMs)
        }
        for element in elements {
            guard let object = element.objectValue, let tenant = object["tenant"]?.stringValue,
                let destination = object["destination"]?.stringValue,
                let mode = object["mode"]?.stringValue.flatMap(DestinationMode.init(rawValue:))
            else {
                throw ControlFileError(path: self.path, reason: "an entry lacks tenant, destination or mode")
            }
            var changedAtMs: Int64 = 0
            if contents.namesEveryDestination && object["changedAtMs"] == nil {
                // The time is what orders a saved change against a 410 in the journal.
                throw ControlFileError(path: self.path, reason: "an entry lacks changedAtMs")
            }
            if let value = object["changedAtMs"] {
                guard let milliseconds = value.intValue.flatMap({ Int64(exactly: $0) }) else {
                    throw ControlFileError(path: self.path, reason: "an entry's changedAtMs is not an integer")
                }
                changedAtMs = milliseconds
            }
            contents.entries[tenant + "/" + destination] = Entry(
                mode: mode, reason: object["reason"]?.stringValue ?? "", changedAtMs: changedAtMs)
        }
        return contents
    }

    /// Replaces the file with the mode of each of `runtimes`, the saved modes of destinations that are not
    /// configured now, by `tenant/destination` key, and `unknownModes`. Active destinations are written too, because
    /// their time of change shows a start that a resume came after a 410 in the journal, and beside `unknownModes`
    /// a destination the file does not name starts paused.
    func save(
        _ runtimes: [DestinationRuntime], unconfigured: [String: Entry], unknownModes: UnknownModes?
    ) throws(SystemError) {
        var savedDestinations: [(tenant: String, destination: String, entry: Entry)] = runtimes.map {
            ($0.tenant, $0.config.id, Entry(mode: $0.mode, reason: $0.modeReason, changedAtMs: $0.modeChangedAtMs))
        }
        for (key, entry) in unconfigured {
            let parts = key.split(separator: "/", maxSplits: 1).map(String.init)
            savedDestinations.append((parts[0], parts.count > 1 ? parts[1] : "", entry))
        }
        savedDestinations.sort { ($0.tenant, $0.destination) < ($1.tenant, $1.destination) }
        let entries: [JSONValue] = savedDestinations.map { item in
            [
                "tenant": .string(item.tenant), "destination": .string(item.destination),
                "mode": .string(item.entry.mode.rawValue), "reason": .string(item.entry.reason),
                "changedAtMs": .number(Double(item.entry.changedAtMs)),
            ]
        }
        var document = JSONObject([("version", .number(Double(Self.version))), ("destinations", .array(entries))])
        if let unknownModes {
            document["unknownModes"] = [
                "reason": .string(unknownModes.reason), "sinceMs": .number(Double(unknownModes.sinceMs)),
            ]
        }
        try DurableFile.replace(path: self.path, with: JSONWriter.encode(.object(document)))
    }
}

/// A state file in the data directory that cannot be read back.
public struct ControlFileError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String

    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }

    public var description: String {
        "\(self.path): \(self.reason)"
    }
}
