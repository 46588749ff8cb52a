// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "VoiceCore",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "VoiceCoreRedis", targets: ["VoiceCoreRedis"]),
        .library(name: "VoiceCorePostgres", targets: ["VoiceCorePostgres"]),
        .library(name: "VoiceCoreTime", targets: ["VoiceCoreTime"]),
        .library(name: "VoiceCoreEvents", targets: ["VoiceCoreEvents"]),
        .library(name: "VoiceCoreBus", targets: ["VoiceCoreBus"]),
        .library(name: "VoiceCoreProjections", targets: ["VoiceCoreProjections"]),
        .library(name: "VoiceCoreTenants", targets: ["VoiceCoreTenants"]),
        .library(name: "VoiceCoreQueries", targets: ["VoiceCoreQueries"]),
        .library(name: "VoiceCoreEdge", targets: ["VoiceCoreEdge"]),
        .library(name: "VoiceCoreServices", targets: ["VoiceCoreServices"]),
        .executable(name: "voicecore", targets: ["voicecore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.1"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
    ],
    targets: [
        // C libraries from Debian's packages.
        .systemLibrary(
            name: "CHiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),

        // Microsecond-exact UTC instants and their RFC 3339 text (events, Postgres timestamptz).
        .target(name: "VoiceCoreTime"),

        // The vocabulary: envelope, typed commands and events, registry, partitioning.
        .target(
            name: "VoiceCoreEvents",
            dependencies: ["VoiceCoreTime", .product(name: "Crypto", package: "swift-crypto")]
        ),

        // A thread per connection for the blocking C clients (never the cooperative pool).
        .target(name: "VoiceCoreExecutors"),

        // Clients over the C libraries. No C pointer leaves these modules.
        .target(
            name: "VoiceCoreRedis",
            dependencies: [
                "CHiredis",
                "VoiceCoreExecutors",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .target(
            name: "VoiceCorePostgres",
            dependencies: [
                "CLibPQ",
                "VoiceCoreExecutors",
                "VoiceCoreTime",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // The bus: publishing (group commit), consumer groups, dead letters.
        .target(
            name: "VoiceCoreBus",
            dependencies: [
                "VoiceCoreRedis",
                "VoiceCoreEvents",
                "VoiceCoreExecutors",
                "VoiceCoreTime",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),

        // Read models: migrations, the projector runtime and the projections.
        .target(
            name: "VoiceCoreProjections",
            dependencies: [
                "VoiceCorePostgres",
                "VoiceCoreTenants",
                "VoiceCoreExecutors",
                "VoiceCoreBus",
                "VoiceCoreEvents",
                "VoiceCoreTime",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),

        // The tenant directory: provider credentials (encrypted at rest), API keys (hashed).
        .target(
            name: "VoiceCoreTenants",
            dependencies: [
                "VoiceCorePostgres",
                "VoiceCoreBus",
                "VoiceCoreEvents",
                "VoiceCoreTime",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // The read side: tenant-scoped, read-only queries over the read models (row-level security
        // decides what a tenant sees), on a bounded pool of Postgres connections.
        .target(
            name: "VoiceCoreQueries",
            dependencies: [
                "VoiceCorePostgres",
                "VoiceCoreEvents",
                "VoiceCoreExecutors",
                "VoiceCoreTime",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // The HTTP edge: verified telephony webhooks, the tenant command and read APIs, the console.
        .target(
            name: "VoiceCoreEdge",
            dependencies: [
                "VoiceCoreBus",
                "VoiceCoreQueries",
                "VoiceCoreExecutors",
                "VoiceCoreEvents",
                "VoiceCoreTenants",
                "VoiceCoreTime",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Mustache", package: "swift-mustache"),
            ],
            // The console's templates, styles and scripts (`/app`), found with `Bundle.module`.
            resources: [.copy("Console/Assets")]
        ),

        // The platform's services: call lifecycle, AI, CRM, billing, tenants, integrations.
        .target(
            name: "VoiceCoreServices",
            dependencies: [
                "VoiceCoreBus",
                "VoiceCoreEvents",
                "VoiceCoreTenants",
                "VoiceCoreTime",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // Simulated traffic and load: call workloads, signed provider webhooks, the load client, CPU
        // accounting. For loadgen, bench, demo and tests; no product module imports it.
        .target(
            name: "VoiceCoreSimulation",
            dependencies: [
                "VoiceCoreEvents",
                "VoiceCoreTime",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),

        // The benchmarks behind `voicecore bench`: each measures a part beside a reference run.
        .target(
            name: "VoiceCoreBenchmarks",
            dependencies: [
                "VoiceCoreSimulation",
                "VoiceCoreBus",
                "VoiceCoreEvents",
                "VoiceCoreExecutors",
                "VoiceCorePostgres",
                "VoiceCoreProjections",
                "VoiceCoreQueries",
                "VoiceCoreRedis",
                "VoiceCoreTenants",
                "VoiceCoreTime",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // The CLI: composition only.
        .executableTarget(
            name: "voicecore",
            dependencies: [
                "VoiceCoreRedis",
                "VoiceCorePostgres",
                "VoiceCoreEvents",
                "VoiceCoreTime",
                "VoiceCoreBus",
                "VoiceCoreProjections",
                "VoiceCoreExecutors",
                "VoiceCoreTenants",
                "VoiceCoreQueries",
                "VoiceCoreEdge",
                "VoiceCoreServices",
                "VoiceCoreSimulation",
                "VoiceCoreBenchmarks",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // What several test targets need: servers of a test's own (killed and restarted by it).
        .target(name: "VoiceCoreTestSupport", dependencies: ["VoiceCoreRedis"], path: "Tests/VoiceCoreTestSupport"),

        .testTarget(name: "VoiceCoreRedisTests", dependencies: [
            "VoiceCoreRedis",
            "VoiceCoreExecutors",
            "VoiceCoreTestSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        .testTarget(name: "VoiceCorePostgresTests", dependencies: ["VoiceCorePostgres"]),
        .testTarget(name: "VoiceCoreTimeTests", dependencies: ["VoiceCoreTime"]),
        .testTarget(name: "VoiceCoreQueriesTests", dependencies: [
            "VoiceCoreQueries",
            "VoiceCoreBenchmarks",
            "VoiceCorePostgres",
            "VoiceCoreProjections",
            "VoiceCoreEvents",
            "VoiceCoreTime",
            "VoiceCoreTestSupport",
        ]),
        .testTarget(name: "VoiceCoreBusTests", dependencies: [
            "VoiceCoreBus",
            "VoiceCoreTestSupport",
            "VoiceCoreExecutors",
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "MetricsTestKit", package: "swift-metrics"),
        ]),
        .testTarget(name: "VoiceCoreProjectionsTests", dependencies: [
            "VoiceCoreProjections",
            "VoiceCoreSimulation",
            "VoiceCoreBus",
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "MetricsTestKit", package: "swift-metrics"),
        ]),
        .testTarget(name: "VoiceCoreEdgeTests", dependencies: [
            "VoiceCoreEdge",
            "VoiceCoreServices",
            "VoiceCoreSimulation",
            "VoiceCoreTestSupport",
            "VoiceCoreTenants",
            "VoiceCoreBus",
            "VoiceCoreProjections",
            "VoiceCoreQueries",
            "VoiceCorePostgres",
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOWebSocket", package: "swift-nio"),
        ]),
        .testTarget(name: "VoiceCoreServicesTests", dependencies: [
            "VoiceCoreServices",
            "VoiceCoreSimulation",
            "VoiceCoreTestSupport",
            "VoiceCoreEdge",
            "VoiceCoreTenants",
            "VoiceCoreBus",
            "VoiceCoreProjections",
            "VoiceCoreExecutors",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // The CLI as processes: `voicecore up`, the probes of its long-running commands, the
        // platform's processes through Redis and Postgres outages (they run .build/debug/voicecore).
        .testTarget(name: "VoiceCoreCLITests", dependencies: [
            "VoiceCoreTestSupport",
            "VoiceCoreBus",
            "VoiceCoreEvents",
            "VoiceCorePostgres",
            "VoiceCoreProjections",
            "VoiceCoreRedis",
            "VoiceCoreServices",
            "VoiceCoreTenants",
            "VoiceCoreQueries",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        // The benchmarks' own machinery: the bench's private Redis, `voicecore bench platform` run tiny as a process.
        .testTarget(name: "VoiceCoreBenchmarksTests", dependencies: [
            "VoiceCoreBenchmarks",
            "VoiceCoreRedis",
            "VoiceCoreTestSupport",
        ]),
        .testTarget(name: "VoiceCoreEventsTests", dependencies: ["VoiceCoreEvents", "VoiceCoreExecutors", "VoiceCoreSimulation"], exclude: ["Fixtures"]),
        .testTarget(name: "VoiceCoreSimulationTests", dependencies: [
            "VoiceCoreSimulation",
            "VoiceCoreEdge",
            "VoiceCoreEvents",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        .testTarget(name: "VoiceCoreTenantsTests", dependencies: [
            "VoiceCoreTenants",
            "VoiceCoreTestSupport",
            "VoiceCoreBus",
            "VoiceCoreEvents",
            "VoiceCorePostgres",
            "VoiceCoreProjections",
            "VoiceCoreRedis",
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
    ]
)

// The Swift 6 settings Hummingbird's and swift-log's manifests use: `any` marks every existential
// (its cost is visible where it is written), and a file sees the members of the modules it
// imports only (what a file depends on is written at its top).
for target in package.targets where target.type != .system {
    target.swiftSettings = (target.swiftSettings ?? []) + [
        .enableUpcomingFeature("ExistentialAny"),
        .enableUpcomingFeature("MemberImportVisibility"),
    ]
}
