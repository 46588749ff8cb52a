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
