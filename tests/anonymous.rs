//! Anonymous segments (`Segment::create_anonymous`): memfd-backed, sealed
//! against resizing, handed to workers and child executables by inherited
//! descriptor. And named segments handed the same way.
#![allow(missing_docs, reason = "a test binary, not an API")]

mod common;

use common::{child, unique_name};
use shmem::{Error, Segment, Shared, SpawnOptions};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::Command;

#[derive(Shared, Default)]
pub struct Tally {
    pub total: u64,
    #[shared(lock)]
    pub log: [u32; 4],
}

/// Adds `n` one at a time.
#[shmem::worker]
fn add(seg: &Segment<Tally>, n: u64) {
    for _ in 0..n {
        seg.total().fetch_add(1);
    }
}

/// Tries to shrink and to grow the segment through its own handle's
/// descriptor; records 1 in `log[0]` only if both were refused with EPERM.
#[shmem::worker]
fn try_to_resize(seg: &Segment<Tally>) {
    let owned = Segment::share_fd(seg).unwrap();
    let fd = owned.as_raw_fd();
    // SAFETY: ftruncate on a descriptor the handle owns; the size cannot
    // change (that is what is tested), so the mapping stays valid.
    let shrink = unsafe { libc::ftruncate(fd, 0) } == -1 && errno() == libc::EPERM;
    // SAFETY: as above.
    let grow = unsafe { libc::ftruncate(fd, 1 << 20) } == -1 && errno() == libc::EPERM;
    seg.log().lock().unwrap()[0] = u32::from(shrink && grow);
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn seals(fd: i32) -> i32 {
    // SAFETY: F_GET_SEALS only queries the descriptor.
    unsafe { libc::fcntl(fd, libc::F_GET_SEALS) }
}

fn workers_share_an_anonymous_segment() {
    let seg = Segment::<Tally>::create_anonymous(&Tally::default()).unwrap();
    assert!(Segment::is_anonymous(&seg));
    assert_eq!(Segment::name(&seg), shmem::segment::ANONYMOUS);
    let workers: Vec<_> = (0..4).map(|_| shmem::spawn(&seg, add, 10_000).unwrap()).collect();
    for w in workers {
        assert!(w.join().unwrap().success());
    }
    assert_eq!(seg.total().load(), 40_000);
}

fn an_anonymous_segment_cannot_be_resized() {
    let seg = Segment::<Tally>::create_anonymous(&Tally::default()).unwrap();
    let owned: OwnedFd = Segment::share_fd(&seg).unwrap();
    let fd = owned.as_raw_fd();
    let wanted = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    assert_eq!(seals(fd) & wanted, wanted, "seals {:#x}", seals(fd));
    let size = std::fs::metadata(format!("/proc/self/fd/{fd}")).unwrap().len();
    // In this process, through a descriptor of the file...
    // SAFETY: the seal refuses the change, so the mapping stays valid.
    assert_eq!(unsafe { libc::ftruncate(fd, 0) }, -1);
    assert_eq!(errno(), libc::EPERM);
    // ... no further seal can be added (which could forbid writable mappings) ...
    // SAFETY: fcntl with an integer argument on an owned descriptor.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_FUTURE_WRITE) }, -1);
    assert_eq!(errno(), libc::EPERM);
    // ... in a worker, through its own description of the file ...
    assert!(shmem::spawn(&seg, try_to_resize, ()).unwrap().join().unwrap().success());
    assert_eq!(seg.log().lock().unwrap()[0], 1, "the worker could resize the segment");
    // ... and from an unrelated process that opens it through /proc.
    let me = std::process::id().to_string();
    let fd_arg = fd.to_string();
    let out = common::run_child_ok("truncate_through_proc", &[&me, &fd_arg]);
    assert_eq!(out.trim(), "refused refused", "{out}");
    assert_eq!(std::fs::metadata(format!("/proc/self/fd/{fd}")).unwrap().len(), size);
    seg.total().fetch_add(1); // still mapped, still whole
}

/// Opens `/proc/PID/fd/FD` and tries to shrink and grow it.
fn role_truncate_through_proc(args: &[String]) {
    let path = format!("/proc/{}/fd/{}", args[0], args[1]);
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).expect("open through /proc");
    let verdict = |r: std::io::Result<()>| match r {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => "refused".to_owned(),
        other => format!("{other:?}"),
    };
    println!("{} {}", verdict(file.set_len(0)), verdict(file.set_len(1 << 20)));
}

