import Foundation
import NIOCore
import NIOPosix
import Testing
@testable import VoiceCoreEdge

@Suite("The edge's handlers run on its event loops")
struct EventLoopExecutorTests {
    /// Resumes its caller from a thread of its own, as the publisher's Redis thread does.
    private func resumedFromAnotherThread() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread { continuation.resume() }.start()
        }
    }

    @Test func jobsRunOnTheGroupsLoopsAndStayOnTheLoopTheyStartedOn() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let loops = Set(group.makeIterator().map { ObjectIdentifier($0) })
        let executor = EventLoopTaskExecutor(group: group)
        let outcomes: [(started: ObjectIdentifier?, afterResume: ObjectIdentifier?)] = await withTaskExecutorPreference(executor) {
            await withTaskGroup(of: (ObjectIdentifier?, ObjectIdentifier?).self) { tasks in
                for _ in 0..<20 {
                    tasks.addTask {
                        // What a request handler does: start on a loop, then keep to it across an
                        // await resumed elsewhere.
                        guard let loop = MultiThreadedEventLoopGroup.currentEventLoop else { return (nil, nil) }
                        return await withTaskExecutorPreference(EventLoopTaskExecutor(group: loop)) {
                            await resumedFromAnotherThread()
                            return (ObjectIdentifier(loop), MultiThreadedEventLoopGroup.currentEventLoop.map { ObjectIdentifier($0) })
                        }
                    }
                }
                return await tasks.reduce(into: []) { $0.append($1) }
            }
        }
        #expect(outcomes.count == 20)
        for outcome in outcomes {
            // Never on the cooperative pool, and back on the very loop it started on.
            let started = try #require(outcome.started)
            #expect(loops.contains(started))
            #expect(outcome.afterResume == started)
        }
        try await group.shutdownGracefully()
    }

    @Test func aJobEnqueuedOffTheLoopsGoesToOneOfThem() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        let loops = Set(group.makeIterator().map { ObjectIdentifier($0) })
        let executor = EventLoopTaskExecutor(group: group)
        let after: ObjectIdentifier? = await withTaskExecutorPreference(executor) {
            await resumedFromAnotherThread()
            return MultiThreadedEventLoopGroup.currentEventLoop.map { ObjectIdentifier($0) }
        }
        #expect(after.map(loops.contains) == true)
        try await group.shutdownGracefully()
    }
}
