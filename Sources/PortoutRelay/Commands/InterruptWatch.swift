import Dispatch
import Foundation
import PortoutCore

/// Ctrl-C for the replay commands, which must cancel or list their job before they exit.
///
/// SIGINT is blocked from creation on, and a dispatch source reads it. libdispatch registers the source later, on
/// its own thread, and a blocked SIGINT waits as pending until then instead of being lost or ending the command
/// with its job left running. Threads inherit the mask, so a command creates the watch before it starts any.
/// Until `onInterrupt` sets an action, a SIGINT exits with status 130, as it would without the watch.
final class InterruptWatch {
    private struct State {
        var count = 0
        var action: (@Sendable (Int) -> Void)?
    }

    private let state = Locked(State())
    private let source: any DispatchSourceSignal

    init() {
        blockSignals([SIGINT])
        self.source = DispatchSource.makeSignalSource(signal: SIGINT, queue: DispatchQueue(label: "interrupt"))
        self.source.setEventHandler { [state] in
            let (count, action) = state.withLock { state in
                state.count += 1
                return (state.count, state.action)
            }
            guard let action else { Self.exitInterrupted() }
            action(count)
        }
        self.source.resume()
    }

    /// Ends the process with status 130 at once. Not `exit`, which runs exit handlers and library destructors
    /// while the command's other threads still run: a SIGINT during a command's start crashed it with SIGSEGV.
    /// Output goes straight to the descriptors, so nothing is left unflushed.
    static func exitInterrupted() -> Never {
        _exit(130)
    }

    /// The SIGINTs received so far.
    var count: Int {
        self.state.withLock { $0.count }
    }

    /// Runs `action` with the count so far at every SIGINT from now on, and at once if one has already come.
    func onInterrupt(_ action: @escaping @Sendable (Int) -> Void) {
        let count = self.state.withLock { state in
            state.action = action
            return state.count
        }
        if count > 0 {
            action(count)
        }
    }

    /// Stops watching, and gives SIGINT back its default action in the calling thread.
    func stop() {
        self.source.cancel()
        signal(SIGINT, SIG_DFL)
        unblockSignals([SIGINT])
    }
}