fn two_copies_of_one_program_do_not_collide() {
    // The same program twice at once, each with an anonymous segment and
    // workers: no name to collide on, each sees exactly its own total.
    let copies: Vec<_> = (0..2).map(|_| child("program", &[]).spawn().unwrap()).collect();
    for c in copies {
        let out = common::wait_output(c);
        common::assert_success(&out, "program");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "total = 60000");
    }
}

/// A program in the `Value` style: anonymous segment, three workers.
fn role_program(_args: &[String]) {
    let seg = Segment::<Tally>::create_anonymous(&Tally::default()).unwrap();
    let workers: Vec<_> = (0..3).map(|_| shmem::spawn(&seg, add, 20_000).unwrap()).collect();
    for w in workers {
        w.join().unwrap();
    }
    println!("total = {}", seg.total().load());
}

fn a_child_executable_is_given_an_anonymous_segment() {
    let seg = Segment::<Tally>::create_anonymous(&Tally::default()).unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env("SHMEM_TEST_ROLE", "given");
    let status = SpawnOptions::new().command(cmd, &seg).unwrap().join().unwrap();
    assert!(status.success());
    assert_eq!(seg.total().load(), 2, "attach_given twice, one add each");
    assert_eq!(seg.log().lock().unwrap()[1], 1, "the grandchild was refused");
}

/// Attaches twice (both work), adds one through each, then starts a
/// grandchild with the same environment: its descriptor number is closed
/// (close-on-exec), so it must be refused, never attach to whatever file
/// now has that number.
fn role_given(_args: &[String]) {
    let a = shmem::attach_given::<Tally>().expect("attach_given");
    let b = shmem::attach_given::<Tally>().expect("attach_given again");
    a.total().fetch_add(1);
    b.total().fetch_add(1);
    // Occupy low descriptor numbers with other files, so the inherited
    // number is likely to name something else in the grandchild too.
    let out = Command::new(std::env::current_exe().unwrap()).env("SHMEM_TEST_ROLE", "stale_given").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    if text.trim() == "refused" {
        a.log().lock().unwrap()[1] = 1;
    }
}

fn role_stale_given(_args: &[String]) {
    // Fill descriptors so the stale number very likely names another file.
    let _files: Vec<_> = (0..16).map(|_| std::fs::File::open("/dev/null").unwrap()).collect();
    match shmem::attach_given::<Tally>() {
        Err(Error::Io { .. }) => println!("refused"),
        other => println!("unexpected: {other:?}"),
    }
}

fn a_worker_gets_the_parents_named_segment_even_if_the_name_changed() {
    let name = unique_name("handed");
    let seg = Segment::<Tally>::create(&name, &Tally::default()).unwrap();
    // Someone removes the name and creates another segment under it.
    shmem::unlink(&name).unwrap();
    let impostor = Segment::<Tally>::create(&name, &Tally::default()).unwrap();
    assert!(shmem::spawn(&seg, add, 500).unwrap().join().unwrap().success());
    assert_eq!(seg.total().load(), 500, "the worker wrote the parent's segment");
    assert_eq!(impostor.total().load(), 0);
    drop(impostor);
    assert!(!common::shm_path(&name).exists(), "the last handle removed the name");
}

fn a_segment_passed_as_a_descriptor_attaches() {
    let seg = Segment::<Tally>::create_anonymous(&Tally::default()).unwrap();
    let fd = Segment::share_fd(&seg).unwrap();
    let other = shmem::SegmentOptions::new().attach_fd::<Tally>(fd.as_fd()).unwrap();
    drop(fd); // the handle has a description of its own
    other.total().store(7);
    assert_eq!(seg.total().load(), 7);
    let fd = Segment::share_fd(&seg).unwrap();
    assert!(matches!(shmem::SegmentOptions::new().attach_fd::<u64>(fd.as_fd()), Err(Error::LayoutMismatch { .. })));
    let null = std::fs::File::open("/dev/null").unwrap();
    assert!(shmem::SegmentOptions::new().attach_fd::<Tally>(null.as_fd()).is_err());
    // A handle from a descriptor of a *named* segment neither removes nor
    // keeps its name: the name goes with its last named handle.
    let name = unique_name("by-fd");
    let named = Segment::<Tally>::create(&name, &Tally::default()).unwrap();
    let fd = Segment::share_fd(&named).unwrap();
    let by_fd = shmem::SegmentOptions::new().attach_fd::<Tally>(fd.as_fd()).unwrap();
    drop(named);
    assert!(!common::shm_path(&name).exists(), "the last named handle removed the name");
    by_fd.total().fetch_add(1); // still mapped
}

