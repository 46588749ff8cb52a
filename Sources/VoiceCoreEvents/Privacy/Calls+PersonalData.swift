// Call events: the numbers of the call, the words said on it, and recordings.

extension CallStarted: PersonalData {
    /// `from` and `to` become ``Erased/phone`` (both are required).
    public func erasingPersonalData(_ scope: ErasureScope) -> CallStarted {
        guard scope.erasesIdentity else { return self }
        var erased = self
        erased.from = Erased.phone
        erased.to = Erased.phone
        return erased
    }
}

extension TranscriptChunk: PersonalData {
    public func erasingPersonalData(_ scope: ErasureScope) -> TranscriptChunk {
        guard scope.erasesWords else { return self }
        var erased = self
        erased.text = Erased.words(text)
        return erased
    }
}

extension TranscriptChunkV1: PersonalData {
    public func erasingPersonalData(_ scope: ErasureScope) -> TranscriptChunkV1 {
        guard scope.erasesWords else { return self }
        var erased = self
        erased.text = Erased.words(text)
        return erased
    }
}

extension IntentDetected: PersonalData {
    public func erasingPersonalData(_ scope: ErasureScope) -> IntentDetected {
        guard scope.erasesWords else { return self }
        var erased = self
        erased.matchedPhrase = Erased.words(matchedPhrase)
        return erased
    }
}

extension CallSummarized: PersonalData {
    /// The summary and each key sentence become ``Erased/text`` (the number of key sentences stays).
    public func erasingPersonalData(_ scope: ErasureScope) -> CallSummarized {
        guard scope.erasesWords else { return self }
        var erased = self
        erased.summary = Erased.words(summary)
        erased.keySentences = keySentences.map(Erased.words)
        return erased
    }
}

extension AppointmentRequested: PersonalData {
    /// Who and when in the caller's words: a caller's erasure only (transcript retention keeps the
    /// appointment the business still has to honour).
    public func erasingPersonalData(_ scope: ErasureScope) -> AppointmentRequested {
        guard scope.erasesIdentity else { return self }
        var erased = self
        erased.name = nil
        erased.phone = nil
        erased.preferredTime = Erased.text
        erased.reason = Erased.words(reason)
        return erased
    }
}

extension MessageTaken: PersonalData {
    /// The message is words said (transcript retention erases it too); name and number only on a
    /// caller's erasure.
    public func erasingPersonalData(_ scope: ErasureScope) -> MessageTaken {
        var erased = self
        if scope.erasesWords { erased.message = Erased.text }
        if scope.erasesIdentity {
            erased.name = nil
            erased.phone = nil
        }
        return erased
    }
}

extension CallTransferred: PersonalData {
    /// `to` (required) becomes ``Erased/phone``; the reason ``Erased/text``.
    public func erasingPersonalData(_ scope: ErasureScope) -> CallTransferred {
        guard scope.erasesIdentity else { return self }
        var erased = self
        erased.to = Erased.phone
        erased.reason = Erased.words(reason)
        return erased
    }
}

extension VoicemailRecorded: PersonalData {
    /// The recording's URL goes; its id (the provider's, useless without the tenant's provider
    /// credentials and the URL) and duration stay.
    public func erasingPersonalData(_ scope: ErasureScope) -> VoicemailRecorded {
        guard scope.erasesRecordings else { return self }
        var erased = self
        erased.recordingURL = nil
        return erased
    }
}
