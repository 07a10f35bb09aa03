//! shmem benchmarks: every workload in real separate processes, each figure
//! reported as a ratio to a reference measured in the same run.
//!
//! `cargo run --release --manifest-path bench/Cargo.toml [-- --quick] [--processes N] [--runs K] [--only W,W] [--load [K]]`
//! writes `bench/results/latest.md` and `bench/results/latest.svg`
//! (`--only` runs some workloads and writes nothing; `--list` names them).
//! Every workload runs `K` times (3; 1 with `--quick`) and each row reports
//! its median run. `--load K` keeps K CPU-bound background processes
//! running for the whole run (default: one per core), as on a busy server:
//! every row, references included, is measured under the same load.
//!
//! References: the hardware floor (a raw `AtomicU64` in a mapped /dev/shm
//! page), process-shared pthread mutexes (plain and robust, via libc), raw
//! `shm_open` + `mmap`, `std::process::Command`, Python's multiprocessing
//! (scripts in `bench/python/`), `raw_sync`'s mutex, `ipc-channel`, and
//! iceoryx2 publish-subscribe.
//!
//! Every multi-process figure starts its clock when all processes stand at
//! a start gate (see [`raw::Gate`]), so process start-up is never timed,
//! except in the spawn workload, which measures exactly that.

mod peers;
mod raw;
mod workloads;

use std::fmt::Write as _;
use std::process::Command;

/// One measured (or unavailable) variant of a workload.
pub struct Row {
    workload: String,
    variant: String,
    ops: u64,
    /// Total time of `ops` operations; NaN when the variant could not run.
    seconds: f64,
    note: String,
}

impl Row {
    pub fn new(workload: &str, variant: &str, ops: u64, seconds: f64) -> Row {
        Row { workload: workload.into(), variant: variant.into(), ops, seconds, note: String::new() }
    }

    /// A variant that cannot run, with the reason, shown as "n/a".
    pub fn missing(workload: &str, variant: &str, why: &str) -> Row {
        Row { workload: workload.into(), variant: variant.into(), ops: 0, seconds: f64::NAN, note: why.into() }
    }

    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }

    /// Adds "X M msg/s" as the note.
    pub fn msg_rate(self) -> Row {
        let rate = self.ops as f64 / self.seconds / 1e6;
        self.note(format!("{rate:.1} M msg/s"))
    }

    fn ns_per_op(&self) -> f64 {
        self.seconds * 1e9 / self.ops as f64
    }
}

/// Run settings from the command line.
pub struct Cfg {
    pub quick: bool,
    pub procs: usize,
    /// Each workload runs this many times; every row reports its median run.
    pub runs: usize,
    /// Background CPU hogs running for the whole run.
    pub load: usize,
}

impl Cfg {
    /// `full` normally, `small` with `--quick`.
    pub fn scale(&self, full: u64, small: u64) -> u64 {
        if self.quick {
            small
        } else {
            full
        }
    }

