//! Read-only attach (`Segment::attach_read_only`): a handle that cannot
//! write (compile-fail UI test `tests/ui/read_only_write.rs`), on pages
//! mapped without write permission, that works for a user who may only
//! read the file.
#![allow(missing_docs, reason = "a test binary, not an API")]

mod common;

use common::{child, unique_name};
use shmem::{Error, Event, Queue, Segment, SegmentOptions, Shared};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

#[derive(Shared, Default)]
pub struct Corner {
    pub x: i32,
    pub flags: [bool; 2],
}

#[derive(Shared, Default)]
pub struct Board {
    pub hits: u64,
    pub corners: [Corner; 2],
    pub recent: [u32; 4],
    #[shared(seqlock)]
    pub pos: [f64; 2],
    #[shared(lock)]
    pub log: [u8; 16],
    pub ready: Event,
    pub jobs: Queue<u64, 8>,
}

fn create(tag: &str) -> (String, Segment<Board>) {
    let name = unique_name(tag);
    let seg = SegmentOptions::new().mode(0o644).create(&name, &Board::default()).unwrap();
    (name, seg)
}

fn a_read_only_handle_reads_live_values() {
    let (name, seg) = create("ro-live");
    let ro = Segment::<Board>::attach_read_only(&name).unwrap();
    seg.hits().store(41);
    seg.recent()[2].store(7);
    seg.pos().write([1.5, -2.0]);
    seg.ready().set();
    seg.jobs().try_push(5).unwrap();
    seg.jobs().try_push(6).unwrap();
    seg.corners()[1].x().store(-3);
    seg.corners()[1].flags()[1].store(true);
    assert_eq!(ro.hits().load(), 41);
    assert_eq!(ro.recent()[2].load(), 7);
    assert_eq!(ro.recent().iter().map(|a| a.load()).sum::<u32>(), 7);
    assert_eq!(ro.pos().read().unwrap(), [1.5, -2.0]);
    assert!(ro.ready().is_set());
    assert_eq!((ro.corners()[1].x().load(), ro.corners()[1].flags()[1].load()), (-3, true));
    assert_eq!((ro.jobs().len(), ro.jobs().capacity(), ro.jobs().is_closed()), (2, 8, false));
    assert!(matches!(Segment::<u64>::attach_read_only(&name), Err(Error::LayoutMismatch { .. })));
}

fn a_seqlock_read_waits_out_a_write_in_progress() {
    let (name, seg) = create("ro-seq");
    let ro = Segment::<Board>::attach_read_only(&name).unwrap();
    let guard = seg.pos().begin_write(&[9.0, 9.0]);
    // The write is open: a read-only reader waits (sleeping on the
    // read-only page), never repairs, and times out.
    assert!(ro.pos().read_timeout(Duration::from_millis(30)).is_err());
    std::thread::scope(|s| {
        let reader = s.spawn(|| ro.pos().read_timeout(Duration::from_secs(20)));
        std::thread::sleep(Duration::from_millis(20));
        drop(guard); // ends the write as an interrupted one: closed and poisoned
        let read = reader.join().unwrap().expect("read after the write ended");
        assert_eq!(read.unwrap_err().into_inner(), [9.0, 9.0]);
    });
}

fn the_pages_are_mapped_read_only() {
    let (name, seg) = create("ro-pages");
    let out = common::wait_output(child("write_through_read_only", &[&name]).spawn().unwrap());
    assert_eq!(out.status.signal(), Some(libc::SIGSEGV), "the write must fault: {out:?}");
    assert_eq!(seg.hits().load(), 0);
}

/// Writes through a read-only handle's memory behind the type system's
/// back: the page is not writable, so this dies of SIGSEGV.
fn role_write_through_read_only(args: &[String]) {
    let ro = Segment::<Board>::attach_read_only(&args[0]).unwrap();
    let hits = (ro.hits() as *const shmem::ReadOnly<shmem::Atomic<u64>>).cast::<u64>().cast_mut();
    // SAFETY: deliberately unsound to show the kernel refuses it: the page
    // is mapped read-only, so the store faults before changing anything.
    unsafe { hits.write_volatile(1) };
    println!("the write went through");
}

fn a_user_with_read_permission_only_attaches_read_only() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: becoming another user needs root");
        return;
    }
    let (name, seg) = create("ro-user");
    let _rm = common::RemoveOnDrop(name.clone());
    seg.hits().store(41);
    seg.pos().write([3.0, 4.0]);
    let mut c = child("other_user_reader", &[&name]).spawn().unwrap();
    // The reader says when it has read the first values (it cannot write
    // to the segment), then waits for our next write.
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(c.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "read 41", "the reader failed; see its stderr");
    seg.hits().store(42);
    // The reader could not remove the name, so it does not hold it: our
    // handle is the last holder and removes it (no stale name left behind).
    drop(seg);
    assert!(!common::shm_path(&name).exists(), "the owner's last handle removed the name");
    let out = common::wait_output(c);
    common::assert_success(&out, "other_user_reader");
}

/// Runs as `nobody` (uid 65534): the segment is root's, mode 0644.
fn role_other_user_reader(args: &[String]) {
    let name = &args[0];
    // SAFETY: (all three) this process is single-threaded here; dropping
    // privileges changes only this process; a null list with length 0.
    assert_eq!(unsafe { libc::setgroups(0, core::ptr::null()) }, 0);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::setgid(65534) }, 0);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::setuid(65534) }, 0);
    // Read-write is refused by the file's permissions...
    match SegmentOptions::new().trust_owner(0).attach::<Board>(name) {
        Err(Error::PermissionDenied { .. }) => {}
        other => panic!("read-write attach as nobody: {other:?}"),
    }
    // ...another user's segment needs trust, even read-only...
    match Segment::<Board>::attach_read_only(name) {
        Err(Error::ForeignOwner { owner: 0, me: 65534, .. }) => {}
        other => panic!("untrusted read-only attach: {other:?}"),
    }
    // ...and with it, reading works.
    let ro = SegmentOptions::new().trust_owner(0).attach_read_only::<Board>(name).unwrap();
    assert_eq!(ro.hits().load(), 41);
    assert_eq!(ro.pos().read_timeout(Duration::from_secs(5)).unwrap().unwrap(), [3.0, 4.0]);
    println!("read 41");
    let start = std::time::Instant::now();
    while ro.hits().load() != 42 {
        assert!(start.elapsed() < Duration::from_secs(60), "never saw the owner's write");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn main() {
    shmem::init();
    common::main(
        &[
            ("a_read_only_handle_reads_live_values", a_read_only_handle_reads_live_values),
            ("a_seqlock_read_waits_out_a_write_in_progress", a_seqlock_read_waits_out_a_write_in_progress),
            ("the_pages_are_mapped_read_only", the_pages_are_mapped_read_only),
            (
                "a_user_with_read_permission_only_attaches_read_only",
                a_user_with_read_permission_only_attaches_read_only,
            ),
        ],
        &[("write_through_read_only", role_write_through_read_only), ("other_user_reader", role_other_user_reader)],
    );
}
