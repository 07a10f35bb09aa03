//! Turning segment headers and bytes into tables, text and JSON.

use comfy_table::{presets, Cell, Color, Table};
use serde_json::{json, Value as Json};
use shmem_core::{Error, FieldState, LockState, SchemaEntry, SegmentInfo, View};
use std::fmt::Write as _;

/// `2026-11-24 19:40:05 UTC` from milliseconds since the Unix epoch.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn size_text(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / f64::from(1u32 << 30)),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// The `ls` table.
pub fn ls_table(entries: &[(String, Result<SegmentInfo, Error>)]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING).set_header(["NAME", "TYPE", "SIZE", "CREATOR", "CREATED", "STATUS"]);
    for (name, info) in entries {
        match info {
            Ok(info) => {
                let h = &info.header;
                let status =
                    if info.live { Cell::new("live").fg(Color::Green) } else { Cell::new("stale").fg(Color::Yellow) };
                table.add_row(vec![
                    Cell::new(clean(name)),
                    Cell::new(clean(&h.type_name)),
                    Cell::new(size_text(h.file_size)),
                    Cell::new(h.creator_pid),
                    Cell::new(utc(h.created_unix_ms)),
                    status,
                ]);
            }
            Err(e) => {
                table.add_row(vec![
                    Cell::new(clean(name)),
                    Cell::new("?"),
                    Cell::new(""),
                    Cell::new(""),
                    Cell::new(""),
                    Cell::new(format!("unreadable: {}", short_error(e))).fg(Color::Red),
                ]);
            }
        }
    }
    table
}

fn short_error(e: &Error) -> String {
    match e {
        Error::VersionMismatch { found, .. } => format!("header version {found}"),
        Error::Truncated { .. } => "truncated".into(),
        Error::Corrupt { reason, .. } => reason.to_string(),
        Error::PermissionDenied { .. } => "permission denied".into(),
        other => other.to_string(),
    }
}

/// One `ls --json` object.
pub fn info_json(name: &str, info: &Result<SegmentInfo, Error>) -> Json {
    match info {
        Ok(info) => {
            let h = &info.header;
            json!({
                "name": name,
                "type": h.type_name,
                "size": h.file_size,
                "data_size": h.data_size,
                "fingerprint": format!("{:#018x}", h.fingerprint),
                "creator_pid": h.creator_pid,
                "created_unix_ms": h.created_unix_ms,
                "created": utc(h.created_unix_ms),
                "live": info.live,
                "status": if info.live { "live" } else { "stale" },
            })
        }
        Err(e) => json!({ "name": name, "status": "unreadable", "error": e.to_string() }),
    }
}

/// A value read from the segment, as text and as JSON.
struct Shown {
    text: String,
    json: Json,
}

fn shown(json: Json) -> Shown {
    let text = match &json {
        Json::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    Shown { text, json }
}

const SCALARS: [&str; 14] =
    ["u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64", "isize", "bool", "char", "f32", "f64"];

/// Decodes one scalar of `kind` from its little-endian-agnostic bits.
fn scalar(kind: &str, bits: u64, size: u64) -> Json {
    let signed = |bits: u64| {
        let shift = 64 - 8 * size;
        ((bits << shift) as i64) >> shift
    };
    match kind {
        "bool" => json!(bits != 0),
        "char" => json!(char::from_u32(bits as u32).unwrap_or(char::REPLACEMENT_CHARACTER).to_string()),
        "f32" => json!(f32::from_bits(bits as u32)),
        "f64" => json!(f64::from_bits(bits)),
        k if k.starts_with('i') => json!(signed(bits)),
        _ => json!(bits),
    }
}

/// The most elements, items or entries one value shows: a crafted schema
/// (a 4 GiB array, a map with 2^64 - 1 shards) must not make the tool run
/// or allocate without bound.
const MAX_SHOWN: u64 = 4096;

fn read_scalars(view: &View, kind: &str, offset: u64, size: u64, count: u64) -> Option<Json> {
    let elem = size.checked_div(count)?;
    if elem == 0 {
        return None;
    }
    let shown = count.min(MAX_SHOWN);
    let values: Option<Vec<Json>> = (0..shown)
        .map(|i| view.read_uint(offset.checked_add(i.checked_mul(elem)?)?, elem).map(|b| scalar(kind, b, elem)))
        .collect();
    let mut values = values?;
    if count > shown {
        values.push(json!(format!("... {} more", count - shown)));
    }
    Some(if count == 1 { values.remove(0) } else { Json::Array(values) })
}

/// `s` with control characters escaped (`\u{1b}`), so that text output
/// cannot carry terminal escape sequences from a hostile segment.
pub fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// A value whose type is known only as text (`[i64; 4]`, `Str<16>`, `u32`).
fn typed_value(view: &View, type_text: &str, offset: u64, size: u64) -> Json {
    let last = type_text.rsplit("::").next().unwrap_or(type_text);
    if last.starts_with("Str<") {
        let bytes = view.read_bytes(offset, size).unwrap_or_default();
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        return json!(String::from_utf8_lossy(&bytes[..end]));
    }
    if let Some(inner) = type_text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        if let Some((elem, len)) = inner.rsplit_once(';') {
            let (elem, len) = (elem.trim(), len.trim().parse::<u64>().ok());
            if let (true, Some(len)) = (SCALARS.contains(&elem), len) {
                if let Some(v) = read_scalars(view, elem, offset, size, len) {
                    return v;
                }
            }
        }
    }
    if SCALARS.contains(&type_text) {
        if let Some(v) = read_scalars(view, type_text, offset, size, 1) {
            return v;
        }
    }
    hex(view, offset, size)
}

