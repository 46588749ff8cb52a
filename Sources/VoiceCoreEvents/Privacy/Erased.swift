/// The placeholders an erasure leaves where personal data was, in one place.
///
/// An erased event keeps its type, ids, times and numbers and still validates against its v1
/// schema, so every reader (projections, replay, team consumers) keeps working on it:
///
/// | what was there | what an erased event holds |
/// |---|---|
/// | free text a person said or that describes them | ``text`` (`"[erased]"`) |
/// | an optional name, phone number or e-mail address | nothing (the field is absent) |
/// | a phone number the schema requires | ``phone`` (`"+999"`) |
/// | a recording URL | nothing |
/// | a provider's raw form fields | `{}` |
public enum Erased {
    /// Replaces words said or written about a person where the schema requires a value.
    public static let text = "[erased]"
    /// Replaces a phone number the schema requires. Country code 999 is reserved by the ITU and
    /// never assigned, so it is a valid E.164 shape (`^\+[1-9][0-9]{1,14}$`) that is nobody's number.
    public static let phone = "+999"

    /// The placeholder for text that was said, or the value itself when nothing was said: an empty
    /// utterance (a timeout) tells nothing about the caller and stays what it was.
    static func words(_ value: String) -> String {
        value.isEmpty ? value : text
    }

    /// ``words(_:)`` for an optional field: absent stays absent.
    static func words(_ value: String?) -> String? {
        value.map(words)
    }
}
