//! The policy's parameters as one flat `f32` vector (what federated learning exchanges), and a
//! small checksummed weights file written atomically.
//!
//! File layout: the line `meshrl-ppo-weights 1`, a JSON header line (`num_parameters`,
//! `obs_dim`, `max_neighbors`, `hidden`, `activation`, `fnv1a64` of the payload), then the
//! parameters as little-endian `f32`, in the order [`flatten`] gives them.

use std::io::Write;
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::config::Activation;
use crate::policy::ActorCritic;
use crate::PpoError;

const MAGIC: &str = "meshrl-ppo-weights 1";

struct Collect(Vec<f32>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let values = param
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32 parameters");
        self.0.extend(values);
    }
}

struct Count(usize);

impl ModuleVisitor for Count {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0 += param.val().shape().num_elements();
    }
}

struct Assign<'a> {
    values: &'a [f32],
    offset: usize,
}

impl ModuleMapper for Assign<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| {
            let shape = t.shape();
            let n = shape.num_elements();
            let values = self.values[self.offset..self.offset + n].to_vec();
            self.offset += n;
            let device = t.device();
            let grad = t.is_require_grad();
            Tensor::<D>::from_data(TensorData::new(values, shape), &device).set_require_grad(grad)
        })
    }
}

struct Ids(Vec<u64>);

impl ModuleVisitor for Ids {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.id.val());
    }
}

/// Parameter ids in [`flatten`]'s order (the optimizer's state is keyed by them).
pub(crate) fn param_ids(model: &ActorCritic) -> Vec<u64> {
    let mut ids = Ids(Vec::new());
    model.visit(&mut ids);
    ids.0
}

struct SetIds<'a> {
    ids: &'a [u64],
    next: usize,
}

impl ModuleMapper for SetIds<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let id = burn::module::ParamId::from(self.ids[self.next]);
        self.next += 1;
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(id, value, mapper)
    }
}

/// Gives the parameters these ids (in [`flatten`]'s order), so a saved optimizer state keyed by
/// them applies to this model.
pub(crate) fn set_param_ids(model: ActorCritic, ids: &[u64]) -> Result<ActorCritic, PpoError> {
    if ids.len() != param_ids(&model).len() {
        return Err(PpoError::Weights(format!(
            "{} parameter ids for {} parameters",
            ids.len(),
            param_ids(&model).len()
        )));
    }
    Ok(model.map(&mut SetIds { ids, next: 0 }))
}

/// All parameters (actor, then critic; each layer's weight `[d_in, d_out]` then bias).
pub fn flatten(model: &ActorCritic) -> Vec<f32> {
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

/// Number of parameters.
pub fn count(model: &ActorCritic) -> usize {
    let mut c = Count(0);
    model.visit(&mut c);
    c.0
}

/// Checks that `values` are `expected` finite numbers.
pub fn check(values: &[f32], expected: usize) -> Result<(), PpoError> {
    if values.len() != expected {
        return Err(PpoError::Weights(format!(
            "expected {expected} values, got {}",
            values.len()
        )));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(PpoError::Weights(format!(
            "value {i} is {} (weights must be finite)",
            values[i]
        )));
    }
    Ok(())
}

/// Replaces every parameter from a flat vector of exactly [`count`] finite values.
pub fn assign(model: ActorCritic, values: &[f32]) -> Result<ActorCritic, PpoError> {
    check(values, count(&model))?;
    Ok(model.map(&mut Assign { values, offset: 0 }))
}

/// What a weights file says about the network it belongs to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightsHeader {
    pub num_parameters: usize,
    pub obs_dim: usize,
    pub max_neighbors: usize,
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub fnv1a64: String,
}

pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Writes `values` with `header` to `path` atomically (a temporary file in the same folder,
/// synced, then renamed over `path`): a crash never leaves a half-written file.
pub fn write(path: &Path, mut header: WeightsHeader, values: &[f32]) -> Result<(), PpoError> {
    let io = |e: std::io::Error| PpoError::Weights(format!("{}: {e}", path.display()));
    let payload: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    header.num_parameters = values.len();
    header.fnv1a64 = format!("{:016x}", fnv1a64(&payload));
    let json = serde_json_line(&header)?;
    let mut bytes = format!("{MAGIC}\n{json}\n").into_bytes();
    bytes.extend_from_slice(&payload);
    atomic_write(path, &bytes).map_err(io)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, synced, then
/// renamed over `path`. A crash never leaves a half-written file; on error nothing is left.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Unique per process and call, so concurrent writers never share a temporary file.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        std::fs::remove_file(&tmp).ok();
    }
    result
}

fn serde_json_line(h: &WeightsHeader) -> Result<String, PpoError> {
    serde_json::to_string(h).map_err(|e| PpoError::Weights(e.to_string()))
}

/// Reads and checks a weights file; every defect is a clear error.
pub fn read(path: &Path) -> Result<(WeightsHeader, Vec<f32>), PpoError> {
    let bad = |why: String| PpoError::Weights(format!("{}: {why}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut lines = bytes.splitn(3, |&b| b == b'\n');
    let magic = lines.next().unwrap_or_default();
    if magic != MAGIC.as_bytes() {
        return Err(bad("not a meshrl PPO weights file (bad magic line)".into()));
    }
    let json = lines
        .next()
        .ok_or_else(|| bad("truncated: no header".into()))?;
    let payload = lines
        .next()
        .ok_or_else(|| bad("truncated: no parameters".into()))?;
    let header: WeightsHeader = parse_header(json).map_err(|e| bad(format!("bad header: {e}")))?;
    if payload.len() != header.num_parameters * 4 {
        return Err(bad(format!(
            "holds {} bytes of parameters, the header says {}",
            payload.len(),
            header.num_parameters * 4
        )));
    }
    if format!("{:016x}", fnv1a64(payload)) != header.fnv1a64 {
        return Err(bad("checksum mismatch: the file is corrupt".into()));
    }
    let values = payload
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((header, values))
}

fn parse_header(json: &[u8]) -> Result<WeightsHeader, String> {
    let text = std::str::from_utf8(json).map_err(|e| e.to_string())?;
    serde_json::from_str(text).map_err(|e| e.to_string())
}
