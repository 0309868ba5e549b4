//! A join key in Arrow's row format as the join's index keeps it: short keys
//! (integers, short strings) inline, without an allocation of their own;
//! longer ones on the heap. It hashes and compares as its bytes, so the index
//! is probed with a `&[u8]`.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

/// Bytes a key keeps inline.
const INLINE: usize = 22;

/// A key's bytes.
#[derive(Clone)]
pub enum JoinKey {
    /// Up to [`INLINE`] bytes: the length, then the bytes.
    Inline(u8, [u8; INLINE]),
    /// A longer key.
    Heap(Box<[u8]>),
}

impl JoinKey {
    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            JoinKey::Inline(len, bytes) => &bytes[..usize::from(*len)],
            JoinKey::Heap(bytes) => bytes,
        }
    }
}

impl From<&[u8]> for JoinKey {
    fn from(bytes: &[u8]) -> Self {
        if bytes.len() <= INLINE {
            let mut inline = [0u8; INLINE];
            inline[..bytes.len()].copy_from_slice(bytes);
            JoinKey::Inline(bytes.len() as u8, inline)
        } else {
            JoinKey::Heap(bytes.into())
        }
    }
}

impl Borrow<[u8]> for JoinKey {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Hash for JoinKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialEq for JoinKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for JoinKey {}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use rustc_hash::FxBuildHasher;

    use super::*;

    #[test]
    fn a_key_hashes_and_compares_as_its_bytes_inline_or_not() {
        for bytes in [
            &b""[..],
            b"\x01\x80\0\0\0\0\0\0\x07",
            &[7u8; 22],
            &[7u8; 23],
            &[9u8; 300],
        ] {
            let key = JoinKey::from(bytes);
            assert_eq!(key.as_bytes(), bytes);
            assert_eq!(matches!(key, JoinKey::Inline(..)), bytes.len() <= INLINE);
            let hasher = FxBuildHasher;
            assert_eq!(hasher.hash_one(&key), hasher.hash_one(bytes));
        }
        assert!(JoinKey::from(&b"ab"[..]) != JoinKey::from(&b"abc"[..]));
        assert!(JoinKey::from(&[1u8; 40][..]) == JoinKey::from(&[1u8; 40][..]));
    }
}
