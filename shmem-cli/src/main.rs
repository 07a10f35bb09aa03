//! `shmem`: see every shmem segment on the machine, inspect live values
//! without the Rust type, watch them, remove them, clean up stale ones.
//!
//! ```text
//! shmem ls [--json]                 every shmem segment: type, size, creator, live or stale
//! shmem show NAME [--json] [--contents]
//! shmem watch NAME [--interval MS] [--count N]
//! shmem rm NAME... [--force]        refuses a live segment unless --force
//! shmem gc [--dry-run] [--prefix P] removes every stale segment
//! ```
//!
//! Reading never writes and never takes a lock: values are copied with
//! atomic loads straight from a read-only mapping.

mod render;

use clap::{Parser, Subcommand};
use shmem_core::{Error, SegmentInfo, View};
use std::process::ExitCode;
use std::time::Duration;

/// Inspect and manage shmem shared-memory segments.
#[derive(Parser)]
#[command(name = "shmem", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every shmem segment (other files in /dev/shm are ignored).
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a segment's schema and current values.
    Show {
        /// The segment name.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Also print the items of queues and maps.
        #[arg(long)]
        contents: bool,
    },
    /// Show a segment's values again and again, until interrupted.
    Watch {
        /// The segment name.
        name: String,
        /// Milliseconds between refreshes.
        #[arg(long, default_value_t = 500)]
        interval: u64,
        /// Stop after this many refreshes (default: run until interrupted).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Remove segments by name.
    Rm {
        /// The segment names.
        #[arg(required = true)]
        names: Vec<String>,
        /// Remove even segments that processes still use.
        #[arg(long)]
        force: bool,
    },
    /// Remove every stale shmem segment (no process holds it).
    Gc {
        /// Print what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Only consider segments whose name starts with this.
        #[arg(long, default_value = "")]
        prefix: String,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("shmem: {message}");
            ExitCode::FAILURE
        }
    }
}

/// One line saying what went wrong, in the user's terms.
fn explain(name: &str, e: &Error) -> String {
    let name = &render::clean(name);
    match e {
        Error::NotFound { .. } => format!("no segment named `{name}`"),
        Error::Corrupt { reason: shmem_core::Corruption::NotAFile, .. } => {
            format!("`{name}` is not a regular file (a FIFO, socket or link?); left untouched")
        }
        Error::Corrupt { reason: shmem_core::Corruption::BadMagic, .. } => {
            format!("`{name}` is not a shmem segment (no shmem header); left untouched")
        }
        Error::VersionMismatch { found, expected, .. } => {
            format!("`{name}` has header format version {found}; this tool reads version {expected} (a newer shmem?)")
        }
        Error::PermissionDenied { .. } => format!("permission denied for `{name}`"),
        other => other.to_string(),
    }
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Ls { json } => {
            let entries = shmem_core::list().map_err(|e| e.to_string())?;
            if json {
                let items: Vec<_> = entries.iter().map(|(name, info)| render::info_json(name, info)).collect();
                println!("{}", serde_json::to_string_pretty(&items).map_err(|e| e.to_string())?);
            } else {
                println!("{}", render::ls_table(&entries));
            }
            Ok(())
        }
        Command::Show { name, json, contents } => {
            let view = View::open(&name).map_err(|e| explain(&name, &e))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&render::show_json(&view, contents)).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", render::show_text(&view, contents));
            }
            Ok(())
        }
        Command::Watch { name, interval, count } => {
            let mut n = 0;
            loop {
                let view = View::open(&name).map_err(|e| explain(&name, &e))?;
                // Clear the screen and go home, like `watch`.
                print!("\x1b[2J\x1b[H{}", render::show_text(&view, false));
                n += 1;
                if count.is_some_and(|c| n >= c) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(interval));
            }
        }
        Command::Rm { names, force } => {
            let mut failed = Vec::new();
            for name in &names {
                match shmem_core::inspect(name) {
                    Ok(SegmentInfo { live: true, .. }) if !force => {
                        failed.push(format!(
                            "`{name}` is live (a process still uses it); use --force to remove it anyway"
                        ));
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) if !(force && matches!(e, Error::Truncated { .. } | Error::Corrupt { .. })) => {
                        failed.push(explain(name, &e));
                        continue;
                    }
                    Err(_) => {}
                }
                // Without --force only a stale segment goes, and race-free: a
                // process attaching at this moment is not cut off.
                let removed =
                    if force { shmem_core::unlink(name).map(|()| true) } else { shmem_core::remove_stale(name) };
                match removed {
                    Ok(true) => println!("removed {}", render::clean(name)),
                    Ok(false) => failed.push(format!("`{}` became live; left alone", render::clean(name))),
                    Err(e) => failed.push(explain(name, &e)),
                }
            }
            if failed.is_empty() {
                Ok(())
            } else {
                Err(failed.join("\nshmem: "))
            }
        }
        Command::Gc { dry_run, prefix } => {
            let entries = shmem_core::list().map_err(|e| e.to_string())?;
            let mut removed = 0;
            for (name, info) in entries {
                let Ok(info) = info else { continue };
                // Live, persisted on purpose, or outside the prefix: kept.
                let persisted = info.header.flags & shmem_core::segment::header::FLAG_PERSIST != 0;
                if info.live || persisted || !name.starts_with(&prefix) {
                    continue;
                }
                if dry_run {
                    println!("would remove {} ({})", render::clean(&name), render::clean(&info.header.type_name));
                } else {
                    // Race-free: a process attaching at this moment keeps it.
                    // One that cannot be removed (another user's file in the
                    // sticky /dev/shm, gone meanwhile) does not stop the rest.
                    match shmem_core::remove_stale(&name) {
                        Ok(true) => {}
                        Ok(false) | Err(shmem_core::Error::NotFound { .. }) => continue,
                        Err(e) => {
                            eprintln!("shmem: {}", explain(&name, &e));
                            continue;
                        }
                    }
                    println!("removed {} ({})", render::clean(&name), render::clean(&info.header.type_name));
                }
                removed += 1;
            }
            if removed == 0 {
                println!("no stale segments");
            }
            Ok(())
        }
    }
}
