import VoiceCoreEvents
import VoiceCoreTime

/// A call's progress as the call service remembers it (a Redis hash per call).
public struct CallProgress: Sendable, Hashable {
    public var started = false
    public var startedAt: Timestamp?
    public var answeredAt: Timestamp?
    public var ended = false
    /// The highest provider sequence applied; -1 before the first report.
    public var sequence: Int64 = -1
    /// How far the call got: 0 initiated, 1 ringing, 2 in progress, 3 over; -1 before the first report.
    public var rank = -1

    public init() {}

    init(fields: [String: String]) {
        started = fields["started"] == "1"
        startedAt = fields["started_at"].flatMap(Timestamp.init(rfc3339:))
        answeredAt = fields["answered_at"].flatMap(Timestamp.init(rfc3339:))
        ended = fields["ended"] == "1"
        sequence = fields["sequence"].flatMap(Int64.init) ?? -1
        rank = fields["rank"].flatMap(Int.init) ?? -1
    }

    var fields: [String: String] {
        var fields = ["started": started ? "1" : "0", "ended": ended ? "1" : "0", "sequence": String(sequence), "rank": String(rank)]
        if let startedAt { fields["started_at"] = startedAt.rfc3339 }
        if let answeredAt { fields["answered_at"] = answeredAt.rfc3339 }
        return fields
    }
}

/// The per-call state machine: initiated → ringing → in-progress → completed | busy | failed |
/// no-answer | canceled.
///
/// - The first report of a call starts it (``CallStarted``), whatever its status: a call first
///   heard of when it is answered or over still gets its start, with the time it implies.
/// - ``CallAnswered`` on in-progress, or implied by a completed call that was never reported
///   answered (answered at end − duration: providers measure the duration from the answer).
/// - ``CallEnded`` on the first final status; nothing after it changes the call.
/// - A non-final report that is older than one applied (lower provider sequence) or brings the
///   call no further (ringing after in-progress, a duplicate) is stale and changes nothing. The
///   incoming-call webhook carries sequence 0, like the first status callback: equal sequences
///   are ordered by status. A final report always ends the call: providers send it last,
///   and a lost or late earlier callback must not keep a call open forever.
public enum CallStateMachine {
    public enum Output: Sendable, Hashable {
        case started(CallStarted)
        case answered(CallAnswered)
        case ended(CallEnded)
    }

    public static func apply(_ report: ReportCallProgress, to progress: inout CallProgress) -> [Output] {
        if progress.ended { return [] }
        let final = finalStatus(report.status)
        let rank = Self.rank(report.status)
        if final == nil && (report.sequence < progress.sequence || rank <= progress.rank) { return [] }
        var outputs: [Output] = []
        let duration = Int64(max(0, report.durationSeconds ?? 0)) * 1_000_000
        if !progress.started {
            let startedAt = report.status == .completed ? report.occurredAt.adding(microseconds: -duration) : report.occurredAt
            outputs.append(.started(CallStarted(callID: report.callID, provider: report.provider, providerCallID: report.providerCallID,
                                                direction: report.direction, from: report.from, to: report.to, startedAt: startedAt)))
            progress.started = true
            progress.startedAt = startedAt
        }
        if progress.answeredAt == nil && (report.status == .inProgress || report.status == .completed) {
            let answeredAt = report.status == .completed ? report.occurredAt.adding(microseconds: -duration) : report.occurredAt
            outputs.append(.answered(CallAnswered(callID: report.callID, answeredAt: answeredAt, answeredBy: answeredBy(report.providerFields))))
            progress.answeredAt = answeredAt
        }
        if let final {
            let seconds: Int
            if let reported = report.durationSeconds {
                seconds = reported
            } else if let answeredAt = progress.answeredAt {
                seconds = Int(max(0, report.occurredAt.microsecondsSinceEpoch - answeredAt.microsecondsSinceEpoch) / 1_000_000)
            } else {
                seconds = 0
            }
            outputs.append(.ended(CallEnded(callID: report.callID, endedAt: report.occurredAt, status: final, durationSeconds: seconds,
                                            answered: progress.answeredAt != nil, hungUpBy: hungUpBy(report.providerFields))))
            progress.ended = true
        }
        progress.sequence = max(progress.sequence, report.sequence)
        progress.rank = max(progress.rank, rank)
        return outputs
    }

    static func rank(_ status: ReportCallProgress.Status) -> Int {
        switch status {
        case .initiated: return 0
        case .ringing: return 1
        case .inProgress: return 2
        case .completed, .busy, .failed, .noAnswer, .canceled: return 3
        }
    }

    static func finalStatus(_ status: ReportCallProgress.Status) -> CallEnded.FinalStatus? {
        switch status {
        case .initiated, .ringing, .inProgress: return nil
        case .completed: return .completed
        case .busy: return .busy
        case .failed: return .failed
        case .noAnswer: return .noAnswer
        case .canceled: return .canceled
        }
    }

    /// Twilio's answering-machine detection (`AnsweredBy`), when the tenant enabled it.
    static func answeredBy(_ fields: [String: String]) -> CallAnswered.AnsweredBy {
        guard let value = fields["AnsweredBy"]?.lowercased() else { return .unknown }
        if value == "human" { return .human }
        if value.hasPrefix("machine") || value == "fax" { return .machine }
        return .unknown
    }

    /// Telnyx's `hangup_source` (caller, callee, unknown); Twilio does not say.
    static func hungUpBy(_ fields: [String: String]) -> CallEnded.HungUpBy {
        switch fields["data.payload.hangup_source"] {
        case "caller": return .caller
        case "callee": return .callee
        default: return .unknown
        }
    }
}
