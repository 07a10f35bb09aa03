//! `Vec<T, N>`: a bounded vector that is plain data.

use bytemuck::{Pod, Zeroable};
use std::fmt;

/// Up to `N` values of plain data `T` stored inline, with their count.
/// Plain data itself: keep it behind `#[shared(lock)]` (or use it as a
/// queue item or map value). Derefs to the slice of its elements.
///
/// ```
/// use shmem::containers::{Full, Vec};
/// let mut v: Vec<u32, 3> = Vec::new();
/// v.push(1).unwrap();
/// v.extend_from_slice(&[2, 3]).unwrap();
/// assert_eq!(v.push(4), Err(Full(4))); // full: an error, never a silent drop
/// assert_eq!(v.iter().sum::<u32>(), 6);
/// assert_eq!(v.pop(), Some(3));
/// assert_eq!(&v[..], &[1, 2]);
/// ```
///
/// Layout: the `N` slots, then the length as 8 bytes (no padding, since
/// `T`'s alignment may be at most 8). A length larger than `N` written by
/// another process reads as `N`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Vec<T, const N: usize> {
    items: [T; N],
    len: [u8; 8],
}

// SAFETY: `T: Pod`, so `[T; N]` is; `len` is bytes; the struct has no
// padding because its alignment is `T`'s (at most 8, checked by
// `ALIGN_OK` on every constructor) and both parts are multiples of it.
unsafe impl<T: Pod, const N: usize> Zeroable for Vec<T, N> {}
// SAFETY: as above.
unsafe impl<T: Pod, const N: usize> Pod for Vec<T, N> {}

/// The container is full; the rejected value is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("container is full")]
pub struct Full<T>(pub T);

impl<T: Pod, const N: usize> Vec<T, N> {
    const ALIGN_OK: () = assert!(core::mem::align_of::<T>() <= 8, "shmem::Vec items may be aligned to at most 8 bytes");

    /// An empty vector.
    pub fn new() -> Self {
        #[allow(clippy::let_unit_value, reason = "forces the compile-time alignment check")]
        let () = Self::ALIGN_OK;
        Zeroable::zeroed()
    }

    /// The capacity `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        (u64::from_le_bytes(self.len) as usize).min(N)
    }

    /// Whether it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn set_len(&mut self, len: usize) {
        self.len = (len as u64).to_le_bytes();
    }

    /// Appends `value`.
    ///
    /// # Errors
    /// [`Full`] with the value if the vector holds `N` elements.
    pub fn push(&mut self, value: T) -> Result<(), Full<T>> {
        let len = self.len();
        if len == N {
            return Err(Full(value));
        }
        self.items[len] = value;
        self.set_len(len + 1);
        Ok(())
    }

    /// Removes and returns the last element.
    pub fn pop(&mut self) -> Option<T> {
        let len = self.len().checked_sub(1)?;
        self.set_len(len);
        Some(self.items[len])
    }

    /// Appends all of `values`, or none of them.
    ///
    /// # Errors
    /// [`Full`] carrying the number of values that did not fit.
    pub fn extend_from_slice(&mut self, values: &[T]) -> Result<(), Full<usize>> {
        let len = self.len();
        if len + values.len() > N {
            return Err(Full(len + values.len() - N));
        }
        self.items[len..len + values.len()].copy_from_slice(values);
        self.set_len(len + values.len());
        Ok(())
    }

    /// Inserts `value` at `index`, shifting later elements.
    ///
    /// # Errors
    /// [`Full`] with the value if the vector is full.
    ///
    /// # Panics
    /// If `index > len`, like `std::vec::Vec::insert`.
    pub fn insert(&mut self, index: usize, value: T) -> Result<(), Full<T>> {
        let len = self.len();
        assert!(index <= len, "insertion index {index} is out of bounds (len {len})");
        if len == N {
            return Err(Full(value));
        }
        self.items.copy_within(index..len, index + 1);
        self.items[index] = value;
        self.set_len(len + 1);
        Ok(())
    }

    /// Removes and returns the element at `index`, shifting later ones.
    /// `None` if `index >= len`.
    pub fn remove(&mut self, index: usize) -> Option<T> {
        let len = self.len();
        if index >= len {
            return None;
        }
        let value = self.items[index];
        self.items.copy_within(index + 1..len, index);
        self.set_len(len - 1);
        Some(value)
    }

    /// Shortens to `len` elements (no effect if already shorter).
    pub fn truncate(&mut self, len: usize) {
        if len < self.len() {
            self.set_len(len);
        }
    }

    /// Removes every element.
    pub fn clear(&mut self) {
        self.set_len(0);
    }

    /// The elements.
    pub fn as_slice(&self) -> &[T] {
        &self.items[..self.len()]
    }

    /// The elements, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        let len = self.len();
        &mut self.items[..len]
    }
}

impl<T: Pod, const N: usize> Default for Vec<T, N> {
    fn default() -> Self {
        Vec::new()
    }
}

impl<T: Pod, const N: usize> std::ops::Deref for Vec<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Pod, const N: usize> std::ops::DerefMut for Vec<T, N> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

impl<T: Pod, const N: usize> TryFrom<&[T]> for Vec<T, N> {
    type Error = Full<usize>;
    fn try_from(values: &[T]) -> Result<Self, Full<usize>> {
        let mut v = Vec::new();
        v.extend_from_slice(values)?;
        Ok(v)
    }
}

impl<T: Pod + fmt::Debug, const N: usize> fmt::Debug for Vec<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl<T: Pod + PartialEq, const N: usize> PartialEq for Vec<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Pod + Eq, const N: usize> Eq for Vec<T, N> {}

impl<'a, T: Pod, const N: usize> IntoIterator for &'a Vec<T, N> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_operations() {
        let mut v: Vec<u16, 4> = Vec::try_from(&[1, 2][..]).unwrap();
        v.insert(0, 0).unwrap();
        v.insert(3, 3).unwrap();
        assert_eq!(v.insert(1, 9), Err(Full(9)));
        assert_eq!(&v[..], &[0, 1, 2, 3]);
        assert_eq!(v.remove(1), Some(1));
        assert_eq!(v.remove(7), None);
        v.truncate(1);
        assert_eq!(v.as_slice(), &[0]);
        assert_eq!(v.extend_from_slice(&[1, 2, 3, 4]), Err(Full(1)));
        assert_eq!(v.len(), 1, "all or nothing");
        v.clear();
        assert!(v.is_empty());
    }

    #[test]
    fn no_padding_and_garbage_length_is_clamped() {
        assert_eq!(size_of::<Vec<u8, 3>>(), 11);
        assert_eq!(size_of::<Vec<u64, 3>>(), 32);
        let mut v: Vec<u8, 2> = Vec::new();
        bytemuck::bytes_of_mut(&mut v)[2..].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(v.len(), 2);
    }
}
