//! What the loom models share: "processes" as loom threads with owner
//! tokens, deaths at named crash points, and a `Park` whose waits are
//! yields that report a timeout (the worst case of spurious wake-ups).
//! `loom_lock` has a `Park` of its own whose waits really sleep.
#![allow(dead_code, reason = "each model uses a different subset")]

use loom::sync::atomic::{AtomicU64, Ordering};
use shmem_core::sync::park::{Liveness, Park};
use std::cell::Cell;
use std::time::Duration;

loom::thread_local! {
    /// The calling "process"'s owner token.
    pub static TOKEN: Cell<u64> = Cell::new(1);
    /// The crash point this "process" dies at, if any.
    pub static DIE_AT: Cell<Option<&'static str>> = Cell::new(None);
}

loom::lazy_static! {
    /// The token of the process that died in this execution (0: none).
    pub static ref DEAD: AtomicU64 = AtomicU64::new(0);
}

/// `loom::model` with a branch budget that fits the wait loops.
pub fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.max_branches = 200_000;
    builder.check(f);
}

/// The unwinding payload of a modelled death.
pub struct Died;

/// This "process" dies: the kernel marks it dead, and the thread unwinds
/// without running any more lock code.
pub fn die() -> ! {
    DEAD.store(TOKEN.with(Cell::get), Ordering::SeqCst);
    std::panic::resume_unwind(Box::new(Died));
}

/// Dies if `name` is this "process"'s crash point.
pub fn crash_point(name: &'static str) {
    if DIE_AT.with(Cell::get) == Some(name) {
        die();
    }
}

/// Liveness from the model's record of the dead.
pub fn liveness(owner: u64) -> Liveness {
    if DEAD.load(Ordering::SeqCst) == owner {
        Liveness::Dead
    } else {
        Liveness::Alive
    }
}

/// Runs `f` as the process with `token`, which dies at `die_at`. Only a
/// modelled death ends the "process" quietly: any other panic (a failed
/// assertion) fails the model.
pub fn as_process(token: u64, die_at: Option<&'static str>, f: impl FnOnce()) {
    TOKEN.with(|t| t.set(token | (7 << 32)));
    DIE_AT.with(|d| d.set(die_at));
    if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        if payload.downcast_ref::<Died>().is_none() {
            std::panic::resume_unwind(payload);
        }
    }
}

/// Starts a loom thread that runs `f` [`as_process`] with `token`, dying at
/// `die_at`.
pub fn spawn_process(
    token: u64,
    die_at: Option<&'static str>,
    f: impl FnOnce() + 'static,
) -> loom::thread::JoinHandle<()> {
    loom::thread::spawn(move || as_process(token, die_at, f))
}

/// Keeps modelled deaths out of the test output.
pub fn quiet_deaths() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<Died>().is_none() {
                default(info);
            }
        }));
    });
}

/// A `Park` whose waits are yields that report a timeout.
pub struct Yielding;

impl Park for Yielding {
    fn wait(_word: *const u32, _expected: u32, _timeout: Option<Duration>) -> bool {
        loom::thread::yield_now();
        true
    }
    fn wake_one(_word: *const u32) {}
    fn wake_all(_word: *const u32) {}
    fn me() -> u64 {
        TOKEN.with(Cell::get)
    }
    fn liveness(owner: u64, _lock: *const ()) -> Liveness {
        liveness(owner)
    }
    fn crash_point(name: &'static str) {
        crash_point(name);
    }
}
