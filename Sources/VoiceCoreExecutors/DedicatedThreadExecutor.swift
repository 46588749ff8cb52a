import Foundation

/// A serial executor that runs every job on one thread of its own.
///
/// hiredis and libpq block the calling thread. An actor whose `unownedExecutor` is a
/// `DedicatedThreadExecutor` runs all of its methods on that thread, so a blocking call (an
/// `XREADGROUP BLOCK`, a slow query) never occupies Swift's cooperative pool, which has one thread
/// per core and stalls every other task when one of its threads blocks.
///
/// ```swift
/// actor Connection {
///     nonisolated let executor = DedicatedThreadExecutor(name: "redis")
///     nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
/// }
/// ```
///
/// It is also a `TaskExecutor`: a loop that talks to one connection all the time (a consumer, a
/// publisher flushing batches) can run on the connection's own thread with
/// `withTaskExecutorPreference(connection.taskExecutor) { … }`, so each call into the connection
/// is a same-thread enqueue instead of two cross-thread wake-ups.
///
/// The thread ends once ``shutdown()`` has been called and every job already enqueued has run.
/// Owners call it from their `deinit`.
public final class DedicatedThreadExecutor: SerialExecutor, TaskExecutor, @unchecked Sendable {
    // Guarded by `condition`.
    private let condition = NSCondition()
    private var pending: [UnownedJob] = []
    private var isShutDown = false

    /// The thread's name, as shown by debuggers and `top -H`.
    public let name: String

    /// Starts the thread.
    /// - Parameter name: a short name for the thread (Linux truncates it to 15 bytes).
    public init(name: String) {
        self.name = name
        let thread = Thread { [self] in self.run() }
        thread.name = name
        thread.start()
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        condition.lock()
        pending.append(unowned)
        condition.signal()
        condition.unlock()
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    public func isSameExclusiveExecutionContext(other: DedicatedThreadExecutor) -> Bool {
        self === other
    }

    /// Lets the thread end after the jobs already enqueued have run.
    public func shutdown() {
        condition.lock()
        isShutDown = true
        condition.signal()
        condition.unlock()
    }

    private func run() {
        // Linux threads inherit their creator's name (a pool thread's); name this one so `top -H`
        // and perf show it. `pthread_setname_np` is not imported without _GNU_SOURCE.
        try? String(name.prefix(15)).write(toFile: "/proc/thread-self/comm", atomically: false, encoding: .utf8)
        var batch: [UnownedJob] = []
        while true {
            condition.lock()
            while pending.isEmpty && !isShutDown {
                condition.wait()
            }
            if pending.isEmpty && isShutDown {
                condition.unlock()
                return
            }
            // Take everything queued in one go: one lock round per burst, not per job.
            swap(&batch, &pending)
            condition.unlock()
            for job in batch {
                job.runSynchronously(isolatedTo: asUnownedSerialExecutor(), taskExecutor: asUnownedTaskExecutor())
            }
            batch.removeAll(keepingCapacity: true)
        }
    }
}
