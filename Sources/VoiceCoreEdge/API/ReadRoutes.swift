import Hummingbird

/// Every read route of the tenant API, in one list (each area's routes live in its own file).
extension Edge {
    func addReadRoutes(to router: Router<BasicRequestContext>) {
        guard reads != nil else { return }
        addAnalyticsReadRoutes(to: router)
        addAuditReadRoutes(to: router)
        addCallReadRoutes(to: router)
        addCRMReadRoutes(to: router)
    }
}
