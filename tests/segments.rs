//! Segments across real processes: attach, layout checks, bad input,
//! create_or_attach races, ownership, liveness and an increment stress test.
#![allow(missing_docs, reason = "a test binary, not an API")]

mod common;

use common::{child, run_child_ok, shm_path, unique_name, wait_output, wait_until, RemoveOnDrop};
use shmem::{Corruption, Error, Segment, SegmentOptions, Shared};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Shared, Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub hits: u64,
    pub errors: i32,
    pub temperature: f64,
    pub running: bool,
    pub grade: char,
    pub per_core: [u16; 4],
    pub limits: Limits,
}

#[derive(Shared, Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    pub max_rps: u32,
    pub ratio: f32,
}

/// A different type, to attach under a `Stats` name.
#[derive(Shared, Debug, Default)]
pub struct Other {
    pub hits: u64,
}

/// Same name as `Other` but a different layout.
mod reordered {
    #[derive(shmem::Shared, Debug, Default)]
    pub struct Other {
        pub hits: u32,
    }
}

#[derive(Shared, Debug, Default)]
pub struct Race {
    pub initial: u64,
    pub attached: u32,
}

#[derive(Shared)]
pub struct Big {
    pub header: u64,
    pub cells: [u64; 4_000_000],
}

#[derive(Shared, Default)]
pub struct AllScalars {
    pub a_u8: u8,
    pub a_u16: u16,
    pub a_u32: u32,
    pub a_u64: u64,
    pub a_usize: usize,
    pub a_i8: i8,
    pub a_i16: i16,
    pub a_i32: i32,
    pub a_i64: i64,
    pub a_isize: isize,
    pub a_bool: bool,
    pub a_char: char,
    pub a_f32: f32,
    pub a_f64: f64,
    pub arr: [i8; 3],
}

fn sample() -> Stats {
    Stats {
        hits: 41,
        errors: -3,
        temperature: 21.5,
        running: true,
        grade: 'é',
        per_core: [1, 2, 3, 4],
        limits: Limits { max_rps: 1000, ratio: 0.25 },
    }
}

// ---------------------------------------------------------------- children

/// Attaches to a `Stats`, checks the parent's values, writes its own.
fn role_check_and_write(args: &[String]) {
    let seg = Segment::<Stats>::attach(&args[0]).expect("attach");
    assert!(!Segment::is_owner(&seg));
    assert_eq!(Segment::snapshot(&seg), sample());
    seg.hits().fetch_add(1);
    seg.per_core()[3].store(40);
    seg.limits().ratio().store(0.5);
    seg.grade().store('z');
}

/// Attaches as the wrong type and prints the error it gets.
fn role_attach_other(args: &[String]) {
    match Segment::<Other>::attach(&args[0]) {
        Err(e @ Error::LayoutMismatch { .. }) => println!("{e}"),
        other => panic!("expected a layout mismatch, got {other:?}"),
    }
    match Segment::<reordered::Other>::attach(&args[0]) {
        Err(Error::LayoutMismatch { found_type, .. }) => assert_eq!(found_type, "Stats"),
        other => panic!("expected a layout mismatch, got {other:?}"),
    }
}

