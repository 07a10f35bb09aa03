//! Harness for tests that need real child processes.
//!
//! A test binary built with `harness = false` calls [`main`] with its tests
//! and its child roles. Run normally, it runs the tests through libtest-mimic
//! (same CLI and output as `cargo test`). Run with `SHMEM_TEST_ROLE=<role>`
//! (which [`child`] sets), it runs that role with the given arguments and
//! exits: the test binary is its own child process.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const ROLE_ENV: &str = "SHMEM_TEST_ROLE";

/// A test: name and body (panics to fail).
pub type Test = (&'static str, fn());
/// A child role: name and body, given the arguments after the role.
pub type Role = (&'static str, fn(&[String]));

/// Entry point of a process test binary.
pub fn main(tests: &[Test], roles: &[Role]) {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let Some((_, body)) = roles.iter().find(|(name, _)| *name == role) else {
            eprintln!("unknown child role {role:?}");
            std::process::exit(2);
        };
        body(&args);
        std::process::exit(0);
    }
    let args = libtest_mimic::Arguments::from_args();
    let trials = tests
        .iter()
        .map(|&(name, body)| {
            libtest_mimic::Trial::test(name, move || {
                std::panic::catch_unwind(body).map_err(|e| panic_message(&e).into())
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

fn panic_message(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// A command that runs this test binary as child role `role` with `args`.
pub fn child(role: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.env(ROLE_ENV, role).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Runs child role `role` and waits (bounded) for its output.
pub fn run_child(role: &str, args: &[&str]) -> Output {
    wait_output(child(role, args).spawn().expect("spawn child"))
}

/// Runs child role `role` and panics with its stderr unless it succeeds.
pub fn run_child_ok(role: &str, args: &[&str]) -> String {
    let out = run_child(role, args);
    assert_success(&out, role);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Panics with the child's output unless it exited 0.
pub fn assert_success(out: &Output, role: &str) {
    assert!(
        out.status.success(),
        "child {role} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The longest any child may run before the watchdog kills it.
pub const WATCHDOG: Duration = Duration::from_secs(120);

/// Waits for `child` and collects its output; kills it and panics if it runs
/// longer than [`WATCHDOG`] (a hang is a failure, not a stuck CI).
pub fn wait_output(mut child: Child) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("wait_with_output");
        }
        if start.elapsed() > WATCHDOG {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait_with_output");
            panic!("child hung for {WATCHDOG:?}; stderr:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (bounded by the watchdog) for a child's exit status.
pub fn wait_status(child: &mut Child) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(start.elapsed() < WATCHDOG, "child hung for {WATCHDOG:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A segment name unique to this process and call, so tests run in parallel.
pub fn unique_name(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("shmem-test-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The file behind segment `name`.
pub fn shm_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new("/dev/shm").join(name)
}

/// Removes a file under `/dev/shm` when dropped (for hand-made test files).
pub struct RemoveOnDrop(pub String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(shm_path(&self.0));
    }
}

/// Polls `cond` until it holds, panicking after the watchdog.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WATCHDOG, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}
