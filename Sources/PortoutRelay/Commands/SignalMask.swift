#if canImport(Glibc)
import Glibc
#endif

/// Blocks `numbers` in the calling thread, and in every thread it starts from then on, which inherit its mask.
/// A command that takes a signal with a dispatch source calls it before it starts any thread.
///
/// libdispatch reads a source's signal from a signalfd, which returns only pending signals, and it registers the
/// source later, on its own thread. A signal blocked in every thread stays pending until then. One that is only
/// ignored is discarded on arrival, so a SIGTERM sent as the relay started would be lost, and the relay would run
/// on until killed.
func blockSignals(_ numbers: [Int32]) {
    changeSignalMask(SIG_BLOCK, numbers)
}

/// Unblocks `numbers` in the calling thread.
func unblockSignals(_ numbers: [Int32]) {
    changeSignalMask(SIG_UNBLOCK, numbers)
}

private func changeSignalMask(_ how: Int32, _ numbers: [Int32]) {
    var set = sigset_t()
    sigemptyset(&set)
    for number in numbers {
        sigaddset(&set, number)
    }
    pthread_sigmask(how, &set, nil)
}
