//! Waiting on a condition instead of sleeping: every wait polls what it awaits with a
//! deadline and fails naming it, so a slow machine only makes a test slower, never wrong,
//! and a failure says what did not happen.
//!
//! The one place a test watches for time to pass is [`assert_quiet_for`] (and its
//! event-bounded twin [`assert_holds_until`]): "nothing happens for N seconds" against a
//! real server over TCP, where paused tokio time cannot stand in for the clock.

use std::future::Future;
use std::time::Duration;

// Tokio's clock, so that the waits also run, instantly, under paused time.
use tokio::time::Instant;

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
    let deadline = std::time::Instant::now() + CONVERGE;
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {CONVERGE:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// Asserts that `holds` stays true for the whole `window`, checking it at every poll and
/// failing as soon as it breaks, naming `what` and when. The bounded observation window
/// for "nothing happens" against a real server: keep `window` as short as still
/// meaningful (a few of the agent's one-second resyncs).
pub async fn assert_quiet_for<F, Fut>(what: &str, window: Duration, holds: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    holds_until(
        what,
        holds,
        &format!("the end of a {window:?} window"),
        || async move { start.elapsed() >= window },
        window + CONVERGE,
    )
    .await;
}

/// Asserts that `holds` stays true, checking it at every poll, until `done` (an event, such
/// as the agent's next passes) happens; fails naming `what` when it breaks, or `until_what`
/// when `done` does not happen within [`CONVERGE`].
pub async fn assert_holds_until<H, HFut, D, DFut>(what: &str, holds: H, until_what: &str, done: D)
where
    H: FnMut() -> HFut,
    HFut: Future<Output = bool>,
    D: FnMut() -> DFut,
    DFut: Future<Output = bool>,
{
    holds_until(what, holds, until_what, done, CONVERGE).await;
}

async fn holds_until<H, HFut, D, DFut>(
    what: &str,
    mut holds: H,
    until_what: &str,
    mut done: D,
    deadline: Duration,
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
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {until_what} (while {what} held)"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    //! The waits under paused time: their deadlines and windows pass instantly.

    use std::cell::Cell;

    use super::*;

    /// The message a wait failed with.
    async fn failure(wait: impl Future<Output = ()> + Send + 'static) -> String {
        let panic = tokio::spawn(wait).await.unwrap_err().into_panic();
        panic.downcast_ref::<String>().cloned().unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn eventually_gives_the_first_value_and_a_timeout_names_what_was_awaited() {
        let polls = Cell::new(0);
        let value = eventually("the third poll", || {
            polls.set(polls.get() + 1);
            let value = (polls.get() == 3).then_some(polls.get());
            async move { value }
        })
        .await;
        assert_eq!(value, 3);
        let message = failure(until("a thing that never happens", || async { false })).await;
        assert!(
            message.contains("waiting for a thing that never happens"),
            "{message}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_window_fails_as_soon_as_the_condition_breaks() {
        let start = Instant::now();
        assert_quiet_for("nothing", Duration::from_secs(5), || async { true }).await;
        assert!(start.elapsed() >= Duration::from_secs(5));

        let message = failure(async move {
            let start = Instant::now();
            assert_quiet_for("the count to stay", Duration::from_secs(5), || async move {
                start.elapsed() < Duration::from_secs(2)
            })
            .await;
        })
        .await;
        assert!(message.contains("expected the count to stay"), "{message}");
        assert!(message.contains("it broke after 2"), "{message}");
    }

    #[tokio::test(start_paused = true)]
    async fn holding_until_an_event_ends_with_the_event_or_fails_without_it() {
        let start = Instant::now();
        assert_holds_until(
            "quiet",
            || async { true },
            "three seconds",
            || async move { start.elapsed() >= Duration::from_secs(3) },
        )
        .await;
        let message = failure(assert_holds_until(
            "quiet",
            || async { true },
            "an event that never comes",
            || async { false },
        ))
        .await;
        assert!(
            message.contains("waiting for an event that never comes"),
            "{message}"
        );
    }
}
