//! The contract between meshrl's environment, its export and the node runtime: what an
//! observation holds, how each feature is normalized, the names and versions of the files we
//! write and their checksum. `no_std`, no dependencies, so a mesh node's runtime can use it.
//!
//! Two feature sets ([`FeatureSet`]):
//!
//! - `spec`: the SPEC's six features per neighbour slot, then the node's queue occupancy.
//! - `routing`: the six, then what a real mesh's routing protocol advertises about the rest of
//!   the path (the neighbour's ETX and latency distance to the destination, its queue) and
//!   whether the packet already visited the neighbour; then the node's queue, the TTL left and
//!   the hops taken.
//!
//! An observation is `num_slots` slots of [`FeatureSet::per_slot`] features followed by
//! [`FeatureSet::context`] context features. Empty slots are all zero and masked out.
#![no_std]
#![forbid(unsafe_code)]

mod math;
mod obs;

pub use math::{exp, tanh};
pub use obs::*;

/// Format name of exported policies (safetensors metadata `format`).
pub const EXPORT_FORMAT: &str = "meshrl-policy";
/// Version of the export format this crate describes. Version 2 added `feature_set` and the
/// `slots` architecture; version 1 files (spec features, MLP) still load.
pub const EXPORT_VERSION: u32 = 2;

/// FNV-1a's initial state.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bit, continuing from `h` (start with [`FNV_OFFSET`]): the checksum of every file
/// meshrl writes (weights, checkpoints, exports).
pub fn fnv1a64(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The checksum of an exported policy: FNV-1a 64 over the actor tensors' bytes (layer by
/// layer, weight then bias), continued over every metadata entry except `checksum`, in
/// ascending key order, each as `key`, a NUL byte, `value`, a LF byte. Covers the metadata,
/// so an edited activation or normalization constant is caught like a flipped weight.
pub fn metadata_checksum<'a, I>(tensor_bytes: &[u8], entries: I) -> u64
where
    I: Iterator<Item = (&'a str, &'a str)> + Clone,
{
    let mut h = fnv1a64(FNV_OFFSET, tensor_bytes);
    // Entries in key order without allocating: repeatedly the least key above the last one.
    let mut last: Option<&str> = None;
    loop {
        let next = entries
            .clone()
            .filter(|(k, _)| *k != "checksum" && last.is_none_or(|l| *k > l))
            .min_by(|a, b| a.0.cmp(b.0));
        let Some((k, v)) = next else {
            return h;
        };
        h = fnv1a64(h, k.as_bytes());
        h = fnv1a64(h, &[0]);
        h = fnv1a64(h, v.as_bytes());
        h = fnv1a64(h, b"\n");
        last = Some(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_checksum_is_order_free_and_covers_every_entry_but_itself() {
        let a = [("b", "2"), ("a", "1"), ("checksum", "x")];
        let b = [("a", "1"), ("checksum", "y"), ("b", "2")];
        let h = metadata_checksum(b"w", a.iter().copied());
        assert_eq!(h, metadata_checksum(b"w", b.iter().copied()));
        assert_ne!(h, metadata_checksum(b"w", [("a", "1"), ("b", "3")].iter().copied()));
        assert_ne!(h, metadata_checksum(b"v", a.iter().copied()));
        assert_ne!(h, metadata_checksum(b"w", [("a", "1")].iter().copied()));
    }

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        // From the FNV reference (draft-eastlake-fnv): "" and "a".
        assert_eq!(fnv1a64(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
        // Streaming equals one shot.
        assert_eq!(fnv1a64(fnv1a64(FNV_OFFSET, b"foo"), b"bar"), fnv1a64(FNV_OFFSET, b"foobar"));
    }
}
