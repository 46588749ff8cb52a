/// Tells a worker that keeps up from one that has stalled, from samples of its backlog and of how
/// much it has processed.
///
/// A worker is stalled when its backlog has grown while it processed nothing for ``stallLimit``
/// (30 s): new work arrives and none leaves. A worker with no backlog is never stalled, however
/// long it idles; one that processes anything, however slowly, is making progress (its backlog
/// may still grow: that is a capacity question for the lag metrics, not a readiness one).
///
/// Pure and clock-free: every call says when it happens, so the rule is tested with instants a
/// test makes up rather than by waiting.
///
/// ```swift
/// var watch = ProgressWatch()
/// watch.observe(backlog: lag, processed: runner.statistics.handled, at: .now)
/// if case .notReady(let reason) = watch.readiness(at: .now) { logger.warning("\(reason)") }
/// ```
import Logging

public struct ProgressWatch: Sendable, Hashable {
    /// How long a growing backlog may go without anything processed.
    public var stallLimit: Duration
    /// The last sample: backlog and processed count.
    public private(set) var backlog: Int?
    private var processed: Int?
    /// When progress was last seen (something processed, or no backlog), and the backlog then.
    private var lastProgress: ContinuousClock.Instant?
    private var backlogAtLastProgress = 0

    public init(stallLimit: Duration = .seconds(30)) {
        self.stallLimit = stallLimit
    }

    /// Records a sample: the work waiting (entries not yet delivered, a projection's gap) and the
    /// count of entries processed so far (any monotonic counter; a change counts as progress).
    public mutating func observe(backlog: Int, processed: Int, at now: ContinuousClock.Instant) {
        if lastProgress == nil || processed != self.processed || backlog == 0 {
            lastProgress = now
            backlogAtLastProgress = backlog
        }
        self.backlog = backlog
        self.processed = processed
    }

    /// Stalled (not ready, saying how far the backlog grew and for how long nothing was
    /// processed) or ready. Ready before the first sample: a watch only judges what it has seen.
    public func readiness(at now: ContinuousClock.Instant) -> Readiness {
        guard let backlog, let lastProgress else { return .ready }
        let idle = now - lastProgress
        guard backlog > backlogAtLastProgress, idle >= stallLimit else { return .ready }
        return .notReady("its backlog grew from \(backlogAtLastProgress) to \(backlog) entries while it processed nothing for \(idle.components.seconds) s")
    }
}
