// The conversation with the receptionist: what the caller said and what they were told.

extension ReportCallerTurn: PersonalData {
    /// Text becomes ``Erased/text`` (an empty turn stays empty) and digits go; the caller's and the
    /// dialled numbers go on a caller's erasure.
    public func erasingPersonalData(_ scope: ErasureScope) -> ReportCallerTurn {
        var erased = self
        if scope.erasesWords {
            erased.text = Erased.words(text)
            // Keys pressed may be an account or card number; the schema's digit pattern has no
            // placeholder, so they go.
            erased.digits = nil
        }
        if scope.erasesIdentity {
            erased.from = nil
            erased.to = nil
        }
        return erased
    }
}

extension ReceptionistReplied: PersonalData {
    /// What was heard and said, and every slot's value, become ``Erased/text`` (slot names stay:
    /// they say what was collected, not what it was). The transfer number (required when the
    /// action is `transfer`) becomes ``Erased/phone`` on a caller's erasure.
    public func erasingPersonalData(_ scope: ErasureScope) -> ReceptionistReplied {
        var erased = self
        if scope.erasesWords {
            erased.heard = Erased.words(heard)
            erased.text = Erased.text
            erased.slots = slots.mapValues(Erased.words)
        }
        if scope.erasesIdentity, transferTo != nil {
            erased.transferTo = Erased.phone
        }
        return erased
    }
}
