//! `multiprocessing.Manager().dict()` done right: no server process, no
//! pickling. The parent creates a shared map and sets `0 -> "b"`; two child
//! processes each set `1 -> "a"` and print the whole map; so does the parent,
//! last: `{0: "b", 1: "a"}`.
//!
//! Run with `cargo run --release --example dict`.

use shmem::{Map, Segment, Str};

/// The whole segment is one map from small integers to short strings.
type Dict = Map<u32, Str<8>, 64>;

fn text(s: &str) -> Str<8> {
    Str::try_from(s).expect("fits")
}

/// Runs in a child process: set `1 -> "a"`, print the map.
#[shmem::worker]
fn set_and_print(dict: &Segment<Dict>) {
    dict.insert(1, text("a")).expect("the map has room");
    println!("{:?}", **dict); // a dict, in key order
}

fn main() -> Result<(), shmem::Error> {
    shmem::init();
    let name = format!("shmem-example-dict-{}", std::process::id());
    let dict = Segment::<Dict>::create_zeroed(&name)?;
    dict.insert(0, text("b")).expect("the map has room");
    for _ in 0..2 {
        shmem::spawn(&dict, set_and_print, ())?.join()?;
    }
    println!("{:?}", *dict);
    Ok(())
}
