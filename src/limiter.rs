//! How hard one client presses one service: a limit on the requests it has in flight, which
//! halves when the service throttles (429) and grows back by one after a run of answers, and a
//! pause every request honours when a 429 names its Retry-After.
//!
//! A slot is held for one HTTP attempt only, never for the backoff after it: a request waiting
//! to try again gives its slot to one that can go now (docs/architecture.md, "Cost follows the
//! change"). [`crate::http::send_limited`] takes the slots and reports every answer here.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// The requests in flight to one service, and the service's requests to slow down.
#[derive(Debug)]
pub struct Limiter {
    /// One permit per slot; the limit shrinks by forgetting permits and grows by adding them.
    slots: Semaphore,
    /// The most the limit grows back to: the limit asked for.
    max: usize,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    limit: usize,
    /// Slots in use that are retired when they come back, as the limit fell below their count.
    retiring: usize,
    /// Answers since the limit last changed; `limit` of them in a row without a 429 grow it.
    answers: usize,
    /// No attempt starts before this: the latest time a 429's Retry-After named.
    paused_until: Option<Instant>,
    /// How many times the limit was halved. A 429 to an attempt that started before the last
    /// halving belongs to the same burst of throttling and halves nothing more.
    cuts: u64,
}

/// What became of one attempt, as the limiter counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The service answered and did not throttle (whatever the status).
    Served,
    /// 429, with the wait its Retry-After asked for, if any.
    Throttled { retry_after: Option<Duration> },
    /// A 5xx or a transport failure: that request backs off on its own; the limit stays.
    Failed,
}

/// One attempt's slot; it goes back to the limiter when dropped.
#[derive(Debug)]
pub struct Slot<'a> {
    limiter: &'a Limiter,
    permit: Option<SemaphorePermit<'a>>,
    /// The limiter's `cuts` when the attempt started.
    cuts: u64,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = self.limiter.state();
        if let Some(permit) = self.permit.take()
            && state.retiring > 0
        {
            state.retiring -= 1;
            permit.forget();
        }
    }
}

/// A change of the limit, for the caller to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Lowered { to: usize },
    Raised { to: usize },
}

