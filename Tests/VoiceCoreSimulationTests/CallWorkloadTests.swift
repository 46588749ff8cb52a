import Foundation
import Testing
import VoiceCoreEvents
import VoiceCoreSimulation
import VoiceCoreTime

/// The call workload that tests, `bench project` and `bench replay` feed the platform.
@Suite("The call workload")
struct CallWorkloadTests {
    /// What a workload's items say, without their event ids (fresh UUIDv7s on every run).
    static func facts(seed: UInt64, calls: Int) -> [String] {
        var workload = CallWorkload(seed: seed, tenants: 3)
        return (workload.provisioning() + workload.calls(calls)).map { item in
            let e = item.envelope
            // Usage names the event it was derived from by its (fresh) id, and its id derives from that: left out.
            let data = String(decoding: e.data, as: UTF8.self).replacingOccurrences(of: #""(source_event|usage)_id":"[0-9a-f-]+""#, with: "", options: .regularExpression)
            return "\(item.category) \(e.type) \(e.tenantID) \(e.subject) \(e.time.rfc3339) \(data)"
        }
    }

    @Test func aSeedGivesTheSameWorkloadAndAnotherSeedAnother() {
        let first = Self.facts(seed: 7, calls: 200)
        let again = first == Self.facts(seed: 7, calls: 200)
        let another = first == Self.facts(seed: 8, calls: 200)
        #expect(again)
        #expect(!another)
        #expect(first.count > 200 * 5, "each call brings its events, transcripts, intents and usage")
    }

    @Test func everyCallStartsAndEndsInOrderAndSomeEventsComeTwice() {
        var workload = CallWorkload(seed: 3, tenants: 2)
        let items = workload.calls(500)
        var started = Set<String>()
        var ended = Set<String>()
        for item in items where item.category == .calls {
            let subject = item.envelope.subject
            if item.envelope.type == CallStarted.type { started.insert(subject) }
            #expect(started.contains(subject), "an event of call \(subject) before its CallStarted")
            if item.envelope.type == CallEnded.type { ended.insert(subject) }
        }
        #expect(started.count == 500 && ended == started)
        // Duplicates as real systems make them: the same envelope again, or the same facts under a new id.
        let ids = items.map(\.envelope.id)
        #expect(Set(ids).count < ids.count, "the very same envelope republished")
        let endings = items.filter { $0.envelope.type == CallEnded.type }
        #expect(endings.count > Set(endings.map(\.envelope.subject)).count, "a redelivered CallEnded under a new event id")
        #expect(Set(items.map(\.envelope.tenantID)).count == 2)
    }

    @Test func splitMix64IsTheReferenceGenerator() {
        // The first outputs for seed 0 of the reference implementation (Vigna's splitmix64.c).
        var random = SplitMix64(seed: 0)
        #expect([random.next(), random.next(), random.next()] == [0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4, 0x06C4_5D18_8009_454F])
    }
}
