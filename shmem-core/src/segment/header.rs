//! The segment header: the contract between processes.
//!
//! Every segment file starts with this header, in native byte order (all
//! processes run on the same machine):
//!
//! | offset | size | field | meaning |
//! |---:|---:|---|---|
//! | 0 | 8 | `magic` | [`MAGIC`], the bytes `SHMEMSEG` |
//! | 8 | 4 | `version` | header format version, [`VERSION`] |
//! | 12 | 4 | `state` | 0 = initialising, 1 = ready |
//! | 16 | 8 | `fingerprint` | layout fingerprint of the data type |
//! | 24 | 8 | `file_size` | total size of the file in bytes |
//! | 32 | 8 | `data_offset` | where the data starts (a multiple of `data_align` and of 64) |
//! | 40 | 8 | `data_size` | size of the data in bytes |
//! | 48 | 8 | `data_align` | alignment of the data type |
//! | 56 | 4 | `type_name_len` | length of the type name in bytes (at most 1024) |
//! | 60 | 4 | `schema_len` | length of the schema text in bytes (at most 16 MiB) |
//! | 64 | 4 | `creator_pid` | pid of the creating process |
//! | 68 | 4 | `flags` | bit 0: [`FLAG_PERSIST`] (the name outlives the last handle); other bits 0 |
//! | 72 | 8 | `creator_start_time` | the creator's start time, clock ticks since boot (with the pid, identifies the process even if its pid is reused) |
//! | 80 | 8 | `created_unix_ms` | creation time, milliseconds since the Unix epoch |
//! | 88 | 8 | `liveness_offset` | where the liveness table starts (a multiple of 64) |
//! | 96 | 4 | `liveness_slots` | number of 8-byte slots in the liveness table ([`LIVENESS_SLOTS`]) |
//! | 100 | 28 | reserved | 0 |
//! | 128 | `type_name_len` | type name | UTF-8, e.g. `Stats` |
//! | … | `schema_len` | schema | UTF-8 text, see [`Schema`] |
//! | … | | padding | zero, up to `liveness_offset` |
//! | `liveness_offset` | `8 * liveness_slots` | liveness table | one owner token per attached process, see [`crate::sync::liveness`] |
//! | … | | padding | zero, up to `data_offset` |
//! | `data_offset` | `data_size` | data | the type's `#[repr(C)]` shared twin |
//!
//! Invariants checked when a header is read: `128 + type_name_len + schema_len
//! <= liveness_offset`, `liveness_offset + 8 * liveness_slots <= data_offset`, `data_offset + data_size == file_size`, `data_offset` is a
//! multiple of `data_align`, `data_align` is a power of two no larger than
//! 4096, and the file is at least `file_size` bytes long.
//!
//! A creator writes the whole file under no name (`O_TMPFILE`), initialises
//! the data, sets `state` to ready and only then links the file under its
//! name, so no other process can ever observe a half-initialised segment.
//! Readers still check `state`, so a future writer that initialises in place
//! stays compatible.

use crate::error::Corruption;
use crate::layout::Schema;

/// The magic number at offset 0: the bytes `SHMEMSEG`.
pub const MAGIC: [u8; 8] = *b"SHMEMSEG";
/// The header format version this library writes and reads.
pub const VERSION: u32 = 3;
/// Number of liveness slots a segment has: how many processes can be
/// attached to it at once.
pub const LIVENESS_SLOTS: u32 = 1024;
/// Offset of the `flags` word in the header.
pub const FLAGS_OFFSET: usize = 68;
/// `flags` bit: keep the segment's name when the last handle is dropped
/// (set by `Segment::persist`).
pub const FLAG_PERSIST: u32 = 1;
/// Size of the fixed part of the header.
pub const FIXED_LEN: usize = 128;
/// Value of `state` while the creator initialises the data.
pub const STATE_INITIALISING: u32 = 0;
/// Value of `state` once the data is ready.
pub const STATE_READY: u32 = 1;

const MAX_TYPE_NAME_LEN: u32 = 1024;
const MAX_SCHEMA_LEN: u32 = 16 << 20;
pub(crate) const MAX_ALIGN: u64 = 4096;

