import Foundation

/// Where a measured run's CPU went, per unit of work, read before and after it: the whole machine
/// (/proc/stat), this process, the Redis server (`INFO cpu`) and the local Postgres server's
/// processes (/proc, by name), and the rest of the machine (what is measured: `voicecore up`, the
/// edge, the services, the projectors, and anything else running).
///
/// `voicecore loadgen` prints it with the cores the offered rate would need at that cost, so a
/// target's feasibility on a machine is arithmetic on measured figures, not a guess;
/// `voicecore bench project` takes its CPU figures from it.
public struct CPUAccount: Sendable {
    /// The whole machine (nil where /proc/stat cannot be read).
    public var machine: MachineCPU?
    /// CPU seconds of this process.
    public var process: Double
    /// CPU seconds of the Redis server, when it could be asked.
    public var redis: Double?
    /// Times the Redis server forked (`total_forks`), when it could be asked.
    public var redisForks: Int?
    /// CPU seconds of the local Postgres server's processes, when there are any.
    public var postgres: Double?

    /// Now; `redisInfo` is the text of `INFO` (its cpu and stats sections), when Redis could be asked.
    public static func now(redisInfo: String?) -> CPUAccount {
        CPUAccount(machine: MachineCPU.now(), process: MachineCPU.processSeconds(),
                   redis: redisInfo.flatMap(MachineCPU.redisSeconds), redisForks: redisInfo.flatMap(MachineCPU.redisForks),
                   postgres: postgresSeconds())
    }

    /// CPU seconds of the processes named `postgres` this user can see (the server and its
    /// backends; a backend that ended meanwhile takes its share with it). nil when there are none
    /// (Postgres on another machine).
    public static func postgresSeconds() -> Double? {
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
    public static func report(from start: CPUAccount, to end: CPUAccount, units: Int, unit: String, offeredRate: Double) -> [String]? {
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
