//! The `shmem` command run as a real subprocess against real segments.
#![allow(missing_docs, reason = "test types")]

use shmem::{Map, Segment, Shared, Str};
use std::process::{Command, Output};
use std::sync::Mutex;

/// `ls` and `gc` see every segment on the machine: the tests that create
/// stale segments or remove them run one at a time.
static MACHINE_WIDE: Mutex<()> = Mutex::new(());

#[derive(Shared)]
pub struct Inventory {
    pub count: u64,
    pub temperature: f64,
    pub ready: bool,
    pub levels: [i16; 3],
    #[shared(lock)]
    pub label: Str<16>,
    #[shared(seqlock)]
    pub limits: [u32; 2],
    pub stock: Map<u32, u64, 64>,
}

fn name(tag: &str) -> String {
    format!("shmem-cli-test-{tag}-{}", std::process::id())
}

fn shmem(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmem")).args(args).output().expect("run shmem")
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "shmem failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn inventory(tag: &str) -> (String, Segment<Inventory>) {
    let n = name(tag);
    let seg = Segment::<Inventory>::create_with(&n, |inv| {
        inv.count().store(42);
        inv.temperature().store(21.5);
        inv.ready().store(true);
        inv.levels()[1].store(-7);
        inv.label().set(Str::try_from("widgets").unwrap());
        inv.limits().write([10, 20]);
        inv.stock().insert(1, 100).unwrap();
        inv.stock().insert(2, 200).unwrap();
    })
    .unwrap();
    (n, seg)
}

/// A segment nobody holds any more, as a crashed program leaves it: the
/// name stays (kept here through `persist`, whose flag is then cleared in
/// the file, since a crashed program never asked for it).
fn stale(tag: &str) -> String {
    use std::os::unix::fs::FileExt;
    let n = name(tag);
    let mut seg = Segment::<u64>::create(&n, &5).unwrap();
    Segment::persist(&mut seg);
    drop(seg);
    let file = std::fs::OpenOptions::new().write(true).open(format!("/dev/shm/{n}")).unwrap();
    file.write_all_at(&0u32.to_ne_bytes(), shmem::segment::header::FLAGS_OFFSET as u64).unwrap();
    n
}

#[test]
fn ls_lists_segments_and_marks_stale_ones() {
    let _machine = MACHINE_WIDE.lock().unwrap_or_else(|e| e.into_inner());
    let (live, _seg) = inventory("ls-live");
    let dead = stale("ls-stale");
    let text = stdout(&shmem(&["ls"]));
    let line =
        |n: &str| text.lines().find(|l| l.contains(n)).unwrap_or_else(|| panic!("{n} not listed:\n{text}")).to_owned();
    assert!(line(&live).contains("Inventory") && line(&live).contains("live"), "{text}");
    assert!(line(&dead).contains("u64") && line(&dead).contains("stale"), "{text}");
    assert!(line(&live).contains(&std::process::id().to_string()), "creator pid shown");

    let json: serde_json::Value = serde_json::from_str(&stdout(&shmem(&["ls", "--json"]))).unwrap();
    let find = |n: &str| json.as_array().unwrap().iter().find(|s| s["name"] == n).cloned().unwrap();
    assert_eq!(find(&live)["status"], "live");
    assert_eq!(find(&dead)["status"], "stale");
    assert_eq!(find(&dead)["type"], "u64");
    shmem::unlink(&dead).unwrap();
}

#[test]
fn show_prints_values_in_text_and_json() {
    let (n, seg) = inventory("show");
    let text = stdout(&shmem(&["show", &n]));
    let row = |field: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(field))
            .unwrap_or_else(|| panic!("no {field}:\n{text}"))
            .trim_end()
            .to_owned()
    };
    assert!(row("count").ends_with("42"), "{text}");
    assert!(row("temperature").ends_with("21.5"));
    assert!(row("ready").ends_with("true"));
    assert!(row("levels").ends_with("[0,-7,0]"), "{}", row("levels"));
    assert!(row("label").contains("free"));
    assert!(row("label.value").ends_with("\"widgets\""), "{}", row("label.value"));
    assert!(row("limits.value").ends_with("[10,20]"));
    assert!(row("stock").contains("len 2 / capacity 64"), "{}", row("stock"));
    assert!(text.contains("status   live"));

    let guard = seg.label().lock().unwrap();
    let json: serde_json::Value = serde_json::from_str(&stdout(&shmem(&["show", &n, "--json", "--contents"]))).unwrap();
    drop(guard);
    let field = |p: &str| json["fields"].as_array().unwrap().iter().find(|f| f["path"] == p).unwrap()["value"].clone();
    assert_eq!(field("count"), 42);
    assert_eq!(field("levels"), serde_json::json!([0, -7, 0]));
    assert_eq!(
        field("label")["held_by"],
        format!("{:#x}", shmem::sync::liveness::my_token()),
        "the lock we hold is shown held by our owner token"
    );
    assert_eq!(field("label.value"), "widgets");
    assert_eq!(field("stock")["len"], 2);
    let mut entries = field("stock")["entries"].as_array().unwrap().clone();
    entries.sort_by_key(|e| e[0].as_u64());
    assert_eq!(serde_json::Value::Array(entries), serde_json::json!([[1, 100], [2, 200]]));
    assert_eq!(json["type"], "Inventory");
}

#[test]
fn watch_refreshes_until_its_count() {
    let (n, _seg) = inventory("watch");
    let text = stdout(&shmem(&["watch", &n, "--interval", "10", "--count", "3"]));
    assert_eq!(text.matches("segment  ").count(), 3);
    assert_eq!(text.matches("\x1b[2J").count(), 3);
}