/// The descriptor handed to a child holds the segment from the spawn on:
/// the parent can drop its handle before the child attaches without the
/// name going away under the child; once the child is done, the name goes.
fn a_child_holds_the_segment_before_it_attaches() {
    let name = unique_name("late");
    let go = std::env::temp_dir().join(format!("{name}.go"));
    let seg = Segment::<Tally>::create(&name, &Tally::default()).unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env("SHMEM_TEST_ROLE", "late_given").arg(&go);
    let child = SpawnOptions::new().command(cmd, &seg).unwrap();
    drop(seg);
    assert!(common::shm_path(&name).exists(), "the child's inherited descriptor holds the name");
    std::fs::write(&go, b"").unwrap();
    assert!(child.join().unwrap().success());
    let _ = std::fs::remove_file(&go);
    assert!(!common::shm_path(&name).exists(), "the child's handle was the last: the name is gone");
}

/// Waits for the file `args[0]`, then attaches to the segment given and adds one.
fn role_late_given(args: &[String]) {
    common::wait_until("the go file", || std::path::Path::new(&args[0]).exists());
    let seg = shmem::attach_given::<Tally>().expect("attach_given");
    seg.total().fetch_add(1);
}

/// Records in `log[2]` whether the worker got an anonymous handle (1) or
/// one named after something else (2).
#[shmem::worker]
fn record_kind(seg: &Segment<Tally>) {
    seg.log().lock().unwrap()[2] = if Segment::is_anonymous(seg) { 1 } else { 2 };
}

/// A program that was itself given a named segment spawns a worker on an
/// anonymous one: the worker must not inherit the first segment's name.
fn what_a_child_was_given_is_not_passed_on() {
    let name = unique_name("given-named");
    let seg = Segment::<Tally>::create(&name, &Tally::default()).unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env("SHMEM_TEST_ROLE", "given_then_anonymous");
    assert!(SpawnOptions::new().command(cmd, &seg).unwrap().join().unwrap().success());
    assert_eq!(seg.log().lock().unwrap()[2], 1, "the worker's handle was anonymous");
}

fn role_given_then_anonymous(_args: &[String]) {
    let named = shmem::attach_given::<Tally>().expect("attach_given");
    let anon = Segment::<Tally>::create_anonymous(&Tally::default()).unwrap();
    shmem::spawn(&anon, record_kind, ()).unwrap().join().unwrap();
    let kind = anon.log().lock().unwrap()[2];
    named.log().lock().unwrap()[2] = kind;
}

fn main() {
    shmem::init();
    common::main(
        &[
            ("workers_share_an_anonymous_segment", workers_share_an_anonymous_segment),
            ("an_anonymous_segment_cannot_be_resized", an_anonymous_segment_cannot_be_resized),
            ("two_copies_of_one_program_do_not_collide", two_copies_of_one_program_do_not_collide),
            ("a_child_executable_is_given_an_anonymous_segment", a_child_executable_is_given_an_anonymous_segment),
            (
                "a_worker_gets_the_parents_named_segment_even_if_the_name_changed",
                a_worker_gets_the_parents_named_segment_even_if_the_name_changed,
            ),
            ("a_segment_passed_as_a_descriptor_attaches", a_segment_passed_as_a_descriptor_attaches),
            ("a_child_holds_the_segment_before_it_attaches", a_child_holds_the_segment_before_it_attaches),
            ("what_a_child_was_given_is_not_passed_on", what_a_child_was_given_is_not_passed_on),
        ],
        &[
            ("truncate_through_proc", role_truncate_through_proc),
            ("program", role_program),
            ("given", role_given),
            ("stale_given", role_stale_given),
            ("late_given", role_late_given),
            ("given_then_anonymous", role_given_then_anonymous),
        ],
    );
}
