import Foundation

/// The whole machine's CPU time by kind, read from /proc/stat, to print beside a measured figure.
///
/// On a shared virtual machine the hypervisor gives part of each core to other guests ("steal"):
/// on 2026-12-04 steal was 20–29 % while `bench project` published its workload and 1 % while it
/// projected. A figure without the steal and idle share beside it cannot be compared across days
/// or runs; with it, a reader sees whether the machine took time away or the build was slow.
struct MachineCPU {
    /// Busy CPU seconds of the whole machine between `start` and now.
    static func busySeconds(since start: MachineCPU?) -> Double? {
        guard let start, let end = now() else { return nil }
        return Double(end.busy &- start.busy) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// CPU seconds this process has used (all threads).
    static func processSeconds() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }

    /// How many times the Redis server forked, from `INFO stats` (`total_forks`).
    static func redisForks(_ info: String) -> Int? {
        info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("total_forks:") }
            .flatMap { Int($0.dropFirst("total_forks:".count).trimmingCharacters(in: .whitespaces)) }
    }

    /// A warning when Redis forked between two `total_forks` readings: an AOF rewrite (or a
    /// snapshot) ran in a child process that took a core from what was measured. With `tools/dev-env`'s
    /// Redis (AOF on, rewritten at 100 % growth) that happens every few runs that write hundreds of
    /// megabytes, and those runs measured 25–45 % lower on 2026-12-04.
    static func forkWarning(before: Int?, after: Int?) -> String? {
        guard let before, let after, after > before else { return nil }
        return "Redis forked \(after - before) time(s) meanwhile (an AOF rewrite: a child process took a core), so this figure is low; compare runs without"
    }

    /// CPU seconds the Redis server has used, from `INFO cpu` (user + system).
    static func redisSeconds(_ info: String) -> Double? {
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
    var busy: UInt64
    /// idle, iowait.
    var idle: UInt64
    var steal: UInt64

    /// Now, or nil where /proc/stat cannot be read (not Linux).
    static func now() -> MachineCPU? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return nil }
        let ticks = line.split(separator: " ").dropFirst().compactMap { UInt64($0) }
        guard ticks.count >= 8 else { return nil }
        return MachineCPU(busy: ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6], idle: ticks[3] + ticks[4], steal: ticks[7])
    }

    /// "machine CPU meanwhile: 84 % busy, 7 % idle, 9 % stolen by the hypervisor", from `start`
    /// to now; nil when either cannot be read or no time passed.
    static func share(since start: MachineCPU?) -> String? {
        guard let start, let end = now() else { return nil }
        let busy = end.busy &- start.busy, idle = end.idle &- start.idle, steal = end.steal &- start.steal
        let total = busy + idle + steal
        guard total > 0 else { return nil }
        func percent(_ part: UInt64) -> Int { Int((Double(part) * 100 / Double(total)).rounded()) }
        return "machine CPU meanwhile: \(percent(busy)) % busy, \(percent(idle)) % idle, \(percent(steal)) % stolen by the hypervisor"
    }
}

/// Where a measured run's CPU went, per unit of work, read before and after it: the whole machine
/// (/proc/stat), this process, the Redis server (`INFO cpu`) and the local Postgres server's
/// processes (/proc, by name), and the rest of the machine (what is measured: `voicecore up`, the
/// edge, the services, the projectors, and anything else running).
///
/// `voicecore loadgen` prints it with the cores the offered rate would need at that cost, so a
/// target's feasibility on a machine is arithmetic on measured figures, not a guess;
/// `voicecore bench project` takes its CPU figures from it.
struct CPUAccount {
    var machine: MachineCPU?
    var process: Double
    var redis: Double?
    var redisForks: Int?
    var postgres: Double?

    /// Now; `redisInfo` is the text of `INFO` (its cpu and stats sections), when Redis could be asked.
    static func now(redisInfo: String?) -> CPUAccount {
        CPUAccount(machine: MachineCPU.now(), process: MachineCPU.processSeconds(),
                   redis: redisInfo.flatMap(MachineCPU.redisSeconds), redisForks: redisInfo.flatMap(MachineCPU.redisForks),
                   postgres: postgresSeconds())
    }

    /// CPU seconds of the processes named `postgres` this user can see (the server and its
    /// backends; a backend that ended meanwhile takes its share with it). nil when there are none
    /// (Postgres on another machine).
    static func postgresSeconds() -> Double? {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return nil }
        let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
        var total = 0.0, found = false
        for pid in entries where pid.first?.isNumber == true {
            guard let comm = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8),
                  comm.trimmingCharacters(in: .whitespacesAndNewlines) == "postgres",
                  let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            // After the command's closing parenthesis: state is field 3, utime and stime 14 and 15.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { continue }
            total += (user + system) / ticksPerSecond
            found = true
        }
        return found ? total : nil
    }

    /// "CPU per accepted webhook: …" and the cores `rate` units a second would need at this cost,
    /// from `start` to `end`; nil when nothing was done or the machine's CPU could not be read.
    static func report(from start: CPUAccount, to end: CPUAccount, units: Int, unit: String, offeredRate: Double) -> [String]? {
        guard units > 0, let startMachine = start.machine, let endMachine = end.machine else { return nil }
        let machine = Double(endMachine.busy &- startMachine.busy) / Double(sysconf(Int32(_SC_CLK_TCK)))
        func perUnit(_ seconds: Double) -> String { "\(Int((seconds * 1_000_000 / Double(units)).rounded())) µs" }
        var parts: [String] = []
        var accounted = end.process - start.process
        parts.append("this load generator \(perUnit(end.process - start.process))")
        if let a = start.redis, let b = end.redis {
            parts.append("Redis \(perUnit(b - a))")
            accounted += b - a
        }
        if let a = start.postgres, let b = end.postgres {
            parts.append("Postgres \(perUnit(max(0, b - a)))")
            accounted += max(0, b - a)
        }
        parts.append("the rest (what is measured, and anything else running) \(perUnit(max(0, machine - accounted)))")
        let cores = machine / Double(units) * offeredRate
        let available = ProcessInfo.processInfo.activeProcessorCount
        var lines = [
            "CPU per accepted \(unit): the machine \(perUnit(machine)): \(parts.joined(separator: ", "))",
            String(format: "at that cost %.0f %@s/s (the offered rate) need %.1f cores of CPU, load generator included; this machine has %d", offeredRate, unit, cores, available),
        ]
        // An AOF rewrite's child is not in Redis' own figure: it lands in "the rest".
        if let warning = MachineCPU.forkWarning(before: start.redisForks, after: end.redisForks) { lines.append(warning) }
        return lines
    }
}