/// Attaches to a name that does not exist.
fn role_attach_missing(args: &[String]) {
    match Segment::<Stats>::attach(&args[0]) {
        Err(Error::NotFound { name }) => println!("not found: {name}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

/// Waits for a start time, then `create_or_attach`es with its own initial
/// value, and holds the segment until all `n` racers attached.
fn role_race(args: &[String]) {
    let (name, index, n, start_ms): (&str, u64, u32, u128) =
        (&args[0], args[1].parse().unwrap(), args[2].parse().unwrap(), args[3].parse().unwrap());
    while SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() < start_ms {
        std::hint::spin_loop();
    }
    let seg = Segment::create_or_attach(name, &Race { initial: 1000 + index, attached: 0 }).expect("create_or_attach");
    seg.attached().fetch_add(1);
    wait_until("all racers", || seg.attached().load() == n);
    println!("{} {}", if Segment::is_owner(&seg) { "creator" } else { "attacher" }, seg.initial().load());
}

/// Increments counters `n` times.
fn role_increment(args: &[String]) {
    let seg = Segment::<Stats>::attach(&args[0]).expect("attach");
    let n: u64 = args[1].parse().unwrap();
    for _ in 0..n {
        seg.hits().fetch_add(1);
        seg.errors().fetch_sub(1);
        seg.temperature().fetch_add(1.0);
        seg.per_core()[1].fetch_add(1);
    }
}

/// Attaches and drops the handle.
fn role_attach_and_drop(args: &[String]) {
    let seg = Segment::<Stats>::attach(&args[0]).expect("attach");
    drop(seg);
}

/// Attaches to a large segment and checks it, on a small stack.
fn role_big(args: &[String]) {
    let name = args[0].clone();
    std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(move || {
            let seg = Segment::<Big>::attach(&name).expect("attach");
            assert_eq!(seg.header().load(), 7);
            for i in [0, 1, 1_999_999, 3_999_999] {
                assert_eq!(seg.cells()[i].load(), i as u64 * 3);
            }
            seg.cells()[3_999_999].store(1);
        })
        .unwrap()
        .join()
        .unwrap();
}

/// Attaches and then sleeps until killed.
fn role_hold(args: &[String]) {
    let _seg = Segment::<Stats>::attach(&args[0]).expect("attach");
    println!("attached");
    std::thread::sleep(Duration::from_secs(300));
}

/// Writes through every scalar type's operations.
fn role_all_scalars(args: &[String]) {
    let s = Segment::<AllScalars>::attach(&args[0]).expect("attach");
    s.a_u8().fetch_add(250);
    s.a_u16().fetch_or(0xF0F0);
    s.a_u32().fetch_max(7);
    s.a_u64().swap(u64::MAX);
    s.a_usize().compare_exchange(5, 6).unwrap();
    s.a_i8().fetch_sub(100);
    s.a_i16().fetch_min(-300);
    s.a_i32().fetch_xor(0b1010);
    s.a_i64().update(|v| v * 10);
    s.a_isize().fetch_and(0b0110);
    s.a_bool().fetch_not();
    s.a_char().store('λ');
    s.a_f32().fetch_sub(0.5);
    s.a_f64().fetch_max(1e300);
    for (i, a) in s.arr().iter().enumerate() {
        a.store(-(i as i8));
    }
}

// ---------------------------------------------------------------- tests

fn attach_from_child_sees_parent_writes() {
    let name = unique_name("attach");
    let seg = Segment::create(&name, &sample()).unwrap();
    assert!(Segment::is_owner(&seg));
    run_child_ok("check_and_write", &[&name]);
    let got = Segment::snapshot(&seg);
    assert_eq!(got.hits, 42);
    assert_eq!(got.per_core, [1, 2, 3, 40]);
    assert_eq!(got.limits.ratio, 0.5);
    assert_eq!(got.grade, 'z');
}

fn two_types_under_one_name_mismatch() {
    let name = unique_name("mismatch");
    let _seg = Segment::create(&name, &sample()).unwrap();
    let out = run_child_ok("attach_other", &[&name]);
    assert!(out.contains("holds `Stats`") && out.contains("not `Other`"), "{out}");
    assert!(out.contains("the segment has i32 at offset 8, this program has no such field"), "{out}");
    assert!(out.contains("more; see Error::LayoutMismatch's `differences`"), "{out}");
}

/// Two builds of one program, where a field changed type: the message
/// names the field and both types, and `Debug` (what `?` in `main` prints)
/// starts with that message and lists every difference.
fn a_retyped_field_is_named_in_the_mismatch() {
    mod old {
        #[derive(shmem::Shared, Default)]
        pub struct Rec {
            pub id: u32,
            pub count: u64,
            pub gone: [u8; 4],
        }
    }
    mod new {
        #[derive(shmem::Shared, Default)]
        pub struct Rec {
            pub id: u32,
            pub count: i64,
            pub added: [u8; 4],
        }
    }
    let name = unique_name("retyped");
    let _seg = Segment::create(&name, &old::Rec::default()).unwrap();
    let err = Segment::<new::Rec>::attach(&name).unwrap_err();
    let Error::LayoutMismatch { differences, .. } = &err else { panic!("{err:?}") };
    assert_eq!(
        &differences[..],
        [
            "field `count`: the segment has u64 at offset 8, this program expects i64 at offset 8",
            "field `gone`: the segment has [u8; 4] at offset 16, this program has no such field",
            "field `added`: this program expects [u8; 4] at offset 16, the segment has no such field",
        ]
    );
    let message = err.to_string();
    assert!(message.contains("holds another layout of `Rec`"), "{message}");
    assert!(message.contains(&differences[0]) && message.contains("and 2 more"), "{message}");
    assert!(message.contains(&format!("shmem show {name}")), "{message}");
    let debug = format!("{err:?}");
    assert!(debug.starts_with(&message), "{debug}");
    assert!(differences.iter().all(|d| debug.contains(d.as_str())), "{debug}");
}

/// Sizes that cannot be mapped are typed errors, never an overflow: an
/// array length whose size overflows, and a type aligned to more than a
/// page (the mapping is only page-aligned).
fn impossible_sizes_and_alignments_are_refused() {
    let huge = SegmentOptions::new().create_anonymous_array_with::<u64>(usize::MAX / 4, |_| {});
    assert!(matches!(huge, Err(Error::NoSpace { .. })), "{huge:?}");
    let name = unique_name("huge");
    assert!(matches!(
        SegmentOptions::new().create_array_with::<u32>(&name, 1 << 40, |_| {}),
        Err(Error::NoSpace { .. })
    ));
    assert!(!shm_path(&name).exists());

    #[shmem::plain]
    #[repr(align(8192))]
    pub struct Big {
        pub bytes: [u8; 8192],
    }
    #[derive(Shared)]
    pub struct Holder {
        #[shared(lock)]
        pub big: Big,
    }
    match Segment::<Holder>::create_anonymous_with(|_| {}) {
        Err(Error::Io { op, .. }) => assert!(op.contains("aligned to more than a page"), "{op}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A field found in one segment opened by schema is refused by another
/// (its offsets were checked against the first), and a value behind a lock
/// is only reachable through the lock.
fn schema_fields_belong_to_their_segment() {
    use shmem::segment::dynamic::DynValue;
    #[derive(Shared)]
    pub struct Big {
        pub x: u64,
        pub pad: [u64; 512],
        #[shared(lock)]
        pub log: [u8; 1024],
    }
    #[derive(Shared, Default)]
    pub struct Small {
        pub x: u64,
        #[shared(lock)]
        pub n: u64,
    }
    let (big_name, small_name) = (unique_name("dyn-big"), unique_name("dyn-small"));
    let _big = Segment::<Big>::create_with(&big_name, |_| {}).unwrap();
    let small_typed = Segment::create(&small_name, &Small::default()).unwrap();
    let big = SegmentOptions::new().attach_dyn(&big_name).unwrap();
    let small = SegmentOptions::new().attach_dyn(&small_name).unwrap();
    let pad = big.field("pad").unwrap();
    assert_eq!(small.load(&pad, 500), None, "another segment's field");
    assert_eq!(small.store(&pad, 0, DynValue::Int(1)), None);
    let log = big.locked_field("log").unwrap();
    assert_eq!(small.lock_within(&log, Some(Duration::from_millis(1))), None);
    assert!(small.field("n.value").is_none(), "a locked value is not a lock-free scalar");
    let n = small.locked_field("n").unwrap();
    assert_eq!(small.read_value(&n), None, "not without holding the lock");
    assert_eq!(small.lock_within(&n, Some(Duration::MAX)), Some(false));
    small.write_value(&n, &7u64.to_ne_bytes()).unwrap();
    // SAFETY: no typed guard of `n` exists in this process.
    assert!(unsafe { small.unlock(&n) });
    assert_eq!(*small_typed.n().lock().unwrap(), 7);

    // A seqlock value read as SeqLock::read reads it: never torn, and a
    // write in progress is waited out (then a timeout, never a repair).
    #[derive(Shared, Default)]
    pub struct Pose {
        pub id: u32,
        #[shared(seqlock)]
        pub xyz: [f64; 3],
    }
    let pose_name = unique_name("dyn-seq");
    let pose = Segment::create(&pose_name, &Pose { id: 1, xyz: [1.0, 2.0, 3.0] }).unwrap();
    let dynamic = SegmentOptions::new().attach_dyn(&pose_name).unwrap();
    let (bytes, poisoned) = dynamic.read_seqlock("xyz", Duration::from_secs(1)).unwrap().unwrap();
    let read: Vec<f64> = bytes.chunks(8).map(|c| f64::from_ne_bytes(c.try_into().unwrap())).collect();
    assert_eq!((read, poisoned), (vec![1.0, 2.0, 3.0], false));
    let writing = pose.xyz().begin_write(&[9.0, 9.0, 9.0]);
    assert!(dynamic.read_seqlock("xyz", Duration::from_millis(20)).unwrap().is_err(), "a write in progress");
    drop(writing); // closes the write as an interrupted one: poisoned
    assert!(dynamic.read_seqlock("xyz", Duration::from_secs(1)).unwrap().unwrap().1);
    assert!(dynamic.read_seqlock("id", Duration::from_secs(1)).is_none(), "not a seqlock");
}

/// A struct declared at run time is the very segment the derive makes:
/// padding, alignment, every scalar kind, arrays; the typed attach checks
/// the fingerprint, the schema and the size.
fn a_struct_declared_at_run_time_is_the_derived_one() {
    use shmem::segment::dynamic::{DynDecl, DynKind, DynValue};
    #[derive(Shared)]
    pub struct Mixed {
        pub a: u8,
        pub b: f64,
        pub c: bool,
        pub d: [u16; 3],
        pub e: char,
        pub f: i32,
        pub g: [i8; 5],
        pub h: u64,
    }
    let decl = |name, kind, count| DynDecl { name, kind, count };
    let fields = [
        decl("a", DynKind::U8, 1),
        decl("b", DynKind::F64, 1),
        decl("c", DynKind::Bool, 1),
        decl("d", DynKind::U16, 3),
        decl("e", DynKind::Char, 1),
        decl("f", DynKind::I32, 1),
        decl("g", DynKind::I8, 5),
        decl("h", DynKind::U64, 1),
    ];
    let name = unique_name("declared");
    let made = SegmentOptions::new().create_dyn(&name, "Mixed", &fields).unwrap();
    made.store(&made.field("d").unwrap(), 2, DynValue::Int(9)).unwrap();
    made.store(&made.field("e").unwrap(), 0, DynValue::Char('z')).unwrap();
    let typed = Segment::<Mixed>::attach(&name).unwrap();
    assert_eq!((typed.d()[2].load(), typed.e().load()), (9, 'z'));
    typed.h().store(77);
    assert_eq!(made.load(&made.field("h").unwrap(), 0), Some(DynValue::Int(77)));
    // Another order is another type: refused by the typed attach.
    let mut swapped = fields;
    swapped.swap(0, 1);
    let other = unique_name("declared-other");
    let _o = SegmentOptions::new().create_dyn(&other, "Mixed", &swapped).unwrap();
    assert!(matches!(Segment::<Mixed>::attach(&other), Err(Error::LayoutMismatch { .. })));
    for bad in [&fields[..0], &[decl("1x", DynKind::U8, 1)], &[decl("a", DynKind::U8, 0)], &[fields[0], fields[0]]] {
        assert!(matches!(
            SegmentOptions::new().create_dyn(&unique_name("bad-decl"), "Mixed", bad),
            Err(Error::InvalidName { .. })
        ));
    }
}

fn missing_name_is_not_found() {
    let name = unique_name("missing");
    let out = run_child_ok("attach_missing", &[&name]);
    assert_eq!(out.trim(), format!("not found: {name}"));
    assert!(matches!(shmem::unlink(&name), Err(Error::NotFound { .. })));
}

fn invalid_names_are_rejected() {
    for bad in ["", "a/b", ".hidden", "sp ace", "nul\0"] {
        assert!(matches!(Segment::<Stats>::attach(bad), Err(Error::InvalidName { .. })), "{bad:?}");
        assert!(matches!(Segment::create(bad, &sample()), Err(Error::InvalidName { .. })), "{bad:?}");
    }
    let long = "x".repeat(300);
    let err = Segment::<Stats>::attach(&long).unwrap_err();
    assert!(err.to_string().contains("longer than 200 bytes"), "{err}");
    assert!(err.to_string().contains("(300 characters)") && err.to_string().len() < 200, "{err}");
}

fn garbage_file_is_corrupt() {
    let name = unique_name("garbage");
    let _rm = RemoveOnDrop(name.clone());
    std::fs::write(shm_path(&name), vec![0x5Au8; 8192]).unwrap();
    match Segment::<Stats>::attach(&name) {
        Err(Error::Corrupt { reason: Corruption::BadMagic, .. }) => {}
        other => panic!("expected BadMagic, got {other:?}"),
    }
    std::fs::write(shm_path(&name), b"hi").unwrap();
    assert!(matches!(Segment::<Stats>::attach(&name), Err(Error::Corrupt { reason: Corruption::BadMagic, .. })));
    std::fs::write(shm_path(&name), b"").unwrap();
    assert!(matches!(Segment::<Stats>::attach(&name), Err(Error::Corrupt { reason: Corruption::BadMagic, .. })));
}

/// A persisted real segment's bytes, for tests that damage copies of it.
fn real_segment_bytes() -> Vec<u8> {
    let name = unique_name("bytes");
    let mut seg = Segment::create(&name, &sample()).unwrap();
    Segment::persist(&mut seg);
    drop(seg);
    let bytes = std::fs::read(shm_path(&name)).unwrap();
    shmem::unlink(&name).unwrap();
    bytes
}

fn truncated_file_is_truncated() {
    let bytes = real_segment_bytes();
    let name = unique_name("truncated");
    let _rm = RemoveOnDrop(name.clone());
    for len in [bytes.len() - 1, bytes.len() / 2, 100, 9] {
        std::fs::write(shm_path(&name), &bytes[..len]).unwrap();
        match Segment::<Stats>::attach(&name) {
            Err(Error::Truncated { expected, found, .. }) => {
                assert_eq!(found, len as u64);
                assert!(expected > found);
            }
            other => panic!("len {len}: expected Truncated, got {other:?}"),
        }
    }
}

fn inconsistent_header_is_corrupt() {
    let mut bytes = real_segment_bytes();
    let name = unique_name("inconsistent");
    let _rm = RemoveOnDrop(name.clone());
    bytes[40..48].copy_from_slice(&1u64.to_ne_bytes()); // data_size no longer adds up
    std::fs::write(shm_path(&name), &bytes).unwrap();
    assert!(matches!(Segment::<Stats>::attach(&name), Err(Error::Corrupt { reason: Corruption::Inconsistent(_), .. })));
}

fn other_version_is_version_mismatch() {
    let mut bytes = real_segment_bytes();
    let name = unique_name("version");
    let _rm = RemoveOnDrop(name.clone());
    bytes[8..12].copy_from_slice(&99u32.to_ne_bytes());
    std::fs::write(shm_path(&name), &bytes).unwrap();
    match Segment::<Stats>::attach(&name) {
        Err(Error::VersionMismatch { expected: shmem::segment::header::VERSION, found: 99, .. }) => {}
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
}

fn initialising_segment_is_not_ready_after_timeout() {
    let mut bytes = real_segment_bytes();
    let name = unique_name("notready");
    let _rm = RemoveOnDrop(name.clone());
    bytes[12..16].copy_from_slice(&0u32.to_ne_bytes());
    std::fs::write(shm_path(&name), &bytes).unwrap();
    let opts = SegmentOptions::new().timeout(Duration::from_millis(50));
    match opts.attach::<Stats>(&name) {
        Err(Error::NotReady { waited, .. }) => assert!(waited >= Duration::from_millis(50)),
        other => panic!("expected NotReady, got {other:?}"),
    }
}

fn create_fails_if_name_exists() {
    let name = unique_name("exists");
    let seg = Segment::create(&name, &sample()).unwrap();
    assert!(matches!(Segment::create(&name, &sample()), Err(Error::AlreadyExists { .. })));
    assert!(matches!(Segment::<Other>::create_zeroed(&name), Err(Error::AlreadyExists { .. })));
    assert_eq!(Segment::snapshot(&seg), sample(), "the failed create did not touch the existing segment");
}

fn create_or_attach_race_has_one_creator() {
    const N: u32 = 8;
    let name = unique_name("race");
    let start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() + 300;
    let children: Vec<_> = (0..N)
        .map(|i| child("race", &[&name, &i.to_string(), &N.to_string(), &start.to_string()]).spawn().unwrap())
        .collect();
    let outputs: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = wait_output(c);
            common::assert_success(&out, "race");
            String::from_utf8(out.stdout).unwrap()
        })
        .collect();
    let creators: Vec<&String> = outputs.iter().filter(|o| o.starts_with("creator")).collect();
    assert_eq!(creators.len(), 1, "{outputs:?}");
    let value = creators[0].split_whitespace().nth(1).unwrap();
    for out in &outputs {
        assert_eq!(
            out.split_whitespace().nth(1),
            Some(value),
            "everyone sees the creator's initial value: {outputs:?}"
        );
    }
    assert!(!shm_path(&name).exists(), "the creator's drop removed the name");
}

fn owner_drop_unlinks_attacher_drop_does_not() {
    let name = unique_name("owner");
    let seg = Segment::create(&name, &sample()).unwrap();
    run_child_ok("attach_and_drop", &[&name]);
    assert!(shm_path(&name).exists(), "an attacher's drop must not unlink");
    let attached = Segment::<Stats>::attach(&name).unwrap();
    drop(attached);
    assert!(shm_path(&name).exists());
    drop(seg);
    assert!(!shm_path(&name).exists(), "the owner's drop unlinks");

    // persist() keeps the name; unlink() removes it.
    let mut seg = Segment::create(&name, &sample()).unwrap();
    Segment::persist(&mut seg);
    drop(seg);
    assert_eq!(Segment::snapshot(&Segment::<Stats>::attach(&name).unwrap()), sample());
    shmem::unlink(&name).unwrap();
    assert!(matches!(Segment::<Stats>::attach(&name), Err(Error::NotFound { .. })));

    // An owner never removes a newer segment created under its old name.
    let old = Segment::create(&name, &sample()).unwrap();
    shmem::unlink(&name).unwrap();
    let newer = Segment::create(&name, &Stats::default()).unwrap();
    drop(old);
    assert!(shm_path(&name).exists(), "the old owner left the new segment alone");
    drop(newer);
    assert!(!shm_path(&name).exists());
}

fn attached_handle_outlives_unlink() {
    let name = unique_name("outlive");
    let seg = Segment::create(&name, &sample()).unwrap();
    let other = Segment::<Stats>::attach(&name).unwrap();
    drop(seg);
    other.hits().fetch_add(1);
    assert_eq!(other.hits().load(), 42, "the mapping stays valid after the name is gone");
}

fn two_process_increments_lose_nothing() {
    const PER_CHILD: u64 = 1_000_000;
    let name = unique_name("stress");
    let seg = Segment::create(&name, &Stats::default()).unwrap();
    let n = PER_CHILD.to_string();
    let children: Vec<_> = (0..2).map(|_| child("increment", &[&name, &n]).spawn().unwrap()).collect();
    for c in children {
        common::assert_success(&wait_output(c), "increment");
    }
    assert_eq!(seg.hits().load(), 2 * PER_CHILD);
    assert_eq!(seg.errors().load(), -2 * PER_CHILD as i32);
    assert_eq!(seg.temperature().load(), 2.0 * PER_CHILD as f64, "float adds are exact below 2^53");
    assert_eq!(seg.per_core()[1].load(), (2 * PER_CHILD) as u16, "u16 wraps");
}

fn large_state_is_built_in_place() {
    let name = unique_name("big");
    let seg = Segment::<Big>::create_with(&name, |big| {
        big.header().store(7);
        for (i, cell) in big.cells().iter().enumerate() {
            cell.store(i as u64 * 3);
        }
    })
    .unwrap();
    assert_eq!(Segment::header(&seg).data_size, 8 * 4_000_001);
    run_child_ok("big", &[&name]);
    assert_eq!(seg.cells()[3_999_999].load(), 1);
    let zeroed = Segment::<Big>::create_zeroed(&unique_name("big-zero")).unwrap();
    assert!(zeroed.cells().iter().all(|c| c.load() == 0));
}

fn handles_are_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Segment<Stats>>();
    let name = unique_name("threads");
    let seg = Segment::create(&name, &Stats::default()).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10_000 {
                    seg.hits().fetch_add(1);
                }
            });
        }
    });
    assert_eq!(seg.hits().load(), 40_000);
}

