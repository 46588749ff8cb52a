import Logging
import VoiceCoreBus
import VoiceCoreEvents
import VoiceCoreTenants
import VoiceCoreTime

/// The tenants service (group `tenants`): accepts ``ChangeSettings`` (tenant API) by storing the
/// settings in the tenant directory, where the AI service reads them, and publishing
/// ``TenantSettingsChanged``. A command for a tenant the directory does not know fails and, after
/// its retries, goes to the dead-letter stream.
public struct TenantsService: Sendable {
    public static let group = "tenants"

    let directory: TenantDirectory
    let emitter: Emitter
    let tenants: TenantProfiles

    public static func runner(_ dependencies: ServiceDependencies, directory: TenantDirectory) async throws -> ConsumerGroupRunner {
        let service = TenantsService(
            directory: directory,
            emitter: try await dependencies.emitter(group),
            tenants: dependencies.tenants)
        var handlers = MessageHandlers()
        handlers.aroundPartitionBatch(EffectBatch.scope(publisher: service.emitter.publisher))
        handlers.on(ChangeSettings.self) { message, change in
            guard change.tenantID == message.envelope.tenantID else {
                throw TenantError.invalid(field: "tenant_id", reason: "names another tenant than the command's")
            }
            try await service.directory.setAISettings(change.settings, of: change.tenantID)
            service.tenants.invalidate(change.tenantID)
            try await service.emitter.emit(TenantSettingsChanged(tenantID: change.tenantID, settings: change.settings, changedAt: message.envelope.time),
                                           tenant: change.tenantID, key: "settings:\(message.envelope.id)")
        }
        return ConsumerGroupRunner(redis: dependencies.redis,
                                   configuration: dependencies.consumer(group, streams: dependencies.naming.streams(.tenants, kind: .command)),
                                   handlers: handlers, logger: dependencies.logger)
    }
}
