import ArgumentParser
import Foundation
import VoiceCoreEvents

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Play a conversation with the receptionist and a realistic call into a running edge, and print them and the rows they produced.",
        discussion: """
            First a short conversation over Twilio <Gather>: the incoming call, then one signed \
            gather callback per caller turn, each answered by the receptionist over the bus; it \
            prints what the receptionist says, what the caller says and what the call does next \
            (continue, transfer, voicemail, hang up), line by line, then the turns as projected. \
            Then a second call: it sends the webhooks Twilio would send for a caller booking an appointment and leaving \
            a name and number — the incoming call, in-progress and completed status callbacks, \
            and real-time transcription of both tracks — signed with the tenant's Twilio auth \
            token, then waits for the services and projectors and prints the call's rows: \
            call_sessions, transcripts, leads, call_analytics, business_metrics, billing_usage. \
            Then, with the tenant's API key, reads the call back through the tenant API and prints \
            the curl commands that do it (GET /v1/calls?limit=5, GET /v1/calls/<id>, GET /v1/events). \
            Needs a running `voicecore up` (or edge, services and projectors) and \
            VOICECORE_MASTER_KEY (to read the tenant's auth token).
            """
    )

    @OptionGroup var connections: ConnectionOptions

    @Option(help: "The edge to call.")
    var edgeURL = "http://127.0.0.1:8080"

    @Option(name: .customLong("public-url"), help: "The URL the edge believes it is at (its --public-url / VOICECORE_PUBLIC_URL); Twilio signatures cover it. Default: $VOICECORE_PUBLIC_URL, else --edge-url.")
    var publicURL: String?

    @Option(help: "The tenant (default: the first with Twilio credentials).")
    var tenant: String?

    @Option(name: .customLong("api-key"), help: "The tenant's API key, to read the call back (default: $VOICECORE_API_KEY, else the file $VOICECORE_DEMO_API_KEY_FILE, where `voicecore up` stores the demo tenant's).")
    var apiKey: String?

    func run() async throws {
        var id: Identifier?
        if let tenant {
            guard let parsed = Identifier(tenant) else { throw ValidationError("--tenant must be a tenant id (UUID); see `voicecore tenants list`") }
            id = parsed
        }
        let base = publicURL ?? EdgeOptions.publicURLFromEnvironment ?? edgeURL
        try await DemoPlayer(connections: connections, edgeURL: edgeURL, publicBase: base, apiKey: apiKey).run(tenant: id)
    }
}