fn every_scalar_type_works_across_processes() {
    let name = unique_name("scalars");
    let seg = Segment::create(
        &name,
        &AllScalars {
            a_u8: 10,
            a_u32: 3,
            a_usize: 5,
            a_i16: 5,
            a_i32: 0b0110,
            a_i64: -4,
            a_isize: 0b1100,
            a_f32: 1.0,
            ..Default::default()
        },
    )
    .unwrap();
    run_child_ok("all_scalars", &[&name]);
    let s = Segment::snapshot(&seg);
    assert_eq!(s.a_u8, 4, "10 + 250 wraps");
    assert_eq!(s.a_u16, 0xF0F0);
    assert_eq!(s.a_u32, 7);
    assert_eq!(s.a_u64, u64::MAX);
    assert_eq!(s.a_usize, 6);
    assert_eq!(s.a_i8, -100);
    assert_eq!(s.a_i16, -300);
    assert_eq!(s.a_i32, 0b1100);
    assert_eq!(s.a_i64, -40);
    assert_eq!(s.a_isize, 0b0100);
    assert!(s.a_bool);
    assert_eq!(s.a_char, 'λ');
    assert_eq!(s.a_f32, 0.5);
    assert_eq!(s.a_f64, 1e300);
    assert_eq!(s.arr, [0, -1, -2]);
}