    /// Runs a Python baseline; `None` (with a message) if Python failed.
    pub fn python(&self, workload: &str, n: u64) -> Option<json::Obj> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/baselines.py");
        let out =
            Command::new("python3").args([script, workload, &n.to_string(), &self.procs.to_string()]).output().ok()?;
        if !out.status.success() {
            eprintln!("python {workload} failed: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        json::parse(String::from_utf8_lossy(&out.stdout).trim())
    }
}

/// Just enough JSON reading for the Python scripts' flat objects of numbers.
pub mod json {
    pub type Obj = Vec<(String, f64)>;
    pub fn parse(s: &str) -> Option<Obj> {
        let body = s.strip_prefix('{')?.strip_suffix('}')?;
        body.split(',')
            .map(|kv| {
                let (k, v) = kv.split_once(':')?;
                Some((k.trim().trim_matches('"').to_owned(), v.trim().parse().ok()?))
            })
            .collect()
    }
    pub fn get(o: &Obj, k: &str) -> f64 {
        o.iter().find(|(key, _)| key == k).map_or(f64::NAN, |(_, v)| *v)
    }
}

type Workload = fn(&Cfg, &raw::Gate) -> Vec<Row>;

const WORKLOADS: &[(&str, Workload)] = &[
    ("counter", workloads::counter),
    ("locked", workloads::locked_update),
    ("uncontended", workloads::uncontended),
    ("readers", workloads::readers),
    ("dict", workloads::dict),
    ("queue", workloads::queue),
    ("queue-mpmc", workloads::queue_mpmc),
    ("pingpong", workloads::ping_pong),
    ("spawn", workloads::spawn),
    ("attach", workloads::attach),
];

fn main() {
    shmem::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        peers::child_main(&args[1..]);
        return;
    }
    if args.first().map(String::as_str) == Some("--hog") {
        hog();
    }
    if args.iter().any(|a| a == "--list") {
        WORKLOADS.iter().for_each(|(name, _)| println!("{name}"));
        return;
    }
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1));
    let quick = args.iter().any(|a| a == "--quick");
    let cfg = Cfg {
        quick,
        procs: value("--processes").map_or(2, |p| p.parse().expect("--processes takes a number")),
        runs: value("--runs").map_or(if quick { 1 } else { 3 }, |r| r.parse().expect("--runs takes a number")),
        load: if args.iter().any(|a| a == "--load") {
            value("--load")
                .and_then(|k| k.parse().ok())
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        } else {
            0
        },
    };
    let _hogs = Hogs::start(cfg.load);
    assert!(cfg.procs > 0 && cfg.runs > 0, "--processes and --runs must be at least 1");
    let only: Option<Vec<&str>> = value("--only").map(|o| o.split(',').collect());
    if let Some(only) = &only {
        for w in only {
            assert!(WORKLOADS.iter().any(|(name, _)| name == w), "unknown workload {w:?}; --list names them");
        }
    }
    let gate = raw::Gate::create();
    let mut rows = Vec::new();
    for (name, run) in WORKLOADS {
        if only.as_ref().is_some_and(|o| !o.contains(name)) {
            continue;
        }
        let mut runs: Vec<Vec<Row>> = Vec::new();
        for i in 0..cfg.runs {
            eprintln!("running {name} ({}/{})...", i + 1, cfg.runs);
            gate.reset();
            runs.push(run(&cfg, &gate));
        }
        rows.extend(median_rows(runs));
    }
    report(&rows, &cfg, only.is_none());
}

