//! Model weights stored by content hash: `<ledger>.weights/<sha256>.safetensors`. A block names
//! a model by that hash; a node loads a file only after checking that its bytes hash to it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use crate::error::{corrupt, invalid, io, TrustError};
use crate::hash::Hash32;

/// The name of the single tensor [`encode_f32`] writes.
pub const WEIGHTS_TENSOR: &str = "weights";

/// Flat `f32` weights as a safetensors file: one 1-D tensor named `weights`, no metadata
/// (so the bytes, and their hash, depend on the values only).
pub fn encode_f32(weights: &[f32]) -> Result<Vec<u8>, TrustError> {
    let bytes: Vec<u8> = weights.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = TensorView::new(Dtype::F32, vec![weights.len()], &bytes)
        .map_err(|e| invalid("weights", e.to_string()))?;
    safetensors::serialize([(WEIGHTS_TENSOR, view)], None::<HashMap<String, String>>)
        .map_err(|e| invalid("weights", e.to_string()))
}

/// The content hash of flat `f32` weights: SHA-256 of [`encode_f32`]'s bytes.
pub fn weights_hash(weights: &[f32]) -> Result<Hash32, TrustError> {
    Ok(Hash32::of(&encode_f32(weights)?))
}

/// The `f32`s of a safetensors file holding one F32 tensor (of any shape), row-major.
pub fn decode_f32(bytes: &[u8]) -> Result<Vec<f32>, TrustError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| invalid("safetensors", e.to_string()))?;
    let names = st.names();
    if names.len() != 1 {
        return Err(invalid(
            "safetensors",
            format!("{} tensors, expected one", names.len()),
        ));
    }
    let t = st
        .tensor(names[0])
        .map_err(|e| invalid("safetensors", e.to_string()))?;
    if t.dtype() != Dtype::F32 {
        return Err(invalid(
            "safetensors",
            format!("dtype {:?}, expected F32", t.dtype()),
        ));
    }
    Ok(t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// The folder of a ledger's weights.
pub(crate) fn weights_dir(ledger: &Path) -> PathBuf {
    let mut s = ledger.as_os_str().to_owned();
    s.push(".weights");
    PathBuf::from(s)
}

pub(crate) fn weights_path(ledger: &Path, hash: &Hash32) -> PathBuf {
    weights_dir(ledger).join(format!("{}.safetensors", hash.to_hex()))
}

/// Stores safetensors `bytes` (checked to parse) under their hash; returns the hash.
pub(crate) fn put(ledger: &Path, bytes: &[u8]) -> Result<Hash32, TrustError> {
    SafeTensors::deserialize(bytes).map_err(|e| invalid("safetensors", e.to_string()))?;
    let hash = Hash32::of(bytes);
    let path = weights_path(ledger, &hash);
    if get(ledger, &hash).is_ok() {
        return Ok(hash);
    }
    let dir = weights_dir(ledger);
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    super::file::atomic_write(&path, bytes).map_err(|e| io(&path, e))?;
    Ok(hash)
}

/// The bytes stored under `hash`, checked against it.
pub(crate) fn get(ledger: &Path, hash: &Hash32) -> Result<Vec<u8>, TrustError> {
    let path = weights_path(ledger, hash);
    let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
    if Hash32::of(&bytes) != *hash {
        return Err(corrupt(&path, "its bytes do not hash to its name"));
    }
    Ok(bytes)
}
