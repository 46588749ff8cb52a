import Foundation
import Testing
@testable import VoiceCoreSimulation

/// The CPU account printed beside `loadgen` and `bench` figures reads Redis' and the machine's
/// counters correctly and divides them by the work done.
@Suite("CPU accounting")
struct CPUAccountTests {
    static let info = """
        # CPU\r
        used_cpu_sys:12.500000\r
        used_cpu_user:30.250000\r
        used_cpu_sys_children:1.000000\r
        # Stats\r
        total_forks:7\r
        total_forks_extra:1\r
        """

    @Test func redisCPUAndForksAreReadFromInfo() {
        #expect(MachineCPU.redisSeconds(Self.info) == 42.75)
        #expect(MachineCPU.redisForks(Self.info) == 7)
        #expect(MachineCPU.redisSeconds("used_cpu_sys:1.0") == nil, "both user and system time, or nothing")
        #expect(MachineCPU.redisForks("# Stats") == nil)
    }

    @Test func aForkIsWarnedAboutOnlyWhenOneHappened() {
        #expect(MachineCPU.forkWarning(before: 7, after: 7) == nil)
        #expect(MachineCPU.forkWarning(before: nil, after: 9) == nil)
        #expect(MachineCPU.forkWarning(before: 7, after: 9)?.hasPrefix("Redis forked 2 time(s) meanwhile") == true)
    }

    @Test func theMachineIsReadFromProcStat() throws {
        let now = try #require(MachineCPU.now(), "Linux: /proc/stat")
        #expect(now.busy + now.idle > 0)
        #expect(MachineCPU.processSeconds() > 0)
    }

    @Test func theReportDividesEachShareByTheWorkDone() throws {
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        // 2 s of busy machine over 1,000 webhooks: 2,000 µs each; this process 0.5 s, Redis 0.25 s, Postgres 0.75 s.
        let start = CPUAccount(machine: MachineCPU(busy: 1000, idle: 0, steal: 0), process: 1, redis: 10, redisForks: 3, postgres: 5)
        let end = CPUAccount(machine: MachineCPU(busy: 1000 + UInt64(2 * ticks), idle: 0, steal: 0), process: 1.5, redis: 10.25, redisForks: 4, postgres: 5.75)
        let lines = try #require(CPUAccount.report(from: start, to: end, units: 1000, unit: "webhook", offeredRate: 500))
        #expect(lines[0] == "CPU per accepted webhook: the machine 2000 µs: this load generator 500 µs, Redis 250 µs, Postgres 750 µs, the rest (what is measured, and anything else running) 500 µs")
        #expect(lines[1].hasPrefix("at that cost 500 webhooks/s (the offered rate) need 1.0 cores of CPU"))
        #expect(lines.count == 3 && lines[2].hasPrefix("Redis forked 1 time(s)"))
        #expect(CPUAccount.report(from: start, to: end, units: 0, unit: "webhook", offeredRate: 500) == nil)
    }
}
