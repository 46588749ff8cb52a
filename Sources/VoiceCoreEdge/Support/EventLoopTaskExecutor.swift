import Hummingbird
import NIOCore
import NIOPosix

/// Runs the edge's request handling on the NIO event loops that read the requests, instead of
/// Swift's cooperative pool.
///
/// Hummingbird hands every request from the event loop that parsed it to a task, and the
/// response back to the loop to be written. On the cooperative pool that is two thread hops per
/// request (each a futex wake-up when the other thread sleeps), plus a third when the publisher's
/// Redis thread resumes the handler. With this executor preferred for the server's task, a job
/// enqueued on one of the group's loops runs on that loop in the same tick, so reading the body,
/// verifying, and writing the answer stay on one thread; a job enqueued elsewhere (a publish
/// acknowledged on the Redis thread) goes to the next loop of the group.
///
/// Handlers never block: Redis and Postgres are reached through connections that own threads of
/// their own (`DedicatedThreadExecutor`), so nothing here stalls a loop.
final class EventLoopTaskExecutor: TaskExecutor {
    private let group: any EventLoopGroup
    /// The group's loops, to tell them from loops of other groups in the process (an HTTP
    /// client's): a job is only ever run on this group's loops. One or a few: an array is the
    /// quickest to search.
    private let loops: [ObjectIdentifier]

    /// - Parameter group: the loops to run on; a single `EventLoop` (a group of one) pins every
    ///   job to that loop.
    init(group: any EventLoopGroup) {
        self.group = group
        loops = group.makeIterator().map { ObjectIdentifier($0) }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let loop: any EventLoop
        if let current = MultiThreadedEventLoopGroup.currentEventLoop, loops.contains(ObjectIdentifier(current)) {
            loop = current
        } else {
            loop = group.next()
        }
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }

    func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }
}

/// Keeps a request's handler on the event loop that read the request, across every await.
///
/// Under ``EventLoopTaskExecutor`` a handler resumed by another thread (the publisher's Redis
/// thread acknowledging its command) would go to the group's next loop, and its answer would then
/// hop to the connection's own loop to be written. While this middleware's scope lasts, the task
/// prefers the loop it started on, so it resumes there and writes without a hop. Off an event loop
/// (tests that drive the router directly) it does nothing.
struct EventLoopAffinityMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let loop = MultiThreadedEventLoopGroup.currentEventLoop else { return try await next(request, context) }
        return try await withTaskExecutorPreference(EventLoopTaskExecutor(group: loop)) { try await next(request, context) }
    }
}
