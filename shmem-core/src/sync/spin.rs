//! When a waiter spins, when it yields, and when it sleeps: one adaptive
//! policy for every place that waits on another process (the lock and the
//! map's stripes, the queue, seqlock readers, an rwlock writer draining its
//! readers, and wait/notify).
//!
//! Spinning pays when the peer being waited for is running on another core
//! and finishes soon; it burns the very time slice the peer needs when the
//! cores are shared (more processes than cores, other work, CPU quotas).
//! So a waiter:
//!
//! 1. **spins** for a budget that each thread learns per [`Site`]: it
//!    starts at the ceiling (about 25 us), a wait that spinning served (or
//!    a quick yield right after it) moves it a quarter of the way back up,
//!    and a wait that showed the core busy takes a quarter off (down to a
//!    floor of a few rounds). A wait that outlasted the spin on an idle core
//!    leaves it: that spin cost nothing anybody else wanted. The queue,
//!    which does not yield and so never learns the core is busy, always
//!    spins the ceiling;
//! 2. **yields** the CPU twice (`sched_yield`, none when less than 2 ms is
//!    left before the caller's deadline), timing each yield: if the
//!    peer it waits for is runnable on this core, it runs now instead of at
//!    the end of our slice (what parking_lot does before parking), and a
//!    yield that took long is how the waiter learns the core is busy. The
//!    queue does not yield (see [`Site::yields`]);
//! 3. **sleeps** in the kernel (the caller's futex wait).
//!
//! Measured (`bench --load --processes 4`, three alternating runs of the
//! old fixed spin and this policy): the contended locked update under CPU
//! hogs went from 0.89-1.17x to 0.69-0.90x of a process-shared pthread
//! mutex; the queue's figures did not move beyond the noise. Two variants lost and are not
//! used: halving the budget after every wait that had to sleep (idle 1 -> 1
//! batches fell from ~1,100 to 480-990 M items/s), and yielding in the
//! queue (below).
//!
//! The learned budgets are per thread and per [`Site`], never in shared
//! memory: another process cannot make this one spin longer.

#![cfg_attr(loom, allow(dead_code, reason = "loom never spins"))]

#[cfg(not(loom))]
use std::cell::Cell;
use std::time::Instant;

/// The kind of wait, each with its own learned budget (waits of one kind
/// last alike; a long queue wait should not shorten a lock's spin).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Site {
    /// Taking a [`RawMutex`](super::raw_mutex::RawMutex) (locks, the map's stripes, the rwlock's gate).
    Lock = 0,
    /// A queue waiting for an item or for room.
    Queue = 1,
    /// A seqlock reader waiting out a write.
    SeqLock = 2,
    /// An rwlock writer waiting for readers to leave.
    Drain = 3,
    /// Wait/notify: events, semaphores, barriers, atomic waits (not the
    /// condition variable, whose waiters have nothing to spin on).
    Notify = 4,
}

const SITES: usize = 5;

impl Site {
    /// Yields before sleeping. None for the queue: its waiters wait for the
    /// other side's next operation, not for a holder to leave a critical
    /// section, and measured with CPU hogs on both cores (`bench --load
    /// --processes 4`, three alternating runs each) yielding there cut 4 -> 4
    /// throughput from 8.9-10.8 to 6.4-7.8 M msg/s, while for the lock it
    /// helped (the contended update went from 0.91-1.28x to 0.74-0.97x of a
    /// pthread mutex).
    fn yields(self) -> u32 {
        match self {
            Site::Queue => 0,
            _ => YIELDS,
        }
    }
}

/// `spin_loop` hints per round, between two checks of the condition. A
/// check reads the other side's counter, which pulls its cache line away
/// from a process that writes it on every operation; for the queue,
/// checking on every hint held a 1 -> 1 stream to ~10 M msg/s on the
/// benchmark machine. Checking every 2, 4, 8 or 16 hints gave 18, 28, 43
/// and 59 M msg/s (the consumer finds more items per check), and a blocking
/// ping-pong median of 0.22, 0.30, 0.31 and 0.51 us: 8 is the knee.
const HINTS_PER_ROUND: u32 = 8;

