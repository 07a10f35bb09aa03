//! Crash points: named places inside multi-step operations where a test can
//! have the process kill itself (`SIGKILL`), to check that every structure
//! stays exact whatever instruction a process dies at (the SQLite
//! `crashtest` discipline: kill at point k, for every k, then check).
//!
//! Each point is also a compiler fence (no instruction), so the order of the
//! steps around it is the program order in every build. The kill itself is
//! compiled in only with the `crashpoints` feature (the workspace's tests
//! enable it); without it [`crash_point!`](crate::crash_point) expands to
//! nothing. With it, a process whose environment has
//! `SHMEM_CRASH_AT=<name>` (or `<name>#<k>`, for the k-th time it passes
//! there, counting from 1) kills itself there, after printing
//! `shmem crash point: <name>` to stderr; `*#<k>` means the k-th crash point
//! of any name, which lets a harness walk every point of an operation in
//! turn without knowing their names. Otherwise a point costs one relaxed
//! load.

/// Marks a crash point named `$name` (a string literal). See [`crate::crash`].
#[doc(hidden)]
#[macro_export]
macro_rules! crash_point {
    ($name:literal) => {
        // Every crash point is also a step boundary for the compiler: plain
        // stores to shared memory on either side are not moved across it,
        // so a process killed between two steps (by a signal, at any
        // instruction) leaves them in program order, with or without the
        // `crashpoints` feature. Costs no instruction.
        ::core::sync::atomic::compiler_fence(::core::sync::atomic::Ordering::SeqCst);
        #[cfg(feature = "crashpoints")]
        $crate::crash::hit($name);
    };
}

#[cfg(feature = "crashpoints")]
mod imp {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    /// The requested point and occurrence, read once from the environment.
    fn target() -> Option<&'static (String, u64)> {
        static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
        TARGET
            .get_or_init(|| {
                let spec = std::env::var("SHMEM_CRASH_AT").ok()?;
                Some(match spec.split_once('#') {
                    Some((name, k)) => (name.to_owned(), k.parse().unwrap_or(1)),
                    None => (spec, 1),
                })
            })
            .as_ref()
    }

    /// Passes crash point `name`: kills this process if the environment
    /// asked for this point (and this occurrence of it).
    pub fn hit(name: &'static str) {
        static HITS: AtomicU64 = AtomicU64::new(0);
        let Some((want, k)) = target() else { return };
        if want != "*" && want != name {
            return;
        }
        if HITS.fetch_add(1, Ordering::Relaxed) + 1 == *k {
            // Tell the harness where we died (stderr is unbuffered).
            eprintln!("shmem crash point: {name}");
            let me = std::process::id() as libc::pid_t;
            // SAFETY: kill on our own pid with a valid signal number.
            unsafe { libc::kill(me, libc::SIGKILL) };
        }
    }
}

#[cfg(feature = "crashpoints")]
pub use imp::hit;
