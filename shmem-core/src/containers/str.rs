//! `Str<N>`: a fixed-capacity UTF-8 string that is plain data.

use bytemuck::{Pod, Zeroable};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

/// A UTF-8 string of at most `N` bytes stored inline, padded with zero
/// bytes (the layout of a C `char[N]`). Plain data: usable as a locked
/// field, a queue item or a map key.
///
/// ```
/// use shmem::Str;
/// let name: Str<8> = Str::try_from("ada")?;
/// assert_eq!(name, "ada");
/// assert_eq!(name.to_string(), "ada");
/// assert!(Str::<2>::try_from("ada").is_err()); // too long: an error, never a truncation
/// # Ok::<(), shmem::StrError>(())
/// ```
///
/// Memory written by another process may hold any bytes: `as_str` then
/// returns the longest valid UTF-8 prefix before the first zero byte, never
/// undefined behaviour.
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct Str<const N: usize> {
    bytes: [u8; N],
}

// SAFETY: `repr(transparent)` over `[u8; N]`: no padding, every bit pattern
// is a valid `Str` (see `as_str`), all zeroes is the empty string.
unsafe impl<const N: usize> Zeroable for Str<N> {}
// SAFETY: as above; `Str` is `Copy` and `'static`.
unsafe impl<const N: usize> Pod for Str<N> {}

/// Why a `&str` does not fit a [`Str<N>`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StrError {
    /// The text is longer than the capacity.
    #[error("string of {len} bytes does not fit a Str<{capacity}>")]
    TooLong {
        /// The text's length in bytes.
        len: usize,
        /// The capacity `N`.
        capacity: usize,
    },
    /// The text contains a zero byte, which marks the end of a `Str`.
    #[error("string contains a NUL byte at {at}")]
    ContainsNul {
        /// Where.
        at: usize,
    },
}

impl<const N: usize> Str<N> {
    /// The empty string.
    pub const fn new() -> Self {
        Str { bytes: [0; N] }
    }

    /// The capacity in bytes.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// The string's length in bytes.
    pub fn len(&self) -> usize {
        self.as_str().len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.first().is_none_or(|b| *b == 0)
    }

    /// The text (see the type docs for bytes that are not valid UTF-8).
    pub fn as_str(&self) -> &str {
        let end = self.bytes.iter().position(|b| *b == 0).unwrap_or(N);
        let bytes = &self.bytes[..end];
        match std::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
        }
    }

    /// Replaces the text.
    ///
    /// # Errors
    /// [`StrError`] if `text` does not fit; `self` is then unchanged.
    pub fn set(&mut self, text: &str) -> Result<(), StrError> {
        *self = Self::try_from(text)?;
        Ok(())
    }

    /// Appends `text`.
    ///
    /// # Errors
    /// [`StrError`] if the result does not fit; `self` is then unchanged.
    pub fn push_str(&mut self, text: &str) -> Result<(), StrError> {
        let len = self.len();
        if let Some(at) = text.bytes().position(|b| b == 0) {
            return Err(StrError::ContainsNul { at });
        }
        if len + text.len() > N {
            return Err(StrError::TooLong { len: len + text.len(), capacity: N });
        }
        self.bytes[len..len + text.len()].copy_from_slice(text.as_bytes());
        Ok(())
    }
}

impl<const N: usize> Default for Str<N> {
    fn default() -> Self {
        Str::new()
    }
}

impl<const N: usize> TryFrom<&str> for Str<N> {
    type Error = StrError;

    fn try_from(text: &str) -> Result<Self, StrError> {
        if text.len() > N {
            return Err(StrError::TooLong { len: text.len(), capacity: N });
        }
        if let Some(at) = text.bytes().position(|b| b == 0) {
            return Err(StrError::ContainsNul { at });
        }
        let mut s = Str::new();
        s.bytes[..text.len()].copy_from_slice(text.as_bytes());
        Ok(s)
    }
}

impl<const N: usize> std::str::FromStr for Str<N> {
    type Err = StrError;
    fn from_str(text: &str) -> Result<Self, StrError> {
        Str::try_from(text)
    }
}

impl<const N: usize> std::ops::Deref for Str<N> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> AsRef<str> for Str<N> {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> fmt::Display for Str<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Debug for Str<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> PartialEq for Str<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<const N: usize> Eq for Str<N> {}

impl<const N: usize> PartialEq<str> for Str<N> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl<const N: usize> PartialEq<&str> for Str<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl<const N: usize> PartialOrd for Str<N> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<const N: usize> Ord for Str<N> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl<const N: usize> Hash for Str<N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_or_errors() {
        let s: Str<5> = "héllo".get(..5).unwrap().try_into().unwrap();
        assert_eq!(s.len(), 5);
        assert_eq!(Str::<4>::try_from("hello"), Err(StrError::TooLong { len: 5, capacity: 4 }));
        assert_eq!(Str::<8>::try_from("a\0b"), Err(StrError::ContainsNul { at: 1 }));
        let mut s = Str::<6>::try_from("ab").unwrap();
        s.push_str("cd").unwrap();
        assert!(s.push_str("xyz").is_err());
        assert_eq!(s, "abcd");
        assert_eq!(Str::<0>::new().as_str(), "");
    }

    #[test]
    fn garbage_bytes_never_break_it() {
        let s: Str<4> = bytemuck::cast([b'o', b'k', 0xFF, b'x']);
        assert_eq!(s.as_str(), "ok");
        let s: Str<3> = bytemuck::cast([0xE2u8, 0x82, 0xAC]); // "€", exactly full, no NUL
        assert_eq!(s.as_str(), "€");
        let s: Str<3> = bytemuck::cast([b'a', 0, b'b']);
        assert_eq!(s, "a", "ends at the first zero byte");
    }

    #[test]
    fn ordering_and_hash_follow_the_text() {
        let a = Str::<8>::try_from("apple").unwrap();
        let b = Str::<8>::try_from("banana").unwrap();
        assert!(a < b);
        let mut set = std::collections::HashSet::new();
        set.insert(a);
        assert!(set.contains(&Str::<8>::try_from("apple").unwrap()));
    }
}