/// The budget's bounds in rounds. At most 1,024 spin hints (about 25 us on
/// the benchmark machine's CPU), the longest the queue spun before this
/// policy.
const MIN_ROUNDS: u32 = 4;
const MAX_ROUNDS: u32 = 128;

/// Where a thread's budget starts: the ceiling, until a busy core says otherwise.
const START_ROUNDS: u32 = MAX_ROUNDS;

/// Yields after the spin and before sleeping.
const YIELDS: u32 = 2;

/// The least time left before a deadline for a waiter to yield.
#[cfg(not(loom))]
const YIELD_MARGIN: std::time::Duration = std::time::Duration::from_millis(2);

/// A yield that returns later than this gave the core to another thread.
#[cfg(not(loom))]
const BUSY_YIELD: std::time::Duration = std::time::Duration::from_micros(20);

/// Fixed-point scale of the learned budget (fractions let it move by less
/// than a round per wait).
const SCALE: u32 = 16;

#[cfg(not(loom))]
thread_local! {
    static BUDGET: [Cell<u32>; SITES] = const { [const { Cell::new(START_ROUNDS * SCALE) }; SITES] };
}

/// The current budget at `site`, in rounds.
#[cfg(not(loom))]
fn budget(site: Site) -> u32 {
    BUDGET.try_with(|b| b[site as usize].get() / SCALE).unwrap_or(START_ROUNDS).clamp(MIN_ROUNDS, MAX_ROUNDS)
}

/// What one wait showed about spinning here.
#[cfg(not(loom))]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Lesson {
    /// Spinning paid: the peer was running and finished in time (or just
    /// after, during a yield on an idle core: the budget was a little short).
    Paid,
    /// A yield ran another thread on this core: the machine is busy, and a
    /// spin burns time its other threads (perhaps the peer) need.
    Busy,
    /// Neither: the wait outlasted the spin on an idle core.
    Long,
}

/// Learns from one wait: spinning that paid moves the budget a quarter of
/// the way up to the ceiling, a busy core takes a quarter off, a long wait
/// on an idle core leaves it (the spin cost nothing anybody else wanted).
#[cfg(not(loom))]
fn learn(site: Site, lesson: Lesson) {
    let _ = BUDGET.try_with(|b| {
        let cell = &b[site as usize];
        let old = cell.get();
        let new = match lesson {
            Lesson::Paid => old + (MAX_ROUNDS * SCALE).saturating_sub(old).div_ceil(4),
            Lesson::Busy => old - old / 4,
            Lesson::Long => old,
        };
        cell.set(new.clamp(MIN_ROUNDS * SCALE, MAX_ROUNDS * SCALE));
    });
}

/// Spins, then yields, until `ready()` holds; `true` if it did, `false` if
/// the caller should sleep. `ready` is called between rounds; it may act
/// (take a lock) and must return `true` only when it did.
///
/// A `deadline` stops the spin when it passes, and skips the yields when
/// less than [`YIELD_MARGIN`] is left: a yield to busy work can last a
/// whole time slice, and a short wait (a `try_` operation's 200 us) must
/// keep its time for what the caller does next (judging a dead holder).
#[cfg(not(loom))]
#[inline]
pub(crate) fn spin_then_yield(site: Site, deadline: Option<Instant>, mut ready: impl FnMut() -> bool) -> bool {
    if site.yields() == 0 {
        // No yields, so no busy signal to learn from: the whole ceiling,
        // without the thread-local budget (the queue may wait once per item,
        // at a few tens of nanoseconds an item).
        return spin(MAX_ROUNDS, deadline, &mut ready);
    }
    let rounds = budget(site);
    if spin(rounds, deadline, &mut ready) {
        learn(site, Lesson::Paid);
        return true;
    }
    let mut busy = false;
    for _ in 0..site.yields() {
        let before = Instant::now();
        if deadline.is_some_and(|d| d.saturating_duration_since(before) < YIELD_MARGIN) {
            break;
        }
        std::thread::yield_now();
        // A yield that took long ran someone else on this core; a quick one
        // found it idle.
        busy |= before.elapsed() >= BUSY_YIELD;
        if ready() {
            // Served right after the spin on an idle core: the budget was
            // a little short.
            learn(site, if busy { Lesson::Busy } else { Lesson::Paid });
            return true;
        }
    }
    learn(site, if busy { Lesson::Busy } else { Lesson::Long });
    false
}

