//! Which partition a record goes to: by its key, as Kafka's Java client does
//! (murmur2 of the key bytes, so that other producers of the topic agree),
//! round-robin, or one fixed partition.

/// How the sink spreads records over the topic's partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioning {
    /// By the record's key: Kafka's default partitioner (murmur2 of the key
    /// bytes). Needs a key format.
    ByKey,
    /// Each subtask cycles through the partitions, a batch of records at a time.
    RoundRobin,
    /// Every record to this partition.
    Fixed(i32),
}

/// The partition of `key` among `partitions`, as Kafka's Java client picks it.
pub fn key_partition(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`).
fn murmur2(data: &[u8]) -> i32 {
    const M: i32 = 0x5bd1_e995;
    const SEED: u32 = 0x9747_b28c;
    let mut h = (SEED as i32) ^ (data.len() as i32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = i32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= ((k as u32) >> 24) as i32;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= i32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= i32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= i32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= ((h as u32) >> 13) as i32;
    h = h.wrapping_mul(M);
    h ^= ((h as u32) >> 15) as i32;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // The cases of the Java client's own test of Utils.murmur2.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, hash) in cases {
            assert_eq!(murmur2(key), hash, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn key_partitions_lie_in_range() {
        for key in 0..1000u32 {
            let p = key_partition(&key.to_le_bytes(), 7);
            assert!((0..7).contains(&p));
        }
    }
}
