/// Exponential backoff with jitter: `initial` after the first failure, doubling per failure up to
/// `maximum`, each delay ±20 % at random (so retries of many failures spread out).
public struct RetryBackoff: Sendable, Hashable {
    public var initial: Duration
    public var maximum: Duration

    public init(initial: Duration, maximum: Duration) {
        self.initial = initial
        self.maximum = maximum
    }

    public func delay(afterFailures failures: Int) -> Duration {
        var delay = initial
        for _ in 1..<max(1, failures) where delay < maximum { delay *= 2 }
        return min(delay, maximum) * Double.random(in: 0.8...1.2)
    }
}