/// A decoded segment header. See the [module docs](self) for the format.
///
/// ```
/// # let name = format!("doc-header-{}", std::process::id());
/// let seg = shmem::Segment::<u64>::create(&name, &1)?;
/// let h = shmem::Segment::header(&seg);
/// println!("{} by pid {}, {} data bytes", h.type_name, h.creator_pid, h.data_size);
/// # Ok::<(), shmem::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header format version.
    pub version: u32,
    /// Init state: [`STATE_INITIALISING`] or [`STATE_READY`].
    pub state: u32,
    /// Layout fingerprint of the data type.
    pub fingerprint: u64,
    /// Total file size in bytes.
    pub file_size: u64,
    /// Offset of the data from the start of the file.
    pub data_offset: u64,
    /// Size of the data in bytes.
    pub data_size: u64,
    /// Alignment of the data type.
    pub data_align: u64,
    /// Pid of the creating process.
    pub creator_pid: u32,
    /// Flags: [`FLAG_PERSIST`] (as read when the header was read).
    pub flags: u32,
    /// Start time of the creating process (clock ticks since boot), 0 if unknown.
    pub creator_start_time: u64,
    /// Creation time in milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// Offset of the liveness table from the start of the file.
    pub liveness_offset: u64,
    /// Number of 8-byte slots in the liveness table.
    pub liveness_slots: u32,
    /// The data type's name.
    pub type_name: String,
    /// The data's schema.
    pub schema: Schema,
}

/// Why a header could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeaderError {
    Truncated { expected: u64, found: u64 },
    Version(u32),
    Corrupt(Corruption),
}

impl From<Corruption> for HeaderError {
    fn from(c: Corruption) -> Self {
        HeaderError::Corrupt(c)
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_ne_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_ne_bytes(a)
}

impl Header {
    /// A header for `type_name` with `schema`, whose data of `data_size`
    /// bytes aligned to `data_align` follows it.
    pub(crate) fn new(type_name: String, schema: Schema, fingerprint: u64, data_size: u64, data_align: u64) -> Header {
        let var_len = (FIXED_LEN + type_name.len() + schema.to_text().len()) as u64;
        let liveness_offset = var_len.div_ceil(64) * 64;
        let liveness_end = liveness_offset + 8 * u64::from(LIVENESS_SLOTS);
        let step = data_align.max(64);
        let data_offset = liveness_end.div_ceil(step) * step;
        let creator_pid = std::process::id();
        Header {
            version: VERSION,
            state: STATE_INITIALISING,
            fingerprint,
            file_size: data_offset + data_size,
            data_offset,
            data_size,
            data_align,
            creator_pid,
            flags: 0,
            creator_start_time: crate::os::process_start_time(creator_pid).unwrap_or(0),
            created_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            liveness_offset,
            liveness_slots: LIVENESS_SLOTS,
            type_name,
            schema,
        }
    }

