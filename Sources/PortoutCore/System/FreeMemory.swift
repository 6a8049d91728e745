import CLinuxShim

/// Returns the allocator's free memory to the kernel after a bulk operation freed much of it at once. glibc keeps
/// freed memory in its arenas, so the process's RSS would otherwise stay at the operation's peak.
public func releaseFreeMemory() {
    portout_release_free_memory()
}
