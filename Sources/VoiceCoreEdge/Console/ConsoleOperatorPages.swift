import Hummingbird

/// The operator's console pages (`/app/operator`, …), registered with
/// ``Edge/consoleOperatorPage(_:_:parameters:_:)`` and ``Edge/consoleOperatorForm(_:_:parameters:_:)``.
extension Edge {
    func addConsoleOperatorPages(to router: Router<BasicRequestContext>) {
    }
}
