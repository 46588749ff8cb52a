import Foundation

/// The `client_state` VoiceCore gives Telnyx Call Control commands, which Telnyx echoes in every
/// later webhook of the call: the base64 of the caller turn the call is waiting for, in decimal
/// ASCII (turn 1 → `"MQ=="`). It is how a `call.gather.ended` or `call.transcription` webhook
/// names its turn, since the edge keeps no per-call state.
///
/// The telephony service writes it, the edge reads it; a `client_state` that is not one (set by
/// another application on the same Call Control app) reads as nil.
public enum CallControlState {
    /// The `client_state` of a command that waits for `turn`.
    public static func clientState(turn: Int) -> String {
        Data(String(turn).utf8).base64EncodedString()
    }

    /// The `client_state` of a command after which no turn is awaited (a transfer, a voicemail,
    /// a hang-up): it names no turn.
    public static let closing = Data("closing".utf8).base64EncodedString()

    /// The `client_state` of the `speak` that says the reply to `turn` before a transfer, a
    /// voicemail or a hang-up: like ``closing``, it awaits no turn (``turn(clientState:)`` is nil),
    /// and its `call.speak.ended` names `turn` (``closingTurn(clientState:)``), so the follow-up
    /// starts once the reply has been said.
    public static func closing(after turn: Int) -> String {
        Data("closing:\(turn)".utf8).base64EncodedString()
    }

    /// The turn a ``closing(after:)`` `client_state` names, or nil for any other.
    public static func closingTurn(clientState: String?) -> Int? {
        guard let clientState, !clientState.isEmpty, clientState.utf8.count <= 32,
              let data = Data(base64Encoded: clientState), data.count > 8, data.count <= 18, data.starts(with: Array("closing:".utf8))
        else { return nil }
        let digits = data.dropFirst(8)
        guard digits.allSatisfy({ $0 >= 48 && $0 <= 57 }), digits.first != 48,
              let turn = Int(String(decoding: digits, as: UTF8.self)), turn >= 1, turn <= Storable.integerMaximum
        else { return nil }
        return turn
    }

    /// The turn a webhook's `client_state` names, or nil when it names none.
    public static func turn(clientState: String?) -> Int? {
        guard let clientState, !clientState.isEmpty, clientState.utf8.count <= 16,
              let data = Data(base64Encoded: clientState), !data.isEmpty, data.count <= 10,
              data.allSatisfy({ $0 >= 48 && $0 <= 57 }), data.first != 48,
              let turn = Int(String(decoding: data, as: UTF8.self)), turn >= 1, turn <= Storable.integerMaximum
        else { return nil }
        return turn
    }
}
