//! The policy's parameters as one flat `f32` vector (what federated learning exchanges), and a
//! small checksummed weights file written atomically.
//!
//! File layout (`file.rs`): the line `meshrl-ppo-weights 2`, a JSON header line
//! (`num_parameters` and the [`PolicySpec`]), a checksum line over everything, then the
//! parameters as little-endian `f32`, in the order [`flatten`] gives them.

use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::policy::{ActorCritic, PolicySpec};
use crate::PpoError;

const MAGIC: &str = "meshrl-ppo-weights 2";

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

struct Sizes(Vec<usize>);

impl ModuleVisitor for Sizes {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.val().shape().num_elements());
    }
}

/// Elements of each parameter tensor, in [`flatten`]'s order (how Adam's state splits).
pub(crate) fn param_sizes(model: &ActorCritic) -> Vec<usize> {
    let mut sizes = Sizes(Vec::new());
    model.visit(&mut sizes);
    sizes.0
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
        return Err(PpoError::input(
            "weights",
            format!("expected {expected} values, got {}", values.len()),
        ));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(PpoError::input(
            "weights",
            format!("value {i} is {} (weights must be finite)", values[i]),
        ));
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
    pub spec: PolicySpec,
}

/// Writes `values` for a network of `spec` to `path` atomically (see `file.rs`).
pub fn write(path: &Path, spec: &PolicySpec, values: &[f32]) -> Result<(), PpoError> {
    let header = WeightsHeader {
        num_parameters: values.len(),
        spec: spec.clone(),
    };
    crate::file::write_framed(path, MAGIC, &header, &crate::file::f32_bytes(values))
}

/// Reads and checks a weights file; every defect is a clear error.
pub fn read(path: &Path) -> Result<(WeightsHeader, Vec<f32>), PpoError> {
    let (header, payload): (WeightsHeader, _) =
        crate::file::read_framed(path, MAGIC, "PPO weights file")?;
    if payload.len() != header.num_parameters * 4 {
        return Err(PpoError::corrupt(
            path,
            format!(
                "holds {} bytes of parameters, the header says {}",
                payload.len(),
                header.num_parameters * 4
            ),
        ));
    }
    header
        .spec
        .validate()
        .map_err(|e| PpoError::corrupt(path, format!("header: {e}")))?;
    Ok((header, crate::file::f32s(&payload)))
}
