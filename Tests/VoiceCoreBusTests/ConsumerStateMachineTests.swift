import Testing
import VoiceCoreBus

/// The consumer's decisions, without Redis: each transition of ``ConsumerStateMachine``.
@Suite("Consumer decisions")
struct ConsumerStateMachineTests {
    let machine: ConsumerStateMachine = {
        var configuration = ConsumerConfiguration(group: "billing", streams: ["vc:{p00}:calls"], maxDeliveries: 3,
                                                  retryDelay: .milliseconds(100), maxRetryDelay: .seconds(10),
                                                  claimIdle: .seconds(30), claimInterval: .seconds(5), leaseTTL: .seconds(9))
        configuration.consumer = "billing-1"
        return ConsumerStateMachine(configuration: configuration)
    }()

    // MARK: An entry

    @Test("a handled entry is acknowledged")
    func successAcknowledges() {
        var entry = ConsumerStateMachine.Entry(deliveries: 1)
        #expect(machine.next(&entry, after: .handled) == .acknowledge)
    }

    @Test("an entry with nothing to handle is skipped (acknowledged unhandled)", arguments: [
        ConsumerStateMachine.EntryEvent.deleted, .notHandled,
    ])
    func nothingToHandleSkips(event: ConsumerStateMachine.EntryEvent) {
        var entry = ConsumerStateMachine.Entry(deliveries: 1)
        #expect(machine.next(&entry, after: event) == .skip)
    }

    @Test("an undecodable entry is dead-lettered at once, whatever its deliveries")
    func undecodableDeadLetters() {
        var entry = ConsumerStateMachine.Entry(deliveries: 1)
        #expect(machine.next(&entry, after: .undecodable) == .deadLetter(reason: "undecodable", attempts: 1))
    }

    @Test("a failure under max deliveries is retried, its pause growing with the deliveries")
    func failureUnderMaxRetries() {
        var entry = ConsumerStateMachine.Entry(deliveries: 1)
        #expect(machine.next(&entry, after: .failed) == .retry(after: .init(backoff: machine.retryBackoff, failures: 1)))
        #expect(machine.next(&entry, after: .reclaimed(deliveries: 2)) == .attempt)
        #expect(entry.deliveries == 2)
        #expect(machine.next(&entry, after: .failed) == .retry(after: .init(backoff: machine.retryBackoff, failures: 2)))
        // 100 ms, then 200 ms, each ±20 %.
        let second = ConsumerStateMachine.Pause(backoff: machine.retryBackoff, failures: 2).duration
        #expect(second >= .milliseconds(160) && second <= .milliseconds(240))
    }

    @Test("a failure at max deliveries is dead-lettered with its attempts")
    func failureAtMaxDeadLetters() {
        var entry = ConsumerStateMachine.Entry(deliveries: 2)
        #expect(machine.next(&entry, after: .failed) == .retry(after: .init(backoff: machine.retryBackoff, failures: 2)))
        _ = machine.next(&entry, after: .reclaimed(deliveries: 3))
        #expect(machine.next(&entry, after: .failed) == .deadLetter(reason: "handler failed 3 times", attempts: 3))
        // Redis may count more (a crash re-read it): still dead-lettered, with Redis' count.
        var counted = ConsumerStateMachine.Entry(deliveries: 7)
        #expect(machine.next(&counted, after: .failed) == .deadLetter(reason: "handler failed 7 times", attempts: 7))
    }

    @Test("an outage waits with the entry pending and uses up no delivery")
    func outageWaitsWithoutDelivery() {
        var entry = ConsumerStateMachine.Entry(deliveries: 3)  // at max: one more failure would dead-letter
        for tries in 1...120 {
            let action = machine.next(&entry, after: .outage)
            #expect(action == .waitOutOutage(.init(backoff: machine.outageBackoff, failures: tries), log: tries == 1 || tries % 50 == 0))
        }
        #expect(entry.deliveries == 3)
        // The dependency answers and the same attempt succeeds: acknowledged, not dead-lettered.
        #expect(machine.next(&entry, after: .handled) == .acknowledge)
    }

    @Test("outage pauses grow from 50 ms to at most 1 s")
    func outagePausesAreBounded() {
        let first = ConsumerStateMachine.Pause(backoff: machine.outageBackoff, failures: 1).duration
        let late = ConsumerStateMachine.Pause(backoff: machine.outageBackoff, failures: 40).duration
        #expect(first >= .milliseconds(40) && first <= .milliseconds(60))
        #expect(late >= .milliseconds(800) && late <= .milliseconds(1200))
    }

    @Test("shutdown during a pause, or an entry taken over, leaves it pending", arguments: [
        ConsumerStateMachine.EntryEvent.stopping, .takenOver,
    ])
    func stoppingOrTakenOverLeavesPending(event: ConsumerStateMachine.EntryEvent) {
        var entry = ConsumerStateMachine.Entry(deliveries: 2)
        #expect(machine.next(&entry, after: event) == .leavePending)
    }

