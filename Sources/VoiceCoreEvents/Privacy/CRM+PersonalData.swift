// CRM events: who the contact or lead is, and what was noted about them.

extension LeadCreated: PersonalData {
    /// Phone and e-mail go; the name becomes ``Erased/text`` because the schema requires one of
    /// name, phone or e-mail; notes become ``Erased/text``.
    public func erasingPersonalData(_ scope: ErasureScope) -> LeadCreated {
        guard scope.erasesIdentity else { return self }
        var erased = self
        erased.name = Erased.text
        erased.phone = nil
        erased.email = nil
        erased.notes = Erased.words(notes)
        return erased
    }
}

extension ContactUpserted: PersonalData {
    public func erasingPersonalData(_ scope: ErasureScope) -> ContactUpserted {
        guard scope.erasesIdentity else { return self }
        var erased = self
        erased.name = nil
        erased.phone = nil
        erased.email = nil
        return erased
    }
}

extension InteractionLogged: PersonalData {
    public func erasingPersonalData(_ scope: ErasureScope) -> InteractionLogged {
        guard scope.erasesIdentity else { return self }
        var erased = self
        erased.summary = Erased.words(summary)
        return erased
    }
}