/// Up to `rounds` rounds of spin hints, checking `ready` after each:
/// whether it held (`false` at once if `deadline` passed).
#[cfg(not(loom))]
#[inline]
fn spin(rounds: u32, deadline: Option<Instant>, ready: &mut impl FnMut() -> bool) -> bool {
    for _ in 0..rounds {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        for _ in 0..HINTS_PER_ROUND {
            core::hint::spin_loop();
        }
        if ready() {
            return true;
        }
    }
    false
}

/// Under loom: no spinning (every spin would be a scheduling point that
/// multiplies the model's interleavings, and it changes no outcome: the
/// caller checks its condition again before it sleeps).
#[cfg(loom)]
#[inline]
pub(crate) fn spin_then_yield(_site: Site, _deadline: Option<Instant>, _ready: impl FnMut() -> bool) -> bool {
    false
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_busy_core_shrinks_the_budget_and_spinning_that_pays_grows_it_back() {
        std::thread::spawn(|| {
            assert_eq!(budget(Site::Lock), START_ROUNDS);
            learn(Site::Lock, Lesson::Busy);
            assert_eq!(budget(Site::Lock), START_ROUNDS * 3 / 4, "a busy core takes a quarter off");
            for _ in 0..30 {
                learn(Site::Lock, Lesson::Busy);
            }
            assert_eq!(budget(Site::Lock), MIN_ROUNDS, "down to the floor");
            // Other sites keep their own budget.
            assert_eq!(budget(Site::Queue), START_ROUNDS);
            learn(Site::Lock, Lesson::Long);
            assert_eq!(budget(Site::Lock), MIN_ROUNDS, "a long wait on an idle core changes nothing");
            // Spinning that pays (here: in the first round) grows it back to
            // the ceiling within a few dozen waits.
            for _ in 0..40 {
                assert!(spin_then_yield(Site::Lock, None, || true));
            }
            assert_eq!(budget(Site::Lock), MAX_ROUNDS);
            // The whole budget is spun (and, but for the queue, yielded)
            // before the caller is told to sleep.
            learn(Site::Notify, Lesson::Busy);
            for (site, rounds, yields) in [(Site::Notify, budget(Site::Notify), YIELDS), (Site::Queue, MAX_ROUNDS, 0)] {
                let mut calls = 0;
                assert!(!spin_then_yield(site, None, || {
                    calls += 1;
                    false
                }));
                assert_eq!(calls, rounds + yields, "{site:?}");
            }
            // A deadline that passed: no spin at all. One closer than the
            // yield margin: the spin, no yields.
            let mut calls = 0;
            let past = Instant::now();
            assert!(!spin_then_yield(Site::Notify, Some(past), || {
                calls += 1;
                false
            }));
            assert_eq!(calls, 0);
            let rounds = budget(Site::Notify);
            let soon = Instant::now() + YIELD_MARGIN / 2;
            assert!(!spin_then_yield(Site::Notify, Some(soon), || {
                calls += 1;
                false
            }));
            assert!(calls <= rounds, "{calls} calls: yields with {:?} left", YIELD_MARGIN / 2);
        })
        .join()
        .unwrap();
    }
}
