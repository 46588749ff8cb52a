import Foundation
import Synchronization

/// Runs `body` and returns the elapsed seconds.
func measure(_ body: () async throws -> Void) async rethrows -> Double {
    let clock = ContinuousClock()
    let start = clock.now
    try await body()
    let elapsed = clock.now - start
    let (seconds, attoseconds) = elapsed.components
    return Double(seconds) + Double(attoseconds) / 1e18
}

/// A rate rounded to a whole number with thousands separators: `1,234,567`.
func formatRate(_ value: Double) -> String {
    let rounded = Int(value.rounded())
    var digits = Array(String(rounded))
    var index = digits.count - 3
    while index > 0 {
        digits.insert(",", at: index)
        index -= 3
    }
    return String(digits)
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}

/// Samples this process's resident set size from /proc/self/statm.
final class RSSSampler: Sendable {
    private let peakPages = Mutex(0)

    func sample() {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return }
        let fields = text.split(separator: " ")
        if fields.count > 1, let pages = Int(fields[1]) { peakPages.withLock { $0 = max($0, pages) } }
    }

    var peakMegabytes: Int { peakPages.withLock { $0 } * Int(sysconf(Int32(_SC_PAGESIZE))) / 1_048_576 }
}
