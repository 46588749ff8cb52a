import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import VoiceCoreEvents

/// An intent found in what a caller said.
public struct IntentMatch: Sendable, Hashable {
    public var intent: Intent
    /// 0 to 1.
    public var confidence: Double
    public var matchedPhrase: String?

    public init(intent: Intent, confidence: Double, matchedPhrase: String? = nil) {
        self.intent = intent
        self.confidence = min(1, max(0, confidence))
        self.matchedPhrase = matchedPhrase
    }
}

/// Finds the caller's intent in one utterance, given the tenant's settings.
public protocol IntentDetector: Sendable {
    /// nil when the utterance shows no intent.
    func detect(_ utterance: String, settings: AISettings) async throws -> IntentMatch?
}

/// The offline detector: the tenant's phrases, matched on word boundaries, case-insensitively.
/// Confidence grows with the matches for the winning intent and with the length of the longest
/// matched phrase: one single-word match is 0.6, a multi-word phrase 0.75, each further match
/// +0.1, at most 0.95. Ties go to the intent listed first in the settings.
public struct BuiltInIntentDetector: IntentDetector {
    public init() {}

    public func detect(_ utterance: String, settings: AISettings) async throws -> IntentMatch? {
        detectNow(utterance, settings: settings)
    }

    public func detectNow(_ utterance: String, settings: AISettings) -> IntentMatch? {
        let text = Self.padded(utterance)
        var best: IntentMatch?
        for entry in settings.intents {
            var matches = 0
            var longest: String?
            for phrase in entry.phrases {
                guard Self.containsPhrase(text, phrase) else { continue }
                matches += 1
                if longest.map({ phrase.count > $0.count }) ?? true { longest = phrase }
            }
            guard matches > 0, let longest else { continue }
            let base = longest.contains(" ") ? 0.75 : 0.6
            let confidence = min(0.95, base + 0.1 * Double(matches - 1))
            if best.map({ confidence > $0.confidence }) ?? true {
                best = IntentMatch(intent: entry.intent, confidence: confidence, matchedPhrase: longest)
            }
        }
        return best
    }

    /// Lower case, letters, digits and apostrophes, words separated by single spaces.
    static func normalize(_ text: String) -> String {
        let bytes = padded(text)
        return String(decoding: bytes[1..<max(1, bytes.count - 1)], as: UTF8.self)
    }

    /// The normalized text between two spaces, as UTF-8 (so a phrase matches whole words only).
    /// ASCII is folded to lower case; other letters are kept as they are.
    static func padded(_ text: String) -> [UInt8] {
        var out: [UInt8] = [0x20]
        out.reserveCapacity(text.utf8.count + 2)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): out.append(byte + 32)
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "'"), 0x80...: out.append(byte)
            default: if out.last != 0x20 { out.append(0x20) }
            }
        }
        if out.last != 0x20 { out.append(0x20) }
        return out
    }

    /// Whether the padded text holds the phrase as whole words (a phrase that normalizes to
    /// nothing never matches). A phrase already in normal form (lower-case ASCII words, single
    /// spaces) is matched in place; any other is normalized first.
    static func containsPhrase(_ text: [UInt8], _ phrase: String) -> Bool {
        let inPlace = phrase.utf8.withContiguousStorageIfAvailable { bytes -> Bool? in
            guard let first = bytes.first, let last = bytes.last, first != 0x20, last != 0x20 else { return nil }
            var previous: UInt8 = 0
            for byte in bytes {
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "'"): break
                case 0x20 where previous != 0x20: break
                default: return nil
                }
                previous = byte
            }
            // The text starts and ends with a space: a match between two spaces is a whole-word match.
            return text.withUnsafeBufferPointer { haystack in
                guard bytes.count + 2 <= haystack.count else { return false }
                var index = 1
                while index + bytes.count < haystack.count {
                    if haystack[index] == first && haystack[index - 1] == 0x20 && haystack[index + bytes.count] == 0x20
                        && memcmp(haystack.baseAddress! + index, bytes.baseAddress!, bytes.count) == 0 { return true }
                    index += 1
                }
                return false
            }
        }
        if let inPlace = inPlace ?? nil { return inPlace }
        let needle = padded(phrase)
        return needle.count > 2 && contains(text, needle)
    }

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= haystack.count else { return false }
        return haystack.withUnsafeBufferPointer { h in
            needle.withUnsafeBufferPointer { n in
                let first = n[0]
                var index = 0
                let last = h.count - n.count
                while index <= last {
                    if h[index] == first && memcmp(h.baseAddress! + index, n.baseAddress!, n.count) == 0 { return true }
                    index += 1
                }
                return false
            }
        }
    }
}