impl Limiter {
    /// At most `max` requests at once (at least one).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            slots: Semaphore::new(max),
            max,
            state: Mutex::new(State {
                limit: max,
                retiring: 0,
                answers: 0,
                paused_until: None,
                cuts: 0,
            }),
        }
    }

    /// The requests allowed in flight now.
    pub fn limit(&self) -> usize {
        self.state().limit
    }

    /// Until when the service asked every request to wait, if it still does.
    pub fn paused_until(&self) -> Option<Instant> {
        let now = Instant::now();
        self.state().paused_until.filter(|until| *until > now)
    }

    /// Waits for a slot, and for the end of any pause the service asked for. Waiters get their
    /// slots in the order they asked.
    pub async fn acquire(&self) -> Slot<'_> {
        loop {
            if let Some(until) = self.paused_until() {
                tokio::time::sleep_until(until).await;
            }
            let permit = self
                .slots
                .acquire()
                .await
                .expect("the limiter never closes its semaphore");
            let slot = Slot {
                limiter: self,
                permit: Some(permit),
                cuts: self.state().cuts,
            };
            // A 429 may have paused the client while this request waited for its slot.
            if self.paused_until().is_none() {
                return slot;
            }
        }
    }

    /// Counts the answer to the attempt that held `slot`: a 429 halves the limit (once per
    /// burst) and, with a Retry-After, pauses every request; `limit` answers in a row without
    /// a 429 grow the limit by one, up to the limit asked for.
    pub fn record(&self, slot: &Slot<'_>, answer: Answer) -> Option<Change> {
        let mut state = self.state();
        match answer {
            Answer::Served => {
                state.answers += 1;
                if state.answers < state.limit || state.limit >= self.max {
                    return None;
                }
                state.answers = 0;
                state.limit += 1;
                if state.retiring > 0 {
                    state.retiring -= 1;
                } else {
                    self.slots.add_permits(1);
                }
                Some(Change::Raised { to: state.limit })
            }
            Answer::Throttled { retry_after } => {
                if let Some(wait) = retry_after {
                    let until = Instant::now() + wait;
                    state.paused_until = Some(state.paused_until.map_or(until, |u| u.max(until)));
                }
                state.answers = 0;
                if slot.cuts != state.cuts || state.limit == 1 {
                    return None;
                }
                let lowered = state.limit / 2;
                let cut = state.limit - lowered.max(1);
                state.limit -= cut;
                state.cuts += 1;
                // Free slots go at once; slots in use go as they come back.
                let forgotten = self.slots.forget_permits(cut);
                state.retiring += cut - forgotten;
                Some(Change::Lowered { to: state.limit })
            }
            Answer::Failed => None,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is a few counters, each change complete under the lock: a panic elsewhere
        // leaves it consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Starts `count` tasks that each take a slot, note how many are in flight, hold it for
    /// `hold`, and give it back; returns the most in flight at once.
    async fn peak_in_flight(limiter: Arc<Limiter>, count: usize, hold: Duration) -> usize {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..count {
            let (limiter, in_flight, peak) = (limiter.clone(), in_flight.clone(), peak.clone());
            tasks.spawn(async move {
                let slot = limiter.acquire().await;
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(hold).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                limiter.record(&slot, Answer::Served);
            });
        }
        while tasks.join_next().await.is_some() {}
        peak.load(Ordering::SeqCst)
    }

    // The clock is the real one: tokio's paused clock needs its `test-util` feature, which
    // would rebuild tokio and everything above it for every test and benchmark build.

    #[tokio::test]
    async fn no_more_than_the_limit_are_in_flight() {
        let limiter = Arc::new(Limiter::new(3));
        let started = Instant::now();
        assert_eq!(
            peak_in_flight(limiter, 9, Duration::from_millis(50)).await,
            3
        );
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn a_429_halves_the_limit_once_per_burst_and_answers_grow_it_back() {
        let limiter = Limiter::new(8);
        let slots: Vec<Slot<'_>> = take_slots(&limiter, 8).await;
        assert_eq!(
            limiter.record(&slots[0], Answer::Throttled { retry_after: None }),
            Some(Change::Lowered { to: 4 })
        );
        // The other attempts of the same burst are throttled too: one halving is enough.
        for slot in &slots[1..] {
            assert_eq!(
                limiter.record(slot, Answer::Throttled { retry_after: None }),
                None
            );
        }
        drop(slots);
        assert_eq!(limiter.limit(), 4);
        // The four slots in use when the limit fell were retired as they came back.
        assert_eq!(limiter.slots.available_permits(), 4);
        let slot = limiter.acquire().await;
        let mut changes = Vec::new();
        for _ in 0..4 {
            changes.extend(limiter.record(&slot, Answer::Served));
        }
        assert_eq!(changes, [Change::Raised { to: 5 }]);
        for _ in 0..5 {
            limiter.record(&slot, Answer::Failed);
        }
        assert_eq!(
            limiter.limit(),
            5,
            "a 5xx neither lowers nor raises the limit"
        );
        drop(slot);
        assert_eq!(limiter.slots.available_permits(), 5);
    }

    #[tokio::test]
    async fn a_retry_after_pauses_every_request_of_the_client() {
        let limiter = Arc::new(Limiter::new(4));
        let throttled = limiter.acquire().await;
        limiter.record(
            &throttled,
            Answer::Throttled {
                retry_after: Some(Duration::from_millis(300)),
            },
        );
        drop(throttled);
        let started = Instant::now();
        let waiter = {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let _slot = limiter.acquire().await;
                Instant::now()
            })
        };
        let waited = waiter.await.unwrap() - started;
        assert!(
            waited >= Duration::from_millis(290),
            "a request that was not throttled itself waits out the pause too; it waited {waited:?}"
        );
        assert_eq!(limiter.limit(), 2);
        assert_eq!(limiter.paused_until(), None);
    }

    #[tokio::test]
    async fn the_limit_never_falls_below_one() {
        let limiter = Limiter::new(2);
        for _ in 0..4 {
            let slot = limiter.acquire().await;
            limiter.record(&slot, Answer::Throttled { retry_after: None });
        }
        assert_eq!(limiter.limit(), 1);
        assert_eq!(limiter.slots.available_permits(), 1);
    }

    /// Takes `count` slots at once.
    async fn take_slots(limiter: &Limiter, count: usize) -> Vec<Slot<'_>> {
        let mut slots = Vec::new();
        for _ in 0..count {
            slots.push(limiter.acquire().await);
        }
        slots
    }
}
