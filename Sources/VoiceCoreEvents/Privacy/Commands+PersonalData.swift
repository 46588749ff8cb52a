// Commands the edge and the tenant API publish with a caller's data in them.

extension ReportCallProgress: PersonalData {
    /// `from` and `to` become ``Erased/phone``; the provider's raw fields (which repeat the numbers,
    /// and may hold the caller's name and address from caller id) become `{}`.
    public func erasingPersonalData(_ scope: ErasureScope) -> ReportCallProgress {
        guard scope.erasesIdentity else { return self }
        var erased = self
        erased.from = Erased.phone
        erased.to = Erased.phone
        erased.providerFields = [:]
        return erased
    }
}

extension ReportTranscriptSegment: PersonalData {
    public func erasingPersonalData(_ scope: ErasureScope) -> ReportTranscriptSegment {
        guard scope.erasesWords else { return self }
        var erased = self
        erased.text = Erased.words(text)
        return erased
    }
}

extension ReportRecording: PersonalData {
    public func erasingPersonalData(_ scope: ErasureScope) -> ReportRecording {
        guard scope.erasesRecordings else { return self }
        var erased = self
        erased.recordingURL = nil
        return erased
    }
}

extension CreateLead: PersonalData {
    /// Phone and e-mail go; the name becomes ``Erased/text`` because the schema requires one of
    /// name, phone or e-mail; notes become ``Erased/text``.
    public func erasingPersonalData(_ scope: ErasureScope) -> CreateLead {
        guard scope.erasesIdentity else { return self }
        var erased = self
        erased.name = Erased.text
        erased.phone = nil
        erased.email = nil
        erased.notes = Erased.words(notes)
        return erased
    }
}

extension UpdateContact: PersonalData {
    /// Phone and e-mail go; the name becomes ``Erased/text`` (the schema requires one of the three).
    public func erasingPersonalData(_ scope: ErasureScope) -> UpdateContact {
        guard scope.erasesIdentity else { return self }
        var erased = self
        erased.name = Erased.text
        erased.phone = nil
        erased.email = nil
        return erased
    }
}