fn mode_is_0600_unless_widened() {
    let name = unique_name("mode");
    let _seg = Segment::create(&name, &sample()).unwrap();
    let mode = std::fs::metadata(shm_path(&name)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let wide = unique_name("mode-wide");
    let _seg = SegmentOptions::new().mode(0o644).create(&wide, &sample()).unwrap();
    let mode = std::fs::metadata(shm_path(&wide)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
}

fn header_records_creator_and_liveness() {
    let name = unique_name("live");
    let mut seg = Segment::create(&name, &sample()).unwrap();
    let h = Segment::header(&seg).clone();
    assert_eq!(h.creator_pid, std::process::id());
    assert!(h.creator_start_time > 0);
    assert_eq!(h.type_name, "Stats");
    let paths: Vec<&str> = h.schema.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["hits", "errors", "temperature", "running", "grade", "per_core", "limits", "limits.max_rps", "limits.ratio"]
    );
    assert!(shmem::inspect(&name).unwrap().live);

    Segment::persist(&mut seg);
    drop(seg);
    assert!(!shmem::inspect(&name).unwrap().live, "no handle left: stale");

    let mut holder = child("hold", &[&name]).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "attached");
    assert!(shmem::inspect(&name).unwrap().live, "an attached child keeps it live");
    holder.kill().unwrap();
    common::wait_status(&mut holder);
    assert!(!shmem::inspect(&name).unwrap().live, "the kernel released the killed child's lock");
    shmem::unlink(&name).unwrap();
}

