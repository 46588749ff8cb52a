import ArgumentParser
import VoiceCoreBenchmarks

struct PostgresBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "postgres",
        abstract: "Rows per second through VoiceCorePostgres: COPY, pipeline mode, multi-row INSERT.",
        discussion: """
            Loads --rows rows of (id bigint, tenant_id uuid, kind text, payload text, at timestamptz) \
            into a scratch table three ways, each in one transaction: COPY FROM STDIN; one INSERT per \
            row in pipeline mode (sync every 1000); and INSERT … SELECT FROM unnest($1…$5) in batches \
            of --batch rows. Then, as the reference, psql's \\copy loads the same rows from a file. The \
            table is dropped afterwards.
            """
    )

    @OptionGroup var connections: ConnectionOptions

    @Option(help: "Rows per method.")
    var rows = 100_000

    @Option(help: "Rows per multi-row INSERT statement.")
    var batch = 1000

    func run() async throws {
        try await PostgresBenchmark(rows: rows, batch: batch).run(on: connections.benchmarkServers())
    }
}