fn hex(view: &View, offset: u64, size: u64) -> Json {
    let shown = size.min(64);
    let bytes = view.read_bytes(offset, shown).unwrap_or_default();
    let mut s: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if size > shown {
        s.push_str("...");
    }
    json!({ "hex": s })
}

/// An item, key or value the decoder copied out: an unsigned integer when
/// it is one machine word or less, else its first bytes in hex; `null` if
/// it could not be read.
fn item_json(bytes: &[u8], size: u64) -> Json {
    if bytes.len() as u64 != size.min(shmem_core::segment::decode::MAX_ITEM_BYTES) {
        return Json::Null;
    }
    if let (1 | 2 | 4 | 8, Ok(len)) = (size, usize::try_from(size)) {
        if bytes.len() == len {
            let mut word = [0u8; 8];
            let at = if cfg!(target_endian = "big") { 8 - len } else { 0 };
            word[at..at + len].copy_from_slice(bytes);
            return json!(u64::from_ne_bytes(word));
        }
    }
    let shown = &bytes[..bytes.len().min(64)];
    let mut s: String = shown.iter().map(|b| format!("{b:02x}")).collect();
    if size > shown.len() as u64 {
        s.push_str("...");
    }
    json!({ "hex": s })
}

fn token(lock: &LockState) -> Json {
    // The lock word holds the owner's token (see shmem::sync::liveness),
    // not a pid: shown as hex.
    lock.held_by.map_or(Json::Null, |t| json!(format!("{t:#x}")))
}

/// The value column of one schema entry.
fn entry_value(view: &View, e: &SchemaEntry, contents: bool) -> Option<Shown> {
    let kind = e.kind.as_str();
    if SCALARS.contains(&kind) {
        return read_scalars(view, kind, e.offset, e.size, e.count).map(shown);
    }
    let lock = |l: &LockState, extra: Json| {
        let mut text = match &l.held_by {
            None => "free".to_owned(),
            Some(t) => format!("held by process {t:#x}"),
        };
        if l.poisoned {
            text.push_str(", poisoned");
        }
        let mut json = json!({ "held_by": token(l), "poisoned": l.poisoned });
        if let (Json::Object(map), Json::Object(more)) = (&mut json, extra) {
            map.extend(more);
        }
        Shown { text, json }
    };
    let contents = if contents { MAX_SHOWN as usize } else { 0 };
    let Some(state) = view.field_state(e, contents) else {
        return if kind.starts_with("struct") { None } else { Some(shown(typed_value(view, kind, e.offset, e.size))) };
    };
    Some(match state {
        FieldState::Mutex(l) => lock(&l, json!({})),
        FieldState::RwLock { lock: l, readers } => {
            let mut shown = lock(&l, json!({ "readers": readers }));
            if readers > 0 {
                let _ = write!(shown.text, ", {readers} reader(s)");
            }
            shown
        }
        FieldState::SeqLock { lock: l, writing } => {
            let mut shown = lock(&l, json!({ "writing": writing }));
            if writing {
                shown.text.push_str(", write in progress");
            }
            shown
        }
        FieldState::Event { set } => shown(json!({ "set": set })),
        FieldState::Semaphore { available } => shown(json!({ "available": available })),
        FieldState::Barrier { parties, arrived } => shown(json!({ "parties": parties, "arrived": arrived })),
        FieldState::Condvar => return None,
        FieldState::Queue(q) => {
            let mut json = json!({ "len": q.len, "capacity": q.capacity, "limit": q.limit, "closed": q.closed });
            let mut text = format!("len {} / capacity {}", q.len, q.capacity);
            if q.limit < q.capacity {
                let _ = write!(text, " (limit {})", q.limit);
            }
            if q.closed {
                text.push_str(", closed");
            }
            if contents > 0 {
                let items: Vec<Json> = q.items.iter().map(|b| item_json(b, q.item_size)).collect();
                let _ = write!(text, " {}", Json::Array(items.clone()));
                json["items"] = Json::Array(items);
            }
            Shown { text, json }
        }
        FieldState::Map(m) => {
            let mut json = json!({ "len": m.len, "capacity": m.capacity });
            let mut text = format!("len {} / capacity {}", m.len, m.capacity);
            if contents > 0 {
                let entries: Vec<Json> = m
                    .entries
                    .iter()
                    .map(|(k, v)| json!([item_json(k, m.key_size), item_json(v, m.value_size)]))
                    .collect();
                let _ = write!(text, " {}", Json::Array(entries.clone()));
                json["entries"] = Json::Array(entries);
            }
            Shown { text, json }
        }
        // Kinds newer than this tool: their bytes.
        _ => shown(hex(view, e.offset, e.size)),
    })
}

