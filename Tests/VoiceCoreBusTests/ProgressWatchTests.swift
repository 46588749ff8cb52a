import Testing
import VoiceCoreBus

/// The readiness rule for a worker with a backlog, on made-up instants: never a real wait.
@Suite("Readiness: a growing backlog with nothing processed for 30 s is a stall")
struct ProgressWatchTests {
    let start = ContinuousClock.now

    func at(_ seconds: Int) -> ContinuousClock.Instant { start + .seconds(seconds) }

    @Test("lag that grows while nothing is handled: ready up to 30 s, not ready from then on, saying how far it grew")
    func growingLagWithoutHandlingIsAStall() {
        var watch = ProgressWatch()
        watch.observe(backlog: 5, processed: 100, at: at(0))
        watch.observe(backlog: 40, processed: 100, at: at(10))
        #expect(watch.readiness(at: at(10)) == .ready)
        watch.observe(backlog: 90, processed: 100, at: at(29))
        #expect(watch.readiness(at: at(29)) == .ready, "29 s is not yet a stall")
        watch.observe(backlog: 120, processed: 100, at: at(30))
        let verdict = watch.readiness(at: at(30))
        #expect(!verdict.isReady)
        #expect(verdict.reason == "its backlog grew from 5 to 120 entries while it processed nothing for 30 s", "\(verdict)")
        // Still stalled later, whatever the time of the question.
        #expect(!watch.readiness(at: at(95)).isReady)
    }

    @Test("one entry handled is progress: ready again at once, and the 30 s start over")
    func handlingAnythingEndsTheStall() {
        var watch = ProgressWatch()
        watch.observe(backlog: 1, processed: 0, at: at(0))
        watch.observe(backlog: 50, processed: 0, at: at(45))
        #expect(!watch.readiness(at: at(45)).isReady)
        watch.observe(backlog: 60, processed: 1, at: at(50))
        #expect(watch.readiness(at: at(50)) == .ready)
        watch.observe(backlog: 70, processed: 1, at: at(79))
        #expect(watch.readiness(at: at(79)) == .ready)
        watch.observe(backlog: 71, processed: 1, at: at(80))
        #expect(watch.readiness(at: at(80)).reason == "its backlog grew from 60 to 71 entries while it processed nothing for 30 s")
    }

    @Test("a consumer that keeps handling is ready even while its lag grows (slow is not stalled)")
    func slowButMovingIsReady() {
        var watch = ProgressWatch()
        for second in stride(from: 0, through: 300, by: 5) {
            watch.observe(backlog: second * 10, processed: second, at: at(second))
            #expect(watch.readiness(at: at(second)) == .ready, "at \(second) s")
        }
    }

    @Test("caught up (no backlog) or a backlog that does not grow: ready however long nothing is handled")
    func idleIsReady() {
        var idle = ProgressWatch()
        for second in stride(from: 0, through: 600, by: 10) { idle.observe(backlog: 0, processed: 7, at: at(second)) }
        #expect(idle.readiness(at: at(600)) == .ready)

        var steady = ProgressWatch()
        steady.observe(backlog: 12, processed: 3, at: at(0))
        steady.observe(backlog: 12, processed: 3, at: at(120))
        #expect(steady.readiness(at: at(120)) == .ready)
        // A lag that fell to zero and then grows starts counting from when it was zero.
        steady.observe(backlog: 0, processed: 3, at: at(130))
        steady.observe(backlog: 4, processed: 3, at: at(150))
        #expect(steady.readiness(at: at(159)) == .ready)
        #expect(steady.readiness(at: at(160)).reason == "its backlog grew from 0 to 4 entries while it processed nothing for 30 s")
    }

    @Test("the limit is the watch's: a shorter one judges sooner")
    func configurableLimit() {
        var watch = ProgressWatch(stallLimit: .seconds(5))
        watch.observe(backlog: 1, processed: 0, at: at(0))
        watch.observe(backlog: 2, processed: 0, at: at(5))
        #expect(!watch.readiness(at: at(5)).isReady)
        #expect(ProgressWatch().readiness(at: at(0)) == .ready, "nothing observed yet: nothing to judge")
    }
}