#[test]
fn rm_refuses_live_segments_without_force() {
    let (n, seg) = inventory("rm");
    let out = shmem(&["rm", &n]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is live"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(shmem::inspect(&n).is_ok(), "still there");
    assert!(stdout(&shmem(&["rm", "--force", &n])).contains("removed"));
    assert!(shmem::inspect(&n).is_err());
    drop(seg);
}

#[test]
fn gc_removes_exactly_the_stale_ones() {
    let _machine = MACHINE_WIDE.lock().unwrap_or_else(|e| e.into_inner());
    let (live, _seg) = inventory("gc-live");
    let dead = [stale("gc-stale-1"), stale("gc-stale-2")];
    let prefix = "shmem-cli-test-";
    let dry = stdout(&shmem(&["gc", "--dry-run", "--prefix", prefix]));
    assert!(dead.iter().all(|d| dry.contains(&format!("would remove {d}"))), "{dry}");
    assert!(!dry.contains(&live));
    assert!(dead.iter().all(|d| shmem::inspect(d).is_ok()), "a dry run changes nothing");
    let done = stdout(&shmem(&["gc", "--prefix", prefix]));
    assert!(dead.iter().all(|d| done.contains(&format!("removed {d}"))), "{done}");
    assert!(dead.iter().all(|d| shmem::inspect(d).is_err()));
    assert!(shmem::inspect(&live).unwrap().live, "the live one stays");
}

#[test]
fn foreign_and_garbage_files_are_left_alone_and_reported() {
    let _machine = MACHINE_WIDE.lock().unwrap_or_else(|e| e.into_inner());
    let foreign = name("foreign");
    let garbage = name("garbage");
    std::fs::write(format!("/dev/shm/{foreign}"), b"some other program's shared memory").unwrap();
    std::fs::write(format!("/dev/shm/{garbage}"), vec![0xAB; 4096]).unwrap();
    let listing = stdout(&shmem(&["ls"]));
    assert!(!listing.contains(&foreign) && !listing.contains(&garbage), "not shmem segments: not listed");
    stdout(&shmem(&["gc", "--prefix", "shmem-cli-test-"]));
    let out = shmem(&["show", &garbage]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    assert!(err.contains("is not a shmem segment"), "{err}");
    let out = shmem(&["rm", &foreign]);
    assert!(!out.status.success(), "rm refuses files that are not shmem segments");
    assert!(
        std::fs::metadata(format!("/dev/shm/{foreign}")).is_ok()
            && std::fs::metadata(format!("/dev/shm/{garbage}")).is_ok()
    );
    let _ = std::fs::remove_file(format!("/dev/shm/{foreign}"));
    let _ = std::fs::remove_file(format!("/dev/shm/{garbage}"));
}

/// A FIFO or a socket in /dev/shm (any local user can make one) is skipped
/// by `ls` and `gc` and reported by `show`, never opened in a way that
/// blocks: the command would otherwise hang forever.
#[test]
fn fifos_and_sockets_never_hang_the_tools() {
    let _machine = MACHINE_WIDE.lock().unwrap_or_else(|e| e.into_inner());
    let fifo = name("fifo");
    let sock = name("sock");
    let fifo_path = std::ffi::CString::new(format!("/dev/shm/{fifo}")).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(fifo_path.as_ptr(), 0o666) }, 0);
    let _listener = std::os::unix::net::UnixListener::bind(format!("/dev/shm/{sock}")).unwrap();
    // Each command runs under a watchdog: a hang is a failure, not a stuck CI.
    let run = |args: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shmem"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > std::time::Duration::from_secs(20) {
                let _ = child.kill();
                panic!("`shmem {}` hung on a FIFO or socket", args.join(" "));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.wait_with_output().unwrap()
    };
    let listing = stdout(&run(&["ls"]));
    assert!(!listing.contains(&fifo) && !listing.contains(&sock), "not segments: not listed");
    stdout(&run(&["gc", "--prefix", "shmem-cli-test-"]));
    for special in [&fifo, &sock] {
        let out = run(&["show", special]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not a regular file"), "{err}");
    }
    assert!(std::fs::symlink_metadata(format!("/dev/shm/{fifo}")).is_ok(), "gc left the FIFO alone");
    let _ = std::fs::remove_file(format!("/dev/shm/{fifo}"));
    let _ = std::fs::remove_file(format!("/dev/shm/{sock}"));
}

#[test]
fn errors_are_one_line_and_non_zero() {
    let missing = shmem(&["show", &name("does-not-exist")]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).starts_with("shmem: no segment named"));
    let newer = name("newer");
    let mut seg = Segment::<u64>::create(&newer, &1).unwrap();
    Segment::persist(&mut seg);
    drop(seg);
    let path = format!("/dev/shm/{newer}");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[8..12].copy_from_slice(&(shmem::segment::header::VERSION + 1).to_ne_bytes());
    std::fs::write(&path, bytes).unwrap();
    let out = shmem(&["show", &newer]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("header format version {}", shmem::segment::header::VERSION + 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(path).unwrap();
    let bad = shmem(&["show", "a/b"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid segment name"));
}

/// Prints `shmem ls` and `shmem show` of a sample segment (run with
/// `--nocapture` to look at the output); asserts the sample is listed.
#[test]
fn sample_output() {
    let (n, _seg) = inventory("sample");
    let ls = stdout(&shmem(&["ls"]));
    let show = stdout(&shmem(&["show", &n, "--contents"]));
    println!("$ shmem ls\n{ls}\n$ shmem show {n} --contents\n{show}");
    assert!(ls.contains(&n) && show.contains("widgets"));
}
