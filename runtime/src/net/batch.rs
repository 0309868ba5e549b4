//! A batch's records as the data plane carries them (bincode, as a sequence),
//! decoded by the consuming task into a buffer it reuses.

use std::fmt;

use bincode::Options;
use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};

use crate::data::{Batch, Data};
use crate::error::{Error, Result};

/// Appends a sequence's records to a batch, without a `Vec` of its own.
struct AppendTo<'a, T>(&'a mut Batch<T>);

impl<'de, T: Data> DeserializeSeed<'de> for AppendTo<'_, T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> std::result::Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, T: Data> Visitor<'de> for AppendTo<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a batch of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        self.0.reserve(seq.size_hint().unwrap_or(0));
        while let Some(record) = seq.next_element::<T>()? {
            self.0.push(record);
        }
        Ok(())
    }
}

/// Decodes a batch a peer sent ([`crate::data::Message::Encoded`]'s bytes)
/// onto the end of `batch`.
pub fn decode_batch_into<T: Data>(bytes: &[u8], batch: &mut Batch<T>) -> Result<()> {
    // `bincode::serialize`'s encoding: fixed-width integers.
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .deserialize_seed(AppendTo(batch), bytes)
        .map_err(|e| Error::Internal(format!("decoding a data frame: {e}")))
}

/// Decodes a batch a peer sent into a new `Vec`.
pub fn decode_batch<T: Data>(bytes: &[u8]) -> Result<Batch<T>> {
    let mut batch = Vec::new();
    decode_batch_into(bytes, &mut batch)?;
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_decodes_onto_a_reused_buffer_as_bincode_wrote_it() {
        let records: Vec<(u64, String)> = vec![(1, "a".into()), (2, "bc".into())];
        let bytes = bincode::serialize(&records).expect("encode");
        let mut batch: Batch<(u64, String)> = Vec::with_capacity(8);
        let address = batch.as_ptr();
        decode_batch_into(&bytes, &mut batch).expect("decode");
        assert_eq!(batch, records);
        assert_eq!(batch.as_ptr(), address, "no new allocation for the batch");
        let error = decode_batch::<(u64, String)>(&bytes[..bytes.len() - 1])
            .expect_err("truncated")
            .to_string();
        assert!(error.contains("decoding a data frame"), "{error}");
    }
}
