import Foundation

/// The whole machine's CPU time by kind, read from /proc/stat, to print beside a measured figure.
///
/// On a shared virtual machine the hypervisor gives part of each core to other guests ("steal"):
/// on 2026-12-04 steal was 20–29 % while `bench project` published its workload and 1 % while it
/// projected. A figure without the steal and idle share beside it cannot be compared across days
/// or runs; with it, a reader sees whether the machine took time away or the build was slow.
public struct MachineCPU: Sendable {
    /// Busy CPU seconds of the whole machine between `start` and now.
    public static func busySeconds(since start: MachineCPU?) -> Double? {
        guard let start, let end = now() else { return nil }
        return Double(end.busy &- start.busy) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// CPU seconds this process has used (all threads).
    public static func processSeconds() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }

    /// How many times the Redis server forked, from `INFO stats` (`total_forks`).
    public static func redisForks(_ info: String) -> Int? {
        info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("total_forks:") }
            .flatMap { Int($0.dropFirst("total_forks:".count).trimmingCharacters(in: .whitespaces)) }
    }

    /// A warning when Redis forked between two `total_forks` readings: an AOF rewrite (or a
    /// snapshot) ran in a child process that took a core from what was measured. With `tools/dev-env`'s
    /// Redis (AOF on, rewritten at 100 % growth) that happens every few runs that write hundreds of
    /// megabytes, and those runs measured 25–45 % lower on 2026-12-04.
    public static func forkWarning(before: Int?, after: Int?) -> String? {
        guard let before, let after, after > before else { return nil }
        return "Redis forked \(after - before) time(s) meanwhile (an AOF rewrite: a child process took a core), so this figure is low; compare runs without"
    }

    /// CPU seconds the Redis server has used, from `INFO cpu` (user + system).
    public static func redisSeconds(_ info: String) -> Double? {
        var total = 0.0, found = 0
        for line in info.split(whereSeparator: \.isNewline) {
            for key in ["used_cpu_user:", "used_cpu_sys:"] where line.hasPrefix(key) {
                if let value = Double(line.dropFirst(key.count).trimmingCharacters(in: .whitespaces)) {
                    total += value
                    found += 1
                }
            }
        }
        return found == 2 ? total : nil
    }

    /// user, nice, system, irq, softirq (guest time is counted in user).
    public var busy: UInt64
    /// idle, iowait.
    public var idle: UInt64
    public var steal: UInt64

    /// Now, or nil where /proc/stat cannot be read (not Linux).
    public static func now() -> MachineCPU? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return nil }
        let ticks = line.split(separator: " ").dropFirst().compactMap { UInt64($0) }
        guard ticks.count >= 8 else { return nil }
        return MachineCPU(busy: ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6], idle: ticks[3] + ticks[4], steal: ticks[7])
    }

    /// "machine CPU meanwhile: 84 % busy, 7 % idle, 9 % stolen by the hypervisor", from `start`
    /// to now; nil when either cannot be read or no time passed.
    public static func share(since start: MachineCPU?) -> String? {
        guard let start, let end = now() else { return nil }
        let busy = end.busy &- start.busy, idle = end.idle &- start.idle, steal = end.steal &- start.steal
        let total = busy + idle + steal
        guard total > 0 else { return nil }
        func percent(_ part: UInt64) -> Int { Int((Double(part) * 100 / Double(total)).rounded()) }
        return "machine CPU meanwhile: \(percent(busy)) % busy, \(percent(idle)) % idle, \(percent(steal)) % stolen by the hypervisor"
    }
}
