//! Segment name validation.

use crate::error::{Error, Result};

/// The longest accepted name, in bytes (below Linux's `NAME_MAX` of 255, to
/// leave room for tools that add a prefix or suffix).
pub const MAX_NAME_LEN: usize = 200;

/// Checks that `name` can name a segment and returns it without the optional
/// leading `/` that `shm_open(3)` names carry (`"/stats"` and `"stats"` are the
/// same segment).
///
/// A name is 1 to [`MAX_NAME_LEN`] bytes of ASCII letters, digits, `-`, `_`
/// and `.`, and does not start with `.` (hidden names are reserved).
///
/// # Errors
/// [`Error::InvalidName`] saying what is wrong.
///
/// ```
/// use shmem::{validate_name, Error};
/// assert_eq!(validate_name("/stats").unwrap(), "stats");
/// assert!(matches!(validate_name("a/b"), Err(Error::InvalidName { .. })));
/// ```
pub fn validate_name(name: &str) -> Result<&str> {
    let invalid = |reason| Error::InvalidName { name: name.to_owned(), reason };
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() {
        return Err(invalid("the name is empty"));
    }
    if bare.len() > MAX_NAME_LEN {
        return Err(invalid("the name is longer than 200 bytes"));
    }
    if bare.starts_with('.') {
        return Err(invalid("names starting with '.' are reserved"));
    }
    if !bare.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err(invalid("use only ASCII letters, digits, '-', '_' and '.' (no '/', spaces or NUL)"));
    }
    Ok(bare)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        assert_eq!(validate_name("counter-1.v2_x").unwrap(), "counter-1.v2_x");
        assert_eq!(validate_name("/x").unwrap(), "x");
        for bad in ["", "/", ".hidden", "a/b", "a b", "a\0b", "é", "//x", &"x".repeat(201)] {
            assert!(matches!(validate_name(bad), Err(Error::InvalidName { .. })), "{bad:?}");
        }
        assert!(validate_name(&"x".repeat(200)).is_ok());
    }
}
