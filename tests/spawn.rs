//! Workers and child executables: results, panics, signals, timeouts,
//! kill-on-drop, death with the parent, missing segments.
#![allow(missing_docs, reason = "a test binary, not an API")]

mod common;

use common::{child, unique_name, wait_until};
use shmem::{Error, Segment, Shared, SpawnOptions};
use std::io::{BufRead, BufReader};
use std::process::Command;
use std::time::Duration;

#[derive(Shared, Default)]
pub struct Work {
    pub total: u64,
    pub started: u32,
    pub release: bool,
    pub worker_pid: u32,
}

fn create(tag: &str) -> (String, Segment<Work>) {
    let name = unique_name(tag);
    let seg = Segment::create(&name, &Work::default()).unwrap();
    (name, seg)
}

/// Adds `n` one at a time.
#[shmem::worker]
fn add(seg: &Segment<Work>, n: u64) {
    for _ in 0..n {
        seg.total().fetch_add(1);
    }
}

/// Panics with a message that includes its argument.
#[shmem::worker]
fn explode(_seg: &Segment<Work>, code: u32) {
    panic!("boom {code}");
}

/// Records its pid, then waits until `release` is set.
#[shmem::worker]
fn wait_for_release(seg: &Segment<Work>) {
    seg.worker_pid().store(std::process::id());
    seg.started().fetch_add(1);
    seg.started().notify_all();
    while !seg.release().load() {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Panics with a message of `len` bytes (larger than a pipe's buffer).
#[shmem::worker]
fn explode_loudly(_seg: &Segment<Work>, len: u64) {
    // Quietly: the default hook would print the whole message to stderr.
    std::panic::set_hook(Box::new(|_| {}));
    panic!("{}", "x".repeat(len as usize));
}

/// Records whether the worker variables are gone from its environment
/// (its own children must not take themselves for workers).
#[shmem::worker]
fn check_environment(seg: &Segment<Work>) {
    let leaked = std::env::vars().any(|(k, _)| k.starts_with("SHMEM_"));
    seg.total().store(if leaked { 1 } else { 2 });
}

/// Ends its own process with `code`, without returning.
#[shmem::worker]
fn exit_early(_seg: &Segment<Work>, code: i32) {
    std::process::exit(code);
}

/// Forks a grandchild that keeps every inherited descriptor (the status
/// pipe too) for 30 s, then returns at once.
#[shmem::worker]
fn leave_a_grandchild(seg: &Segment<Work>) {
    // SAFETY: the worker is single-threaded here; the child only sleeps
    // and exits without running any destructor.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        std::thread::sleep(Duration::from_secs(30));
        // SAFETY: ends the grandchild without the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    seg.worker_pid().store(pid as u32);
}

fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

// ---------------------------------------------------------------- children

/// An intermediate parent: spawns a worker that dies with it, prints the
/// worker's pid, and sleeps until killed.
fn role_parent_of_worker(args: &[String]) {
    let seg = Segment::<Work>::attach(&args[0]).unwrap();
    let _worker = shmem::spawn(&seg, wait_for_release, ()).unwrap();
    seg.started().wait_until_timeout(|s| s >= 1, Duration::from_secs(60)).unwrap();
    println!("{}", seg.worker_pid().load());
    std::thread::sleep(Duration::from_secs(300));
}

/// Started as an "other executable": attaches to the segment it was given.
fn role_given(_args: &[String]) {
    let seg = shmem::attach_given::<Work>().expect("attach_given");
    seg.total().fetch_add(1000);
}

/// Started without `SHMEM_SEGMENT`: `attach_given` must say so.
fn role_no_segment_given(_args: &[String]) {
    assert!(std::env::var_os("SHMEM_SEGMENT").is_none());
    match shmem::attach_given::<Work>() {
        Err(e @ Error::NoSegmentGiven { .. }) => assert!(e.to_string().contains("SHMEM_SEGMENT")),
        other => panic!("expected NoSegmentGiven, got {other:?}"),
    }
}

/// Runs without `shmem::init()` (see `main`) and spawns a worker. The child,
/// the same binary, runs this role again instead of the worker: its own
/// `spawn` must refuse (no runaway chain of children), and our `join` must
/// say the worker never ran and how to fix it.
fn role_spawn_without_init(args: &[String]) {
    // The worker child is this binary run again without arguments.
    let attached = Segment::<Work>::attach(args.first().map_or("not-given", String::as_str));
    if std::env::var_os("SHMEM_WORKER").is_some() {
        // The worker child runs this `main` again: its first shmem call says why.
        let err = attached.expect_err("a worker child without init() must not attach");
        assert!(matches!(err, Error::InitNotCalled { .. }), "{err:?}");
        assert!(format!("{err:?}").contains("add `shmem::init();` as the first line of `main`"), "{err:?}");
        std::process::exit(3);
    }
    let seg = attached.unwrap();
    match shmem::spawn(&seg, add, 5).unwrap().join() {
        Err(e @ Error::WorkerNotStarted { .. }) => println!("{e}"),
        other => panic!("expected WorkerNotStarted, got {other:?}"),
    }
}

// ---------------------------------------------------------------- tests

/// Not marked `#[shmem::worker]`.
fn not_a_worker(seg: &Segment<Work>, n: u64) {
    seg.total().fetch_add(n);
}

fn unmarked_functions_and_closures_are_refused() {
    let (_name, seg) = create("unmarked");
    match shmem::spawn(&seg, not_a_worker, 1) {
        Err(e @ Error::NotAWorker { .. }) => assert!(e.to_string().contains("not_a_worker"), "{e}"),
        other => panic!("expected NotAWorker, got {:?}", other.map(|c| c.pid())),
    }
    let closure = |seg: &Segment<Work>, n: u64| {
        seg.total().fetch_add(n);
    };
    assert!(matches!(shmem::spawn(&seg, closure, 1), Err(Error::NotAWorker { .. })));
    assert_eq!(seg.total().load(), 0);
}

fn eight_workers_add_up() {
    // Regression: workers were once constants, which made a local binding
    // of the same name a constant pattern and failed to compile.
    let explode = std::process::id();
    assert_ne!(explode, 0);
    let (_name, seg) = create("eight");
    let workers: Vec<_> = (1..=8).map(|i| shmem::spawn(&seg, add, i * 10_000).unwrap()).collect();
    for w in workers {
        assert!(w.join().unwrap().success());
    }
    assert_eq!(seg.total().load(), (1..=8).map(|i| i * 10_000).sum::<u64>());
}

fn worker_panic_reaches_parent_with_message() {
    let (_name, seg) = create("panic");
    match shmem::spawn(&seg, explode, 42).unwrap().join() {
        Err(Error::WorkerPanicked { message, worker, .. }) => {
            assert_eq!(message, "boom 42");
            assert!(worker.ends_with("::explode"), "{worker}");
        }
        other => panic!("expected WorkerPanicked, got {other:?}"),
    }
}

fn killed_worker_reports_the_signal() {
    let (_name, seg) = create("sigkill");
    let mut w = shmem::spawn(&seg, wait_for_release, ()).unwrap();
    seg.started().wait_until_timeout(|s| s >= 1, Duration::from_secs(60)).unwrap();
    assert!(w.is_alive());
    // SAFETY: sending a signal to our own child's pid.
    assert_eq!(unsafe { libc::kill(w.pid() as i32, libc::SIGKILL) }, 0);
    match w.join() {
        Err(e @ Error::ChildKilled { signal: 9, .. }) => assert!(e.to_string().contains("SIGKILL"), "{e}"),
        other => panic!("expected ChildKilled(9), got {other:?}"),
    }
}

fn join_timeout_times_out_and_the_handle_still_works() {
    let (_name, seg) = create("timeout");
    let mut w = shmem::spawn(&seg, wait_for_release, ()).unwrap();
    match w.join_timeout(Duration::from_millis(30)) {
        Err(Error::JoinTimeout { waited, .. }) => assert!(waited >= Duration::from_millis(30)),
        other => panic!("expected JoinTimeout, got {other:?}"),
    }
    assert!(w.is_alive());
    seg.release().store(true);
    assert!(w.join_timeout(Duration::from_secs(60)).unwrap().success());
}

fn kill_on_drop_ends_the_child() {
    let (_name, seg) = create("drop");
    let w = SpawnOptions::new().kill_on_drop(true).spawn(&seg, wait_for_release, ()).unwrap();
    seg.started().wait_until_timeout(|s| s >= 1, Duration::from_secs(60)).unwrap();
    let pid = w.pid();
    drop(w);
    assert!(process_gone(pid), "the child was killed and reaped on drop");
}

fn killing_the_parent_ends_its_children() {
    let (name, seg) = create("orphans");
    let mut parent = child("parent_of_worker", &[&name]).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(parent.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let worker_pid: u32 = line.trim().parse().unwrap();
    assert!(!process_gone(worker_pid));
    parent.kill().unwrap();
    common::wait_status(&mut parent);
    wait_until("the orphaned worker to die", || process_gone(worker_pid));
    assert!(!seg.release().load(), "the worker died without being released");
}

fn a_worker_is_given_the_file_not_the_name() {
    let (name, seg) = create("missing");
    shmem::unlink(&name).unwrap(); // our handle stays valid; the name is gone
                                   // The worker inherits a descriptor of the very file: it needs no name.
    assert!(shmem::spawn(&seg, add, 1).unwrap().join().unwrap().success());
    assert_eq!(seg.total().load(), 1);
}

fn other_executable_attaches_to_the_segment_it_was_given() {
    let (_name, seg) = create("given");
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env("SHMEM_TEST_ROLE", "given");
    let status = SpawnOptions::new().command(cmd, &seg).unwrap().join().unwrap();
    assert!(status.success());
    assert_eq!(seg.total().load(), 1000);
    common::run_child_ok("no_segment_given", &[]);
}

fn forgotten_init_is_reported_not_repeated() {
    let (name, seg) = create("no-init");
    let mut cmd = child("spawn_without_init", &[&name]);
    cmd.env("SHMEM_TEST_SKIP_INIT", "1");
    let out = common::wait_output(cmd.spawn().unwrap());
    common::assert_success(&out, "spawn_without_init");
    let message = String::from_utf8_lossy(&out.stdout);
    assert!(message.contains("never ran") && message.contains("call `shmem::init()`"), "{message}");
    assert!(message.contains("exit status: 3"), "the child stopped at its first attach: {message}");
    assert_eq!(seg.total().load(), 0, "the worker function did not run");
}

/// A panic message of 200 KB (three times a pipe's buffer) reaches the
/// parent: `join` reads the status pipe while it waits (it used to wait
/// for the exit first while the worker waited for room in the pipe).
fn a_large_panic_message_does_not_deadlock_join() {
    let (_name, seg) = create("loud");
    let w = shmem::spawn(&seg, explode_loudly, 200_000u64).unwrap();
    match w.join() {
        Err(Error::WorkerPanicked { message, .. }) => assert_eq!(message.len(), 200_000),
        other => panic!("expected WorkerPanicked, got {other:?}"),
    }
}

fn workers_do_not_pass_on_the_worker_variables() {
    let (_name, seg) = create("env");
    shmem::spawn(&seg, check_environment, ()).unwrap().join().unwrap();
    assert_eq!(seg.total().load(), 2, "SHMEM_* variables leaked into the worker's environment");
}

fn a_worker_that_exits_by_itself_is_reported_with_its_status() {
    let (_name, seg) = create("exit");
    let status = shmem::spawn(&seg, exit_early, 0i32).unwrap().join().unwrap();
    assert!(status.success());
    match shmem::spawn(&seg, exit_early, 3i32).unwrap().join() {
        Err(Error::WorkerFailed { message, .. }) => assert!(message.contains("exit status: 3"), "{message}"),
        other => panic!("expected WorkerFailed with the status, got {other:?}"),
    }
}

/// `join_timeout` returns in time even when the worker left a grandchild
/// holding the status pipe open.
fn join_timeout_is_bounded_with_a_grandchild_holding_the_pipe() {
    let (_name, seg) = create("grandchild");
    let mut w = shmem::spawn(&seg, leave_a_grandchild, ()).unwrap();
    let start = std::time::Instant::now();
    let r = w.join_timeout(Duration::from_millis(500));
    let took = start.elapsed();
    let grandchild = seg.worker_pid().load() as libc::pid_t;
    if grandchild > 0 {
        // SAFETY: kill on the grandchild's pid, which it recorded.
        unsafe { libc::kill(grandchild, libc::SIGKILL) };
    }
    assert!(r.is_ok(), "{r:?}");
    assert!(took < Duration::from_secs(3), "join_timeout(500ms) took {took:?}");
}

/// A worker spawned from a thread that ends at once lives on (death with
/// the parent is tied to the process, not to the spawning thread) and
/// joins normally.
fn a_worker_outlives_the_thread_that_spawned_it() {
    let (_name, seg) = create("thread");
    let mut w = std::thread::scope(|s| s.spawn(|| shmem::spawn(&seg, wait_for_release, ()).unwrap()).join().unwrap());
    let started = seg.started().wait_until_timeout(|n| n >= 1, Duration::from_secs(10));
    assert!(started.is_ok(), "the worker never started (did it die with the spawning thread?)");
    std::thread::sleep(Duration::from_millis(100));
    assert!(w.is_alive(), "the worker died with the thread that spawned it");
    seg.release().store(true);
    w.join_timeout(Duration::from_secs(10)).unwrap();
}

/// A worker given a segment another user owns, which the parent trusted
/// explicitly, trusts that owner too (it would otherwise refuse to attach).
fn a_worker_trusts_the_owner_its_parent_trusted() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: giving a file to another user needs root");
        return;
    }
    let name = unique_name("trusted");
    let _rm = common::RemoveOnDrop(name.clone());
    let seg = Segment::create(&name, &Work::default()).unwrap();
    std::os::unix::fs::chown(common::shm_path(&name), Some(65534), Some(65534)).unwrap();
    assert!(matches!(Segment::<Work>::attach(&name), Err(Error::ForeignOwner { owner: 65534, .. })));
    let parent = shmem::SegmentOptions::new().trust_owner(65534).attach::<Work>(&name).unwrap();
    drop(seg);
    let w = shmem::spawn(&parent, add, 1234).unwrap();
    assert!(w.join().unwrap().success());
    assert_eq!(parent.total().load(), 1234);
}

fn main() {
    // `spawn_without_init` simulates a program that forgets `shmem::init()`.
    if std::env::var_os("SHMEM_TEST_SKIP_INIT").is_none() {
        shmem::init();
    }
    common::main(
        &[
            ("eight_workers_add_up", eight_workers_add_up),
            ("unmarked_functions_and_closures_are_refused", unmarked_functions_and_closures_are_refused),
            ("worker_panic_reaches_parent_with_message", worker_panic_reaches_parent_with_message),
            ("killed_worker_reports_the_signal", killed_worker_reports_the_signal),
            ("join_timeout_times_out_and_the_handle_still_works", join_timeout_times_out_and_the_handle_still_works),
            ("kill_on_drop_ends_the_child", kill_on_drop_ends_the_child),
            ("killing_the_parent_ends_its_children", killing_the_parent_ends_its_children),
            ("a_worker_is_given_the_file_not_the_name", a_worker_is_given_the_file_not_the_name),
            (
                "other_executable_attaches_to_the_segment_it_was_given",
                other_executable_attaches_to_the_segment_it_was_given,
            ),
            ("forgotten_init_is_reported_not_repeated", forgotten_init_is_reported_not_repeated),
            ("a_large_panic_message_does_not_deadlock_join", a_large_panic_message_does_not_deadlock_join),
            ("workers_do_not_pass_on_the_worker_variables", workers_do_not_pass_on_the_worker_variables),
            (
                "a_worker_that_exits_by_itself_is_reported_with_its_status",
                a_worker_that_exits_by_itself_is_reported_with_its_status,
            ),
            (
                "join_timeout_is_bounded_with_a_grandchild_holding_the_pipe",
                join_timeout_is_bounded_with_a_grandchild_holding_the_pipe,
            ),
            ("a_worker_outlives_the_thread_that_spawned_it", a_worker_outlives_the_thread_that_spawned_it),
            ("a_worker_trusts_the_owner_its_parent_trusted", a_worker_trusts_the_owner_its_parent_trusted),
        ],
        &[
            ("parent_of_worker", role_parent_of_worker),
            ("given", role_given),
            ("no_segment_given", role_no_segment_given),
            ("spawn_without_init", role_spawn_without_init),
        ],
    );
}
