import Hummingbird

/// The tenant's console pages (`/app/now`, `/app/calls`, …), registered with
/// ``Edge/consoleTenantPage(_:_:parameters:_:)`` and ``Edge/consoleTenantForm(_:_:parameters:_:)``.
extension Edge {
    func addConsoleTenantPages(to router: Router<BasicRequestContext>) {
    }
}