/// A CPU-bound process: spins until killed (or its parent dies).
fn hog() -> ! {
    // SAFETY: prctl(PR_SET_PDEATHSIG) with a valid signal; no pointers.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let mut x: u64 = 1;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

/// The background load: `k` hog processes, killed when dropped.
struct Hogs(Vec<std::process::Child>);

impl Hogs {
    fn start(k: usize) -> Hogs {
        let exe = std::env::current_exe().expect("current_exe");
        Hogs((0..k).map(|_| Command::new(&exe).arg("--hog").spawn().expect("start a hog")).collect())
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for h in &mut self.0 {
            let _ = h.kill();
            let _ = h.wait();
        }
    }
}

/// Row by row, the run with the median time (each run yields the same rows
/// in the same order).
fn median_rows(runs: Vec<Vec<Row>>) -> Vec<Row> {
    let n = runs[0].len();
    let mut columns: Vec<Vec<Row>> = (0..n).map(|_| Vec::new()).collect();
    for run in runs {
        assert_eq!(run.len(), n, "a workload's runs differ in rows");
        for (i, row) in run.into_iter().enumerate() {
            columns[i].push(row);
        }
    }
    columns
        .into_iter()
        .map(|mut same| {
            same.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
            same.swap_remove(same.len() / 2)
        })
        .collect()
}

fn report(rows: &[Row], cfg: &Cfg, write: bool) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Machine: {cores} cores, {cpu}. Processes per workload: {}. Background load: {} CPU-bound processes. Each row: the median of {} runs.{}",
        cfg.procs,
        cfg.load,
        cfg.runs,
        if cfg.quick { " QUICK MODE (tiny N, numbers meaningless)." } else { "" }
    );
    let _ = writeln!(
        md,
        "Ratio = time per operation / the first (reference) row of the same workload: below 1 is faster.\n"
    );
    let _ = writeln!(md, "| workload | variant | ops | ns/op | ops/s | ratio | note |");
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---|");
    let mut svg_rows = Vec::new();
    let mut reference = f64::NAN;
    let mut last = "";
    for r in rows {
        if r.workload != last {
            reference = r.ns_per_op();
            last = &r.workload;
        }
        if r.seconds.is_nan() {
            let _ = writeln!(md, "| {} | {} | - | n/a | n/a | n/a | {} |", r.workload, r.variant, r.note);
            continue;
        }
        let ratio = r.ns_per_op() / reference;
        let ratio_text = if ratio < 0.5 {
            format!("{ratio:.4} ({:.0}x faster)", 1.0 / ratio)
        } else if ratio > 2.0 {
            format!("{ratio:.2} ({ratio:.0}x slower)")
        } else {
            format!("{ratio:.3}")
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} | {:.0} | {} | {} |",
            r.workload,
            r.variant,
            r.ops,
            r.ns_per_op(),
            1e9 / r.ns_per_op(),
            ratio_text,
            r.note
        );
        svg_rows.push((r.workload.as_str(), r.variant.as_str(), ratio));
    }
    print!("{md}");
    if !write {
        eprintln!("(--only: results/ left as they were)");
        return;
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/results");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(format!("{dir}/latest.md"), &md).unwrap();
    std::fs::write(format!("{dir}/latest.svg"), svg(&svg_rows)).unwrap();
    eprintln!("wrote {dir}/latest.md and latest.svg");
}

/// A horizontal bar chart of ratios on a log scale (1 = the reference).
fn svg(rows: &[(&str, &str, f64)]) -> String {
    let (w, bar, left) = (960.0, 22.0, 470.0);
    let h = 50.0 + bar * rows.len() as f64;
    let span = w - left - 60.0;
    // 1e-4 .. 1e4 across the plot.
    let scale = |r: f64| (r.clamp(1e-4, 1e4).log10() + 4.0) / 8.0 * span;
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='11'>\n\
         <rect width='100%' height='100%' fill='white'/>\n"
    );
    let one = left + scale(1.0);
    let _ = writeln!(
        s,
        "<text x='10' y='14'>time per op / the workload's reference (log scale; line = 1; shorter is faster; blue = shmem)</text>"
    );
    for (i, (workload, variant, ratio)) in rows.iter().enumerate() {
        let y = 24.0 + bar * i as f64;
        let x = scale(*ratio);
        let colour = if variant.starts_with("shmem") { "#2a6fdb" } else { "#999" };
        let label = format!("{workload}: {variant}").replace('&', "and").replace('<', "&lt;");
        let _ = writeln!(s, "<text x='{}' y='{}' text-anchor='end'>{label}</text>", left - 6.0, y + 14.0);
        let _ = writeln!(
            s,
            "<rect x='{left}' y='{}' width='{:.1}' height='{}' fill='{colour}'/>",
            y + 3.0,
            x.max(1.0),
            bar - 6.0
        );
        let text = if *ratio < 0.5 { format!("{:.0}x faster", 1.0 / ratio) } else { format!("{ratio:.2}") };
        let _ = writeln!(s, "<text x='{:.1}' y='{}'>{text}</text>", left + x + 4.0, y + 14.0);
    }
    let _ = writeln!(s, "<line x1='{one:.1}' y1='20' x2='{one:.1}' y2='{}' stroke='black'/>", h - 6.0);
    s.push_str("</svg>\n");
    s
}