/// A segment whose file another user owns (planted under the name before
/// us, in the world-writable /dev/shm) is refused by `attach` and
/// `create_or_attach` unless that user is trusted explicitly.
fn another_users_segment_is_refused_unless_trusted() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: giving a file to another user needs root");
        return;
    }
    let name = unique_name("planted");
    let _rm = RemoveOnDrop(name.clone());
    let mut seg = Segment::<Stats>::create(&name, &Stats { hits: 7, ..Default::default() }).unwrap();
    Segment::persist(&mut seg);
    drop(seg);
    std::os::unix::fs::chown(shm_path(&name), Some(65534), Some(65534)).unwrap();
    match Segment::<Stats>::attach(&name) {
        Err(Error::ForeignOwner { owner: 65534, me: 0, .. }) => {}
        other => panic!("expected ForeignOwner, got {other:?}"),
    }
    let planted = Stats { hits: 1, ..Default::default() };
    // While another process (here: a trusting handle) keeps it live...
    let holder = SegmentOptions::new().trust_any_owner().attach::<Stats>(&name).unwrap();
    assert!(
        matches!(Segment::<Stats>::create_or_attach(&name, &planted), Err(Error::ForeignOwner { .. })),
        "create_or_attach joined another user's segment"
    );
    drop(holder);
    // ...and once nobody holds it (it was persisted, so it is kept, not
    // stale): still refused, with or without replace_stale.
    for options in [SegmentOptions::new(), SegmentOptions::new().replace_stale(true)] {
        assert!(matches!(options.create_or_attach(&name, &planted), Err(Error::ForeignOwner { .. })));
    }
    let trusted = SegmentOptions::new().trust_owner(65534).attach::<Stats>(&name).unwrap();
    assert_eq!(trusted.hits().load(), 7);
    assert!(SegmentOptions::new().trust_any_owner().attach::<Stats>(&name).is_ok());
    let message = Segment::<Stats>::attach(&name).unwrap_err().to_string();
    assert!(message.contains("uid 65534") && message.contains("trust_owner(65534)"), "{message}");
}

