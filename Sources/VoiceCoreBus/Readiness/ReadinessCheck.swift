/// Whether one part of a process can do its work now, and if not, why.
public enum Readiness: Sendable, Hashable {
    case ready
    /// Not ready, with a reason an operator can act on (which dependency, since when, how far behind).
    case notReady(String)

    public var isReady: Bool {
        if case .ready = self { return true }
        return false
    }

    /// Why it is not ready; `nil` when it is.
    public var reason: String? {
        if case .notReady(let reason) = self { return reason }
        return nil
    }
}

/// One named condition of a process's readiness, evaluated each time `/ready` is asked.
///
/// A process is ready when every one of its checks is. The checks are plain values, so a process
/// composes those of its parts (its consumer groups, its projectors) and hands them to whatever
/// serves `/ready`:
///
/// ```swift
/// let consumers = ConsumerReadiness(runners: runners, redis: redisConfiguration)
/// let checks = consumers.checks + [ReadinessCheck("disk") { freeBytes() > 1 << 30 ? .ready : .notReady("disk full") }]
/// ```
///
/// `evaluate` should answer quickly from state its part keeps (a probe has a deadline of a few
/// seconds); a check that must ask a server keeps its own connection and timeout.
public struct ReadinessCheck: Sendable {
    /// What is checked, as shown in `/ready` (`consumer:billing`, `projector:calls`).
    public var name: String
    public var evaluate: @Sendable () async -> Readiness

    public init(_ name: String, evaluate: @escaping @Sendable () async -> Readiness) {
        self.name = name
        self.evaluate = evaluate
    }

    /// Evaluates every check at once; the results in the checks' order.
    public static func evaluateAll(_ checks: [ReadinessCheck]) async -> [(name: String, readiness: Readiness)] {
        await withTaskGroup(of: (Int, Readiness).self) { group in
            for (index, check) in checks.enumerated() { group.addTask { (index, await check.evaluate()) } }
            var results = [Readiness](repeating: .ready, count: checks.count)
            for await (index, readiness) in group { results[index] = readiness }
            return zip(checks, results).map { ($0.name, $1) }
        }
    }
}
