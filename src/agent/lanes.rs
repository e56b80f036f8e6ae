//! The event loops the cluster workers run on: one single-threaded runtime per core, each
//! on a thread of its own, the workers dealt to them in turn.
//!
//! A cluster's worker, its connection and its watches talk to each other only: nothing is
//! gained by letting another thread steal them. On a loop of its own a worker is polled on
//! the thread whose reactor reads its sockets, its tasks never cross a shared run queue,
//! and a wake is a push onto that loop's own queue (at a 10,000-cluster cold start, about
//! a tenth less of the agent's CPU than on the multi-threaded runtime; BENCHMARKS.md, the
//! twenty-first round). The main runtime keeps the rest: the source, the rollout, the HTTP
//! endpoints.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a loop being closed waits for blocking calls of its own (a DNS lookup) before
/// its thread ends anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

pub struct Lanes {
    lanes: Vec<Lane>,
    next: AtomicUsize,
}

struct Lane {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Lanes {
    /// One loop per core the process may use (`available_parallelism` counts the cgroup's
    /// CPU quota too). Where a loop cannot be started (no threads left), the workers run on
    /// the runtime that calls [`spawn`](Lanes::spawn) instead.
    pub fn start() -> Lanes {
        let count = std::thread::available_parallelism().map_or(1, |n| n.get());
        Lanes::with(count)
    }

    pub fn with(count: usize) -> Lanes {
        let mut lanes = Vec::with_capacity(count);
        for i in 0..count {
            match Lane::start(i) {
                Ok(lane) => lanes.push(lane),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start a cluster event loop; the cluster workers share the main runtime's threads");
                    break;
                }
            }
        }
        tracing::debug!(loops = lanes.len(), "cluster event loops started");
        Lanes {
            lanes,
            next: AtomicUsize::new(0),
        }
    }

    #[cfg(test)]
    fn count(&self) -> usize {
        self.lanes.len()
    }

    /// Runs `task` on the next loop in turn.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        if self.lanes.is_empty() {
            return tokio::spawn(task);
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len();
        self.lanes[i].handle.spawn(task)
    }

    /// Ends every loop, dropping what still runs there, and waits for their threads.
    pub async fn close(mut self) {
        let threads: Vec<_> = self.lanes.iter_mut().filter_map(Lane::stop).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

impl Lane {
    fn start(i: usize) -> std::io::Result<Lane> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("cluster-loop-{i}"))
            .spawn(move || {
                // Either the signal or its sender dropped: both mean stop.
                let _ = runtime.block_on(stopped);
                runtime.shutdown_timeout(CLOSE_GRACE);
            })?;
        Ok(Lane {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Tells the loop to end; its thread, to wait for.
    fn stop(&mut self) -> Option<std::thread::JoinHandle<()>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.thread.take()
    }
}

impl Drop for Lanes {
    /// Lanes dropped without [`close`](Lanes::close) still end their threads, unwaited.
    fn drop(&mut self) {
        for lane in &mut self.lanes {
            lane.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("").to_string()
    }

    #[tokio::test]
    async fn tasks_are_dealt_to_the_loops_in_turn_and_run_on_their_threads() {
        let lanes = Lanes::with(2);
        assert_eq!(lanes.count(), 2);
        let mut names = Vec::new();
        for _ in 0..4 {
            names.push(lanes.spawn(async { thread_name() }).await.unwrap());
        }
        assert_eq!(
            names,
            [
                "cluster-loop-0",
                "cluster-loop-1",
                "cluster-loop-0",
                "cluster-loop-1"
            ]
        );
        lanes.close().await;
    }

    #[tokio::test]
    async fn a_task_spawned_by_a_worker_stays_on_its_loop_and_timers_run_there() {
        let lanes = Lanes::with(2);
        let (outer, inner) = lanes
            .spawn(async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let inner = tokio::spawn(async { thread_name() }).await.unwrap();
                (thread_name(), inner)
            })
            .await
            .unwrap();
        assert_eq!(outer, "cluster-loop-0");
        assert_eq!(inner, outer);
        lanes.close().await;
    }

    #[tokio::test]
    async fn closing_ends_the_threads_and_drops_what_still_runs() {
        let lanes = Lanes::with(1);
        let (dropped_tx, dropped_rx) = oneshot::channel::<()>();
        let pending = lanes.spawn(async move {
            let _tell = dropped_tx;
            std::future::pending::<()>().await
        });
        lanes.close().await;
        assert!(dropped_rx.await.is_err(), "the pending task was dropped");
        assert!(pending.await.unwrap_err().is_cancelled());
    }

    #[tokio::test]
    async fn without_loops_tasks_run_on_the_calling_runtime() {
        let lanes = Lanes::with(0);
        assert_eq!(lanes.count(), 0);
        let name = lanes.spawn(async { thread_name() }).await.unwrap();
        assert!(!name.starts_with("cluster-loop"), "{name}");
    }
}