    @Test("deliveries: 1 when new; Redis' count less the re-reads an outage caused, at least 1")
    func deliveriesCount() {
        #expect(ConsumerStateMachine.deliveries(new: true, countedByRedis: 9, rereadsAfterOutage: 0) == 1)
        #expect(ConsumerStateMachine.deliveries(new: false, countedByRedis: 4, rereadsAfterOutage: 0) == 4)
        #expect(ConsumerStateMachine.deliveries(new: false, countedByRedis: 4, rereadsAfterOutage: 3) == 1)
        #expect(ConsumerStateMachine.deliveries(new: false, countedByRedis: 2, rereadsAfterOutage: 5) == 1)
        #expect(ConsumerStateMachine.deliveries(new: false, countedByRedis: nil, rereadsAfterOutage: 0) == 1)
    }

    // MARK: A partition's batch

    @Test("a batch meeting an outage waits and goes on; a batch scope restarts from its first entry")
    func batchOutageWaits() {
        var plain = ConsumerStateMachine.Batch(scoped: false)
        #expect(machine.next(&plain, afterFailure: true) == .waitOutOutage(.init(backoff: machine.outageBackoff, failures: 1), log: true, restart: false))
        #expect(machine.next(&plain, afterFailure: true) == .waitOutOutage(.init(backoff: machine.outageBackoff, failures: 2), log: false, restart: false))
        var scoped = ConsumerStateMachine.Batch(scoped: true)
        #expect(machine.next(&scoped, afterFailure: true) == .waitOutOutage(.init(backoff: machine.outageBackoff, failures: 1), log: true, restart: true))
    }

    @Test("a batch failing otherwise gives up (the runner reads its pending entries again)")
    func batchFailureGivesUp() {
        var plain = ConsumerStateMachine.Batch(scoped: false)
        #expect(machine.next(&plain, afterFailure: false) == .fail(restart: false))
        var scoped = ConsumerStateMachine.Batch(scoped: true)
        #expect(machine.next(&scoped, afterFailure: false) == .fail(restart: true))
    }

    // MARK: A read

    @Test("recovery: a missing group is created again, an outage waited out, anything else paused on")
    func readRecovery() {
        #expect(machine.recovery(from: .groupMissing) == .createGroups)
        #expect(machine.recovery(from: .outage) == .waitForRedis)
        #expect(machine.recovery(from: .other) == .pause(.milliseconds(100)))
    }

    // MARK: Between reads

    @Test("claims of idle entries and requeued entries come every claim interval")
    func housekeepingEveryClaimInterval() {
        let start = ContinuousClock.now
        var schedule = ConsumerStateMachine.Schedule(startedAt: start)
        #expect(machine.housekeeping(&schedule, at: start + .seconds(4)).isEmpty)
        #expect(machine.housekeeping(&schedule, at: start + .seconds(5)) == [.claimIdle(atLeast: .seconds(30)), .handleRequeued])
        #expect(machine.housekeeping(&schedule, at: start + .seconds(6)).isEmpty)
        #expect(machine.housekeeping(&schedule, at: start + .seconds(10)) == [.claimIdle(atLeast: .seconds(30)), .handleRequeued])
    }

    @Test("claims wait while a read is outstanding (they would take back entries read ahead) and come right after")
    func housekeepingWaitsForNoReadOutstanding() {
        let start = ContinuousClock.now
        var schedule = ConsumerStateMachine.Schedule(startedAt: start)
        #expect(machine.housekeepingDue(schedule, at: start + .seconds(5)))
        #expect(machine.housekeeping(&schedule, at: start + .seconds(5), readOutstanding: true).isEmpty)
        #expect(machine.housekeeping(&schedule, at: start + .seconds(6)) == [.claimIdle(atLeast: .seconds(30)), .handleRequeued])
        #expect(!machine.housekeepingDue(schedule, at: start + .seconds(7)))
    }

    @Test("a partition just leased has everything pending in it claimed, however idle")
    func takeOverClaimsEverything() {
        #expect(machine.takeOver == .claimIdle(atLeast: .zero))
    }

    @Test("the lease check is due at once, then every third of the lease TTL; never without leases")
    func leaseCheckCadence() {
        let start = ContinuousClock.now
        var schedule = ConsumerStateMachine.Schedule(startedAt: start)
        #expect(machine.leaseCheckDue(schedule, at: start))
        schedule.lastLeaseCheck = start
        #expect(!machine.leaseCheckDue(schedule, at: start + .seconds(2)))
        #expect(machine.leaseCheckDue(schedule, at: start + .seconds(3)))
        var unleased = machine
        unleased.leaseTTL = nil
        #expect(!unleased.leaseCheckDue(ConsumerStateMachine.Schedule(startedAt: start), at: start))
    }
}
