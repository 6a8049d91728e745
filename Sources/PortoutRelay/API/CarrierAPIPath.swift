/// The paths of the carrier's Port Out API, which the relay and the emulator both serve.
enum CarrierAPIPath: Equatable {
    case portOuts(project: String)
    case portOut(project: String, id: String)
    case expire(project: String, id: String)
    case credentials(project: String, id: String)
    case simulate(project: String, id: String)

    var project: String {
        switch self {
        case .portOuts(let project), .portOut(let project, _), .expire(let project, _),
            .credentials(let project, _), .simulate(let project, _):
            return project
        }
    }

    /// The path rebuilt from its decoded parts with each segment percent-encoded, so that what reaches the
    /// carrier names exactly the project and port out that were checked, whatever escapes the client sent.
    var canonicalPath: String {
        func encode(_ segment: String) -> String {
            var output = ""
            for byte in segment.utf8 {
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                    UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                    UInt8(ascii: "~"):
                    output.unicodeScalars.append(Unicode.Scalar(byte))
                default:
                    let hex = String(byte, radix: 16, uppercase: true)
                    output += "%" + (hex.count == 1 ? "0" + hex : hex)
                }
            }
            return output
        }
        switch self {
        case .portOuts(let project): return "/projects/\(encode(project))/portOuts"
        case .portOut(let project, let id): return "/projects/\(encode(project))/portOuts/\(encode(id))"
        case .expire(let project, let id): return "/projects/\(encode(project))/portOuts/\(encode(id))/expire"
        case .credentials(let project, let id): return "/projects/\(encode(project))/portOuts/\(encode(id))/credentials"
        case .simulate(let project, let id): return "/testing/projects/\(encode(project))/portOuts/\(encode(id))/simulate"
        }
    }

    /// Methods the carrier API defines for the path (HEAD with every GET).
    var allowedMethods: [String] {
        switch self {
        case .portOuts: return ["GET", "HEAD", "POST"]
        case .portOut, .credentials: return ["GET", "HEAD"]
        case .expire, .simulate: return ["POST"]
        }
    }

    /// Parses `/projects/{project}/portOuts[/{portOut}[/expire|/credentials]]` and
    /// `/testing/projects/{project}/portOuts/{portOut}/simulate`, with percent-escapes decoded.
    static func parse(_ path: Substring) -> CarrierAPIPath? {
        var segments = Array(path.split(separator: "/", omittingEmptySubsequences: false).dropFirst())
        let isTesting = segments.first == "testing"
        if isTesting {
            segments.removeFirst()
        }
        guard segments.count >= 3, segments.count <= 5, segments[0] == "projects", segments[2] == "portOuts",
            let project = QueryParameters.decode(segments[1], plusIsSpace: false), Self.isPlainSegment(project)
        else { return nil }
        guard segments.count >= 4 else {
            return isTesting ? nil : .portOuts(project: project)
        }
        guard let id = QueryParameters.decode(segments[3], plusIsSpace: false), Self.isPlainSegment(id) else {
            return nil
        }
        switch (isTesting, segments.count == 5 ? segments[4] : nil) {
        case (false, nil): return .portOut(project: project, id: id)
        case (false, "expire"): return .expire(project: project, id: id)
        case (false, "credentials"): return .credentials(project: project, id: id)
        case (true, "simulate"): return .simulate(project: project, id: id)
        default: return nil
        }
    }

    /// Rejects empty names, dot segments and names holding a slash, backslash or control character once
    /// decoded: none is a carrier id, and each could name another path on a server that normalises it.
    private static func isPlainSegment(_ text: String) -> Bool {
        guard !text.isEmpty, text != ".", text != ".." else { return false }
        return !text.utf8.contains { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: "\\") || $0 < 0x20 || $0 == 0x7F }
    }
}
