// What a reader of the bus handles — an entry, its id and fields, a read's result, the error a
// read or acknowledgement throws — and the configuration a bus part connects with are the Redis
// client's own value types. They are re-exported here, each by name, so a module above the bus
// (projections, services, a team's consumer) uses them by importing `VoiceCoreBus` alone and
// never talks to the Redis client itself (ARCHITECTURE.md, dependency direction).
@_exported import struct VoiceCoreRedis.RedisConfiguration
@_exported import struct VoiceCoreRedis.RedisError
@_exported import struct VoiceCoreRedis.StreamEntry
@_exported import struct VoiceCoreRedis.StreamEntryID
@_exported import struct VoiceCoreRedis.StreamField
@_exported import struct VoiceCoreRedis.StreamReadResult