/// A crashed program's segment (no process holds it) is reported as stale
/// by `create` and `create_or_attach`, with who made it and how to remove
/// it, and replaced when asked; a live one never is.
fn stale_segments_are_reported_and_replaced_on_request() {
    let name = unique_name("stale");
    let _rm = RemoveOnDrop(name.clone());
    leave_stale(&name);
    let fresh = Stats { hits: 9, ..Default::default() };
    // Not adopted even by a caller of another type (stale before mismatched).
    assert!(matches!(Segment::<u64>::create_or_attach(&name, &1), Err(Error::StaleExists { .. })));
    for result in
        [Segment::<Stats>::create(&name, &fresh).map(drop), Segment::<Stats>::create_or_attach(&name, &fresh).map(drop)]
    {
        match result {
            Err(e @ Error::StaleExists { .. }) => {
                let text = e.to_string();
                assert!(text.contains("stale") && text.contains("replace_stale(true)"), "{text}");
            }
            other => panic!("expected StaleExists, got {other:?}"),
        }
    }
    let replaced = SegmentOptions::new().replace_stale(true).create(&name, &fresh).unwrap();
    assert_eq!(replaced.hits().load(), 9);
    // Live now: never replaced.
    assert!(matches!(
        SegmentOptions::new().replace_stale(true).create(&name, &fresh),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(!shmem::remove_stale(&name).unwrap(), "remove_stale removed a live segment");
    let again = SegmentOptions::new().replace_stale(true).create_or_attach(&name, &fresh).unwrap();
    assert!(!Segment::is_owner(&again), "joined the live one");
    drop((replaced, again));
    // create_or_attach replaces a stale one when asked, and starts afresh.
    leave_stale(&name);
    let new = SegmentOptions::new().replace_stale(true).create_or_attach(&name, &fresh).unwrap();
    assert!(Segment::is_owner(&new));
    assert_eq!(new.hits().load(), 9, "the stale data (hits = 5) was not adopted");
}

/// Has a child create segment `name` and SIGKILLs it: the name stays,
/// nobody holds it.
fn leave_stale(name: &str) {
    let mut creator = child("create_and_hang", &[name]).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(creator.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    creator.kill().unwrap();
    creator.wait().unwrap();
    assert!(shm_path(name).exists());
}

/// Creates segment `args[0]` (hits = 5), says ready, and waits to be killed.
fn role_create_and_hang(args: &[String]) {
    let _seg = Segment::<Stats>::create(&args[0], &Stats { hits: 5, ..Default::default() }).unwrap();
    println!("ready");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(300));
}

/// A persisted segment that nobody holds is kept on purpose, not stale.
fn persisted_segments_are_not_stale() {
    let name = unique_name("persisted");
    let _rm = RemoveOnDrop(name.clone());
    let mut seg = Segment::<Stats>::create(&name, &Stats { hits: 5, ..Default::default() }).unwrap();
    Segment::persist(&mut seg);
    drop(seg);
    let fresh = Stats::default();
    assert!(matches!(Segment::<Stats>::create(&name, &fresh), Err(Error::AlreadyExists { .. })));
    let again = Segment::<Stats>::create_or_attach(&name, &fresh).unwrap();
    assert_eq!(again.hits().load(), 5, "create_or_attach joins a persisted segment");
    assert!(!shmem::remove_stale(&name).unwrap() || !shm_path(&name).exists());
}

/// `create_or_attach`, add 1 to `hits`, say ready, wait for `running`.
fn role_coa_add_and_wait(args: &[String]) {
    let seg = Segment::<Stats>::create_or_attach(&args[0], &Stats::default()).unwrap();
    seg.hits().fetch_add(1);
    println!("ready {}", if Segment::is_owner(&seg) { "creator" } else { "attacher" });
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    wait_until("running", || seg.running().load());
}

/// `create_or_attach` and print what it found.
fn role_coa_report(args: &[String]) {
    let seg = Segment::<Stats>::create_or_attach(&args[0], &Stats::default()).unwrap();
    println!("{} {}", seg.hits().load(), if Segment::is_owner(&seg) { "creator" } else { "attacher" });
}

/// Three processes `create_or_attach` one name and leave in turn, the
/// creator first: the name stays while any of them holds it, so the last
/// one still sees the others' writes (the creator's drop used to remove the
/// name, and a later process created a second segment under it).
fn create_or_attach_processes_that_leave_in_turn_share_one_segment() {
    let name = unique_name("coa-turns");
    let _rm = RemoveOnDrop(name.clone());
    let mut a = child("coa_add_and_wait", &[&name]).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(a.stdout.as_mut().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "ready creator");
    let b = Segment::<Stats>::create_or_attach(&name, &Stats::default()).unwrap();
    assert!(!Segment::is_owner(&b));
    b.hits().fetch_add(1);
    b.running().store(true);
    let out = wait_output(a);
    assert!(out.status.success());
    assert!(shm_path(&name).exists(), "the creator's exit removed a name another process holds");
    let report = run_child_ok("coa_report", &[&name]);
    assert_eq!(report.trim(), "2 attacher", "the third process must join the same segment");
    drop(b);
    assert!(!shm_path(&name).exists(), "the last handle removes the name");
}

fn main() {
    common::main(
        &[
            ("another_users_segment_is_refused_unless_trusted", another_users_segment_is_refused_unless_trusted),
            (
                "stale_segments_are_reported_and_replaced_on_request",
                stale_segments_are_reported_and_replaced_on_request,
            ),
            (
                "create_or_attach_processes_that_leave_in_turn_share_one_segment",
                create_or_attach_processes_that_leave_in_turn_share_one_segment,
            ),
            ("persisted_segments_are_not_stale", persisted_segments_are_not_stale),
            ("attach_from_child_sees_parent_writes", attach_from_child_sees_parent_writes),
            ("two_types_under_one_name_mismatch", two_types_under_one_name_mismatch),
            ("a_retyped_field_is_named_in_the_mismatch", a_retyped_field_is_named_in_the_mismatch),
            ("impossible_sizes_and_alignments_are_refused", impossible_sizes_and_alignments_are_refused),
            ("schema_fields_belong_to_their_segment", schema_fields_belong_to_their_segment),
            ("a_struct_declared_at_run_time_is_the_derived_one", a_struct_declared_at_run_time_is_the_derived_one),
            ("missing_name_is_not_found", missing_name_is_not_found),
            ("invalid_names_are_rejected", invalid_names_are_rejected),
            ("garbage_file_is_corrupt", garbage_file_is_corrupt),
            ("truncated_file_is_truncated", truncated_file_is_truncated),
            ("inconsistent_header_is_corrupt", inconsistent_header_is_corrupt),
            ("other_version_is_version_mismatch", other_version_is_version_mismatch),
            ("initialising_segment_is_not_ready_after_timeout", initialising_segment_is_not_ready_after_timeout),
            ("create_fails_if_name_exists", create_fails_if_name_exists),
            ("create_or_attach_race_has_one_creator", create_or_attach_race_has_one_creator),
            ("owner_drop_unlinks_attacher_drop_does_not", owner_drop_unlinks_attacher_drop_does_not),
            ("attached_handle_outlives_unlink", attached_handle_outlives_unlink),
            ("two_process_increments_lose_nothing", two_process_increments_lose_nothing),
            ("large_state_is_built_in_place", large_state_is_built_in_place),
            ("handles_are_shared_between_threads", handles_are_shared_between_threads),
            ("every_scalar_type_works_across_processes", every_scalar_type_works_across_processes),
            ("mode_is_0600_unless_widened", mode_is_0600_unless_widened),
            ("header_records_creator_and_liveness", header_records_creator_and_liveness),
        ],
        &[
            ("check_and_write", role_check_and_write),
            ("attach_other", role_attach_other),
            ("attach_missing", role_attach_missing),
            ("race", role_race),
            ("increment", role_increment),
            ("attach_and_drop", role_attach_and_drop),
            ("coa_add_and_wait", role_coa_add_and_wait),
            ("create_and_hang", role_create_and_hang),
            ("coa_report", role_coa_report),
            ("big", role_big),
            ("hold", role_hold),
            ("all_scalars", role_all_scalars),
        ],
    );
}
