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
            let project = QueryParameters.decode(segments[1], plusIsSpace: false), !project.isEmpty
        else { return nil }
        guard segments.count >= 4 else {
            return isTesting ? nil : .portOuts(project: project)
        }
        guard let id = QueryParameters.decode(segments[3], plusIsSpace: false), !id.isEmpty else { return nil }
        switch (isTesting, segments.count == 5 ? segments[4] : nil) {
        case (false, nil): return .portOut(project: project, id: id)
        case (false, "expire"): return .expire(project: project, id: id)
        case (false, "credentials"): return .credentials(project: project, id: id)
        case (true, "simulate"): return .simulate(project: project, id: id)
        default: return nil
        }
    }
}
