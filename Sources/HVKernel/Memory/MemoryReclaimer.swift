/// The seam between the memory scheduler's policy and the mechanisms that take memory
/// back from a VM.
///
/// Reclaim order (ESX 2.x, Waldspurger OSDI 2002): content-based page sharing always
/// runs and lowers what each VM consumes; what a VM still consumes above its target is
/// then asked of the balloon, and host swap covers only the part the balloon has not
/// delivered (no balloon driver in the guest, or its inflation stalled for a tick).
///
/// A reclaimer is target driven, like ESX's: every scheduler tick calls
/// `setReclaimTarget` with the number of pages of a VM the mechanism should hold
/// (ballooned pages for the balloon, swapped-out pages for swap); it moves toward it at
/// its own pace (the guest polls its balloon target once a second) and reports what it
/// holds through `reclaimedPages`, which `hvhost top` shows as MCTLSZ / SWCUR.
/// A lower target means give pages back (deflate, swap in). Calls come from the
/// scheduler's thread, never concurrently for one reclaimer; a VM the reclaimer does
/// not know (not attached, or stopped) is ignored and reports 0.
package protocol MemoryReclaimer: AnyObject, Sendable {
    /// Which mechanism this is; fixes its place in the reclaim order.
    var kind: MemoryReclaimKind { get }
    /// Asks the mechanism to hold `pages` pages (4 KiB) of VM `vm`.
    func setReclaimTarget(vm: String, pages: Int)
    /// Pages of VM `vm` the mechanism holds now.
    func reclaimedPages(vm: String) -> Int
}

package enum MemoryReclaimKind: String, Sendable, CaseIterable {
    /// A guest driver pins pages and hands them back (soft: the guest picks the pages).
    case balloon
    /// The VMkernel writes pages to a per-VM swap file (hard: the last resort).
    case swap
}