fn header_lines(view: &View) -> String {
    let info = &view.info;
    let h = &info.header;
    let creator = if shmem_core::inspect(&info.name).is_ok()
        && std::path::Path::new(&format!("/proc/{}", h.creator_pid)).exists()
    {
        "running"
    } else {
        "not running"
    };
    format!(
        "segment  {}\ntype     {} (fingerprint {:#018x})\nsize     {} ({} bytes of data at offset {})\ncreator  pid {} ({creator}), {}\nstatus   {}\n",
        clean(&info.name),
        clean(&h.type_name),
        h.fingerprint,
        size_text(h.file_size),
        h.data_size,
        h.data_offset,
        h.creator_pid,
        utc(h.created_unix_ms),
        if info.live { "live" } else { "stale (no process holds it)" },
    )
}

/// `show` as text: header lines, then the schema with values.
pub fn show_text(view: &View, contents: bool) -> String {
    let mut out = header_lines(view);
    let mut table = Table::new();
    table.load_preset(presets::NOTHING).set_header(["FIELD", "KIND", "OFFSET", "SIZE", "VALUE"]);
    for e in &view.info.header.schema.entries {
        let kind = if e.count > 1 && SCALARS.contains(&e.kind.as_str()) {
            format!("{} x{}", e.kind, e.count)
        } else {
            e.kind.clone()
        };
        let value = entry_value(view, e, contents).map(|s| clean(&s.text)).unwrap_or_default();
        let path = if e.path.is_empty() { "(whole segment)".to_owned() } else { clean(&e.path) };
        table.add_row(vec![path, clean(&kind), e.offset.to_string(), e.size.to_string(), value]);
    }
    let _ = writeln!(out, "\n{table}");
    out
}

/// `show --json`.
pub fn show_json(view: &View, contents: bool) -> Json {
    let info = &view.info;
    let fields: Vec<Json> = info
        .header
        .schema
        .entries
        .iter()
        .map(|e| {
            json!({
                "path": e.path,
                "kind": e.kind,
                "offset": e.offset,
                "size": e.size,
                "count": e.count,
                "value": entry_value(view, e, contents).map_or(Json::Null, |s| s.json),
            })
        })
        .collect();
    let mut segment = info_json(&info.name, &Ok(info.clone()));
    segment["fields"] = Json::Array(fields);
    segment
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Crafted schema text (a map with 2^64 - 1 shards and slots, a queue of
    /// capacity 2^64 - 1, an array claiming 2^64 - 1 elements) renders
    /// quickly, bounded by the entry's own bytes, without a panic.
    #[test]
    fn crafted_schemas_are_bounded() {
        let name = format!("shmem-cli-unit-crafted-{}", std::process::id());
        let seg = shmem_core::Segment::<[u64; 64]>::create(&name, &[7; 64]).unwrap();
        let view = View::open(&name).unwrap();
        let max = u64::MAX;
        for kind in [
            format!("map key=8 value=8 cap={max} shards={max} slots=0 slot=24 value_at=16"),
            format!("map key=8 value=8 cap={max} shards={max} slots={max} slot={max} key_at={max} value_at={max}"),
            format!("queue item=8 cap={max} slots=192"),
            format!("queue item=0 cap={max} slots={max}"),
            "u64".to_owned(),
            format!("[u64; {max}]"),
            "[u8; 512]".to_owned(),
        ] {
            for count in [1, 2, 512, max] {
                let e = SchemaEntry { offset: 0, size: 512, count, kind: kind.clone(), path: "x".into() };
                let start = std::time::Instant::now();
                let shown = entry_value(&view, &e, true);
                assert!(start.elapsed() < std::time::Duration::from_secs(5), "{kind} x{count} took too long");
                drop(shown);
            }
        }
        drop(view);
        drop(seg);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("ok\x1b[2Jname\n"), "ok\\u{1b}[2Jname\\n");
        assert_eq!(clean("plain-name_1.2"), "plain-name_1.2");
    }

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_795_980_000_000), "2026-11-29 19:20:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn scalars_decode() {
        assert_eq!(scalar("i8", 0xFF, 1), json!(-1));
        assert_eq!(scalar("i32", 0xFFFF_FFFE, 4), json!(-2));
        assert_eq!(scalar("f32", 1.5f32.to_bits() as u64, 4), json!(1.5));
        assert_eq!(scalar("char", 'λ' as u64, 4), json!("λ"));
        assert_eq!(item_json(&7u32.to_ne_bytes(), 4), json!(7));
        assert_eq!(item_json(&[0xab; 80], 80), json!({ "hex": format!("{}...", "ab".repeat(64)) }));
        assert_eq!(item_json(&[], 8), Json::Null, "unreadable");
    }
}
