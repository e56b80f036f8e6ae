//! Waiting on a condition instead of sleeping: every wait polls what it awaits with a
//! deadline and fails naming it, so a slow machine only makes a test slower, never wrong,
//! and a failure says what did not happen.
//!
//! The one place a test watches for time to pass is [`assert_quiet_for`] (and its
//! event-bounded twin [`assert_holds_until`]): "nothing happens for N seconds" against a
//! real server over TCP, where paused tokio time cannot stand in for the clock.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long "eventually" may take; generous, since several builds may share two cores.
pub const CONVERGE: Duration = Duration::from_secs(60);

/// How often a wait polls: often enough to see a change soon after it happens.
pub const POLL: Duration = Duration::from_millis(50);

/// Polls `check` until it gives a value, failing the test after [`CONVERGE`] with `what`.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(what, CONVERGE, check).await
}

/// [`eventually`] with a deadline of its own.
pub async fn eventually_within<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `check` until it holds, failing the test after [`CONVERGE`] with `what`.
pub async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually(what, || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// [`until`] for a synchronous check, from a thread with no async runtime.
pub fn until_blocking(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + CONVERGE;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {CONVERGE:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// Asserts that `holds` stays true for the whole `window`, checking it at every poll and
/// failing as soon as it breaks, naming `what` and when. The bounded observation window
/// for "nothing happens" against a real server: keep `window` as short as still
/// meaningful (a few of the agent's one-second resyncs).
pub async fn assert_quiet_for<F, Fut>(what: &str, window: Duration, mut holds: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        assert!(
            holds().await,
            "expected {what} for {window:?}; it broke after {:?}",
            start.elapsed()
        );
        if start.elapsed() >= window {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Asserts that `holds` stays true, checking it at every poll, until `done` (an event, such
/// as the agent's next passes) happens; fails naming `what` when it breaks, or `until_what`
/// when `done` does not happen within [`CONVERGE`].
pub async fn assert_holds_until<H, HFut, D, DFut>(
    what: &str,
    mut holds: H,
    until_what: &str,
    mut done: D,
) where
    H: FnMut() -> HFut,
    HFut: Future<Output = bool>,
    D: FnMut() -> DFut,
    DFut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        assert!(
            holds().await,
            "expected {what} until {until_what}; it broke after {:?}",
            start.elapsed()
        );
        if done().await {
            // Once more, so a break in the last poll interval is not missed.
            assert!(
                holds().await,
                "expected {what} until {until_what}; it broke at the end"
            );
            return;
        }
        assert!(
            start.elapsed() < CONVERGE,
            "timed out after {CONVERGE:?} waiting for {until_what} (while {what} held)"
        );
        tokio::time::sleep(POLL).await;
    }
}