/// An OpenAI-compatible chat-completions endpoint as the detector (off unless configured):
/// `VOICECORE_AI_BASE_URL` (e.g. `https://api.openai.com/v1`), `VOICECORE_AI_API_KEY`,
/// `VOICECORE_AI_MODEL` (default `gpt-4o-mini`). The model is asked for
/// `{"intent": …, "confidence": …}` over the tenant's intents.
public struct OpenAICompatibleIntentDetector: IntentDetector {
    public var endpoint: ChatCompletionsEndpoint
    public var timeout: Duration

    public init(endpoint: ChatCompletionsEndpoint, timeout: Duration = .seconds(2)) {
        self.endpoint = endpoint
        self.timeout = timeout
    }

    public init(baseURL: String, apiKey: String, model: String = ChatCompletionsEndpoint.defaultModel, timeout: Duration = .seconds(2),
                client: HTTPClient = .shared) {
        self.init(endpoint: ChatCompletionsEndpoint(baseURL: baseURL, apiKey: apiKey, model: model, client: client), timeout: timeout)
    }

    /// The detector from the environment, or nil when `VOICECORE_AI_BASE_URL` is not set.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> OpenAICompatibleIntentDetector? {
        ChatCompletionsEndpoint.fromEnvironment(environment).map { OpenAICompatibleIntentDetector(endpoint: $0) }
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public func detect(_ utterance: String, settings: AISettings) async throws -> IntentMatch? {
        let intents = settings.intents.map(\.intent.rawValue) + [Intent.other.rawValue]
        let system = """
            You classify what a caller to a business said. Answer only with JSON: \
            {"intent": one of \(intents.map { "\"\($0)\"" }.joined(separator: ", ")), "confidence": a number from 0 to 1}. \
            Use "other" when the caller shows none of them.
            """
        let body = JSONValue.object([
            "model": .string(endpoint.model), "temperature": .number("0"), "response_format": .object(["type": .string("json_object")]),
            "messages": .array([
                .object(["role": .string("system"), "content": .string(system)]), .object(["role": .string("user"), "content": .string(utterance)]),
            ]),
        ])
        let response = try await endpoint.post(body, timeout: timeout)
        guard (200..<300).contains(response.status) else { throw Failure(description: "the AI provider answered \(response.status)") }
        guard let object = try? JSONValue.object(parsing: response.body),
              case .array(let choices)? = object["choices"], let message = choices.first?.object?["message"]?.object,
              let content = message["content"]?.string,
              let answer = try? JSONValue.object(parsing: Array(content.utf8)),
              let name = answer["intent"]?.string
        else { throw Failure(description: "the AI provider's answer is not the JSON asked for") }
        guard let intent = Intent(rawValue: name.lowercased()) else { throw Failure(description: "the AI provider named an unknown intent") }
        if intent == .other { return nil }
        var confidence = 0.5
        if case .number(let literal)? = answer["confidence"], let value = Double(literal) { confidence = value }
        return IntentMatch(intent: intent, confidence: confidence, matchedPhrase: nil)
    }
}

/// A detector that falls back: the primary (an HTTP provider) answers when it can, the built-in
/// detector when it fails or times out, so the stream never waits on a provider.
public struct FallbackIntentDetector: IntentDetector {
    public var primary: any IntentDetector
    public var fallback: BuiltInIntentDetector
    let logger: Logger

    public init(primary: any IntentDetector, fallback: BuiltInIntentDetector = BuiltInIntentDetector(), logger: Logger = Logger(label: "voicecore.ai")) {
        self.primary = primary
        self.fallback = fallback
        self.logger = logger
    }

    public func detect(_ utterance: String, settings: AISettings) async throws -> IntentMatch? {
        do {
            return try await primary.detect(utterance, settings: settings)
        } catch {
            logger.warning("AI provider failed; the built-in detector answers", metadata: ["error": "\(error)"])
            return fallback.detectNow(utterance, settings: settings)
        }
    }
}
