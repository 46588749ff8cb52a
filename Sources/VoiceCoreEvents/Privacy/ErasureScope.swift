/// What an erasure removes from a message.
public enum ErasureScope: String, Sendable, Hashable, CaseIterable {
    /// Everything personal: who called (numbers, names, e-mail addresses), what they said and what
    /// was written about them, and where their recordings are. A caller's erasure request.
    case caller
    /// Only the words said on the call: transcript text, the caller's turns and the receptionist's
    /// replies, summaries and key sentences, matched phrases and taken messages. Numbers stay.
    /// Transcript retention.
    case transcripts
    /// Only recording URLs. Recording retention.
    case recordings

    /// Whether the words said on a call go.
    var erasesWords: Bool { self != .recordings }
    /// Whether recording URLs go.
    var erasesRecordings: Bool { self != .transcripts }
    /// Whether who the caller is (numbers, names, e-mail addresses, notes about them) goes.
    var erasesIdentity: Bool { self == .caller }
}

/// A message with personal fields, which it can return with them replaced by the placeholders of
/// ``Erased``.
///
/// Every message type (event or command) with a personal field conforms; the result validates as
/// the original type and version did, so an erased archive still decodes and replays. Ids, times,
/// numbers (durations, counts, confidences, quantities), enumerations (intent, sentiment, action)
/// and provider ids stay.
///
/// ```swift
/// let kept = reply.erasingPersonalData(.transcripts)   // heard, text and slot values "[erased]"
/// ```
public protocol PersonalData: Message {
    /// This message with the personal fields of `scope` replaced; unchanged when it has none.
    func erasingPersonalData(_ scope: ErasureScope) -> Self
}
