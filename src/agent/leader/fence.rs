//! The write fence: whether this replica may write to fleet clusters now. Without leader
//! election it always may. With it, a write may start only before the renew deadline of
//! the last successful renewal, measured on the monotonic clock from when that renewal was
//! *sent*. The deadline is shorter than the lease duration, and others count the duration
//! from when they see the renewal (later), so the fence closes before anyone else can take
//! the Lease: fencing by time, as client-go's renew deadline intends.
//!
//! The fence is checked just before every write, not only by the elector's task: a process
//! stopped (SIGSTOP, a long GC-like pause of the host) wakes with its deadline long past,
//! and a worker that runs before the elector does is refused all the same.

use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Clone, Debug, Default)]
pub struct Fence(Option<Arc<Mutex<Option<Instant>>>>);

impl Fence {
    /// No leader election: writes are always allowed.
    pub fn open() -> Fence {
        Fence(None)
    }

    /// Leader election: closed until the Lease is taken.
    pub fn closed() -> Fence {
        Fence(Some(Arc::new(Mutex::new(None))))
    }

    /// Whether a write may start now.
    pub fn allows_writes(&self) -> bool {
        self.allows_writes_at(Instant::now())
    }

    fn allows_writes_at(&self, now: Instant) -> bool {
        match &self.0 {
            None => true,
            Some(until) => until
                .lock()
                .map(|u| u.is_some_and(|u| now < u))
                .unwrap_or(false),
        }
    }

    /// Writes are allowed until `until` (a renewal sent at `until - renew deadline`
    /// succeeded).
    pub fn hold_until(&self, until: Instant) {
        if let Some(m) = &self.0 {
            if let Ok(mut u) = m.lock() {
                *u = Some(until);
            }
        }
    }

    /// No more writes until the Lease is taken again.
    pub fn close(&self) {
        if let Some(m) = &self.0 {
            if let Ok(mut u) = m.lock() {
                *u = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn without_election_writes_are_always_allowed() {
        assert!(Fence::open().allows_writes());
    }

    #[test]
    fn with_election_writes_stop_at_the_renew_deadline_whoever_looks() {
        let fence = Fence::closed();
        assert!(!fence.allows_writes(), "closed until the lease is taken");
        let now = Instant::now();
        let seen_by_a_worker = fence.clone();
        fence.hold_until(now + Duration::from_secs(10));
        assert!(seen_by_a_worker.allows_writes_at(now + Duration::from_secs(9)));
        // A process woken after the deadline (SIGSTOP, SIGCONT) is refused before its
        // elector has run.
        assert!(!seen_by_a_worker.allows_writes_at(now + Duration::from_secs(10)));
        fence.close();
        assert!(!seen_by_a_worker.allows_writes_at(now));
    }
}