    /// The header's bytes (fixed part, type name, schema), without padding.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let schema = self.schema.to_text();
        let mut b = Vec::with_capacity(FIXED_LEN + self.type_name.len() + schema.len());
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&self.version.to_ne_bytes());
        b.extend_from_slice(&self.state.to_ne_bytes());
        for v in [self.fingerprint, self.file_size, self.data_offset, self.data_size, self.data_align] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(&(self.type_name.len() as u32).to_ne_bytes());
        b.extend_from_slice(&(schema.len() as u32).to_ne_bytes());
        b.extend_from_slice(&self.creator_pid.to_ne_bytes());
        b.extend_from_slice(&self.flags.to_ne_bytes());
        b.extend_from_slice(&self.creator_start_time.to_ne_bytes());
        b.extend_from_slice(&self.created_unix_ms.to_ne_bytes());
        b.extend_from_slice(&self.liveness_offset.to_ne_bytes());
        b.extend_from_slice(&self.liveness_slots.to_ne_bytes());
        b.resize(FIXED_LEN, 0);
        b.extend_from_slice(self.type_name.as_bytes());
        b.extend_from_slice(schema.as_bytes());
        b
    }

    /// Reads and validates a header from a file of `file_len` bytes, using
    /// `read_at(buf, offset)` to read (`pread` for a real file). Never reads
    /// past `file_len` and never trusts a length before checking it.
    pub(crate) fn read(
        file_len: u64,
        mut read_at: impl FnMut(&mut [u8], u64) -> std::io::Result<()>,
    ) -> Result<Result<Header, HeaderError>, std::io::Error> {
        if file_len < FIXED_LEN as u64 {
            // Look at the magic first: a short garbage file is "not ours",
            // a short file with our magic is truncated.
            let mut head = vec![0; file_len.min(8) as usize];
            read_at(&mut head, 0)?;
            if head.len() == 8 && head == MAGIC {
                return Ok(Err(HeaderError::Truncated { expected: FIXED_LEN as u64, found: file_len }));
            }
            return Ok(Err(Corruption::BadMagic.into()));
        }
        let mut fixed = [0u8; FIXED_LEN];
        read_at(&mut fixed, 0)?;
        if fixed[..8] != MAGIC {
            return Ok(Err(Corruption::BadMagic.into()));
        }
        let version = u32_at(&fixed, 8);
        if version != VERSION {
            return Ok(Err(HeaderError::Version(version)));
        }
        let name_len = u32_at(&fixed, 56);
        let schema_len = u32_at(&fixed, 60);
        if name_len > MAX_TYPE_NAME_LEN || schema_len > MAX_SCHEMA_LEN {
            return Ok(Err(Corruption::Inconsistent("type name or schema length out of range").into()));
        }
        let var_end = FIXED_LEN as u64 + u64::from(name_len) + u64::from(schema_len);
        if var_end > file_len {
            return Ok(Err(HeaderError::Truncated { expected: var_end, found: file_len }));
        }
        let mut var = vec![0u8; (name_len + schema_len) as usize];
        read_at(&mut var, FIXED_LEN as u64)?;
        Ok(Header::decode(&fixed, &var, name_len as usize, file_len))
    }

    fn decode(fixed: &[u8; FIXED_LEN], var: &[u8], name_len: usize, file_len: u64) -> Result<Header, HeaderError> {
        let state = u32_at(fixed, 12);
        if state != STATE_INITIALISING && state != STATE_READY {
            return Err(Corruption::BadState(state).into());
        }
        let header = Header {
            version: u32_at(fixed, 8),
            state,
            fingerprint: u64_at(fixed, 16),
            file_size: u64_at(fixed, 24),
            data_offset: u64_at(fixed, 32),
            data_size: u64_at(fixed, 40),
            data_align: u64_at(fixed, 48),
            creator_pid: u32_at(fixed, 64),
            flags: u32_at(fixed, 68),
            creator_start_time: u64_at(fixed, 72),
            created_unix_ms: u64_at(fixed, 80),
            liveness_offset: u64_at(fixed, 88),
            liveness_slots: u32_at(fixed, 96),
            type_name: String::from_utf8(var[..name_len].to_vec()).map_err(|_| Corruption::BadTypeName)?,
            schema: std::str::from_utf8(&var[name_len..])
                .map_err(|_| Corruption::BadSchema("not UTF-8".into()))
                .and_then(|text| Schema::parse(text).map_err(Corruption::BadSchema))?,
        };
        let inconsistent = |what| Err(HeaderError::Corrupt(Corruption::Inconsistent(what)));
        if !header.data_align.is_power_of_two() || header.data_align > MAX_ALIGN {
            return inconsistent("data alignment is not a power of two up to 4096");
        }
        if header.liveness_offset < (FIXED_LEN + var.len()) as u64 || !header.liveness_offset.is_multiple_of(64) {
            return inconsistent("the liveness table overlaps the header or is not aligned");
        }
        if header.liveness_slots == 0 || header.liveness_slots > LIVENESS_SLOTS {
            return inconsistent("liveness slot count out of range");
        }
        if header
            .liveness_offset
            .checked_add(8 * u64::from(header.liveness_slots))
            .is_none_or(|end| end > header.data_offset)
        {
            return inconsistent("data overlaps the header");
        }
        if !header.data_offset.is_multiple_of(header.data_align) {
            return inconsistent("data offset is not aligned");
        }
        if header.data_offset.checked_add(header.data_size) != Some(header.file_size) {
            return inconsistent("data offset + data size != file size");
        }
        if file_len < header.file_size {
            return Err(HeaderError::Truncated { expected: header.file_size, found: file_len });
        }
        if file_len > header.file_size {
            return inconsistent("the file is larger than its header says");
        }
        if header.schema.entries.iter().any(|e| e.offset.checked_add(e.size).is_none_or(|end| end > header.data_size)) {
            return Err(Corruption::BadSchema("an entry lies outside the data".into()).into());
        }
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Schema;

    fn sample() -> (Header, Vec<u8>) {
        let mut h = Header::new("Stats".into(), Schema::of::<[u64; 3]>(), 0xfeed, 24, 8);
        h.state = STATE_READY;
        let mut file = h.encode();
        file.resize(h.file_size as usize, 0);
        (h, file)
    }

    fn read(file: &[u8]) -> Result<Header, HeaderError> {
        Header::read(file.len() as u64, |buf, off| {
            buf.copy_from_slice(&file[off as usize..off as usize + buf.len()]);
            Ok(())
        })
        .unwrap()
    }

    fn patch(file: &mut [u8], at: usize, bytes: &[u8]) {
        file[at..at + bytes.len()].copy_from_slice(bytes);
    }

    #[test]
    fn round_trip() {
        let (h, file) = sample();
        assert_eq!(h.data_offset % 64, 0);
        assert_eq!(read(&file), Ok(h));
    }

    #[test]
    fn garbage_and_short_files() {
        assert_eq!(read(b""), Err(HeaderError::Corrupt(Corruption::BadMagic)));
        assert_eq!(read(b"hello"), Err(HeaderError::Corrupt(Corruption::BadMagic)));
        assert_eq!(read(&[0xAB; 4096]), Err(HeaderError::Corrupt(Corruption::BadMagic)));
        let (_, file) = sample();
        assert_eq!(read(&file[..100]), Err(HeaderError::Truncated { expected: 128, found: 100 }));
        let len = file.len() as u64;
        assert_eq!(read(&file[..file.len() - 1]), Err(HeaderError::Truncated { expected: len, found: len - 1 }));
        assert_eq!(read(&file[..130]), Err(HeaderError::Truncated { expected: 128 + 5 + 12, found: 130 }));
    }

    #[test]
    fn version_and_state() {
        let (_, mut file) = sample();
        patch(&mut file, 8, &1u32.to_ne_bytes());
        assert_eq!(read(&file), Err(HeaderError::Version(1)));
        let (_, mut file) = sample();
        patch(&mut file, 12, &7u32.to_ne_bytes());
        assert_eq!(read(&file), Err(HeaderError::Corrupt(Corruption::BadState(7))));
    }

    #[test]
    fn sizes_that_do_not_add_up() {
        let cases: [(usize, u64); 8] =
            [(40, 25), (24, 1 << 40), (32, 8), (32, 129), (48, 3), (88, 64), (88, 1 << 40), (96, 0)];
        for (at, value) in cases {
            let (_, mut file) = sample();
            patch(&mut file, at, &value.to_ne_bytes());
            assert!(
                matches!(read(&file), Err(HeaderError::Corrupt(Corruption::Inconsistent(_)))),
                "field at {at} = {value}"
            );
        }
        let (_, mut file) = sample();
        file.push(0);
        assert!(matches!(read(&file), Err(HeaderError::Corrupt(Corruption::Inconsistent(_)))));
        let (_, mut file) = sample();
        patch(&mut file, 56, &u32::MAX.to_ne_bytes());
        assert!(matches!(read(&file), Err(HeaderError::Corrupt(Corruption::Inconsistent(_)))));
    }

    #[test]
    fn bad_text() {
        let (_, mut file) = sample();
        file[128] = 0xFF;
        assert_eq!(read(&file), Err(HeaderError::Corrupt(Corruption::BadTypeName)));
        let (_, mut file) = sample();
        file[134] = b'x';
        assert!(matches!(read(&file), Err(HeaderError::Corrupt(Corruption::BadSchema(_)))));
    }
}
