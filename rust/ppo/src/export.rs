//! Export of a trained policy for mesh nodes: the actor's weights in safetensors (f32) and, in
//! its `__metadata__`, everything needed to act, read by the `meshrl-runtime` crate and
//! `meshrl.runtime` (the format is documented in `rust/runtime/src/lib.rs`).

use std::collections::HashMap;
use std::path::Path;

use meshrl_env::obs;
use meshrl_format::{metadata_checksum, FeatureSet, EXPORT_FORMAT, EXPORT_VERSION};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::json;

use crate::{Activation, Architecture, Policy, PpoError};

/// What to put in an exported file besides the actor.
#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    /// Also export the critic (`critic.{i}.*`); nodes do not need it.
    pub include_critic: bool,
    /// The training config as JSON, copied into the metadata and the model card.
    pub training_config: Option<serde_json::Value>,
}

/// One layer in the file's layout: weight `[d_out, d_in]` (PyTorch's), bias `[d_out]`.
struct LayerData {
    name: String,
    weight: Vec<u8>,
    d_in: usize,
    d_out: usize,
    bias: Vec<u8>,
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Splits one MLP's flat parameters (burn's order and layout: weight `[d_in, d_out]` then bias,
/// layer by layer) into the file's layers, returning the rest.
fn split<'a>(
    prefix: &str,
    widths: &[usize],
    mut flat: &'a [f32],
    layers: &mut Vec<LayerData>,
) -> &'a [f32] {
    for (i, w) in widths.windows(2).enumerate() {
        let (d_in, d_out) = (w[0], w[1]);
        let (weight, rest) = flat.split_at(d_in * d_out);
        let (bias, rest) = rest.split_at(d_out);
        flat = rest;
        let mut transposed = vec![0.0f32; d_in * d_out];
        for j in 0..d_in {
            for o in 0..d_out {
                transposed[o * d_in + j] = weight[j * d_out + o];
            }
        }
        layers.push(LayerData {
            name: format!("{prefix}.{i}"),
            weight: le_bytes(&transposed),
            d_in,
            d_out,
            bias: le_bytes(bias),
        });
    }
    flat
}

/// Writes `policy` to `path` (atomically) as a `meshrl-policy` safetensors file and returns
/// the actor checksum (FNV-1a 64 over the actor tensors' bytes, layer by layer, weight then
/// bias).
pub fn export(policy: &Policy, path: &Path, opts: &ExportOptions) -> Result<u64, PpoError> {
    let spec = policy.spec();
    let flat = crate::weights::flatten(policy.model());
    let slots = spec.architecture == Architecture::Slots;
    let d_in = if slots { spec.per_slot + spec.context } else { spec.obs_dim };
    let mut actor_widths = vec![d_in];
    actor_widths.extend_from_slice(&spec.hidden);
    let mut critic_widths = actor_widths.clone();
    actor_widths.push(if slots { 1 } else { spec.num_actions });
    if !slots {
        critic_widths.push(1);
    }
    let mut actor = Vec::new();
    let rest = split("actor", &actor_widths, &flat, &mut actor);
    let mut critic = Vec::new();
    let mut rest = split("critic", &critic_widths, rest, &mut critic);
    if slots {
        let h = *spec.hidden.last().expect("validated: at least one layer");
        rest = split("critic_head", &[2 * h, 1], rest, &mut critic);
    }
    if !rest.is_empty() {
        return Err(PpoError::input(
            "policy",
            format!("{} parameters left over after the actor and critic", rest.len()),
        ));
    }
    let mut actor_bytes = Vec::new();
    for l in &actor {
        actor_bytes.extend_from_slice(&l.weight);
        actor_bytes.extend_from_slice(&l.bias);
    }
    let features = spec
        .feature_set
        .as_deref()
        .and_then(FeatureSet::from_name)
        .unwrap_or(FeatureSet::Spec);

    let activation = match spec.activation {
        Activation::Tanh => "tanh",
        Activation::Relu => "relu",
    };
    let hidden = spec
        .hidden
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let training = opts.training_config.clone().unwrap_or(serde_json::Value::Null);
    let card = json!({
        "name": "meshrl routing policy",
        "description": "Chooses the next hop for a packet from a node's neighbour table. \
            Trained with PPO in the meshrl digital twin.",
        "meshrl_version": env!("CARGO_PKG_VERSION"),
        "architecture": {
            "type": if slots { "slots" } else { "mlp" },
            "type_note": if slots {
                "per-neighbour scoring: logit[s] = actor([slot s features, context]); one network shared by all slots"
            } else {
                "one MLP over the whole observation"
            },
            "obs_dim": spec.obs_dim,
            "hidden": spec.hidden,
            "num_actions": spec.num_actions,
            "activation": activation,
            "activation_note": "after every layer but the last; tanh(x) = 1 - 2/(exp(2x)+1)",
            "weight_layout": "actor.{i}.weight is [d_out, d_in] (y = W x + b)",
        },
        "observation": {
            "feature_set": features.name(),
            "layout": format!(
                "{} neighbour slots x {} features, then {} context features",
                spec.num_actions,
                features.per_slot(),
                features.context()
            ),
            "slot_features": features.slot_names(),
            "context_features": features.context_names(),
            "normalization": {
                "rssi": "(rssi_dbm - rssi_center_dbm) / rssi_scale_db",
                "latency": "latency_ms / (latency_ms + latency_half_ms)",
                "packet_loss": "probability, as is",
                "hop_count_to_destination":
                    "min(hops, hops_scale) / hops_scale; 1 if unreachable; 0: the neighbour is the destination",
                "bandwidth": "bandwidth_mbps / bandwidth_scale_mbps",
                "trust": "score in [0, 1], as is",
                "etx_to_destination": "etx / (etx + etx_half); 1 if no route advertised",
                "etx_excess": "min(c - c_min, etx_excess_scale) / etx_excess_scale, c = link ETX now + advertised ETX of the neighbour, c_min over valid slots; 1 if no route",
                "latency_to_destination": "ms / (ms + path_latency_half_ms); 1 if no route advertised",
                "queue (slot)": "the neighbour's advertised queue occupancy, as is",
                "visited": "1 if the packet already passed through the neighbour",
                "queue (context)": "occupancy of the local queue in [0, 1]",
                "ttl_left": "1 - hops_taken / ttl",
                "hops_taken": "min(hops_taken, hops_scale) / hops_scale",
            },
            "constants": {
                "rssi_center_dbm": obs::RSSI_CENTER_DBM,
                "rssi_scale_db": obs::RSSI_SCALE_DB,
                "latency_half_ms": obs::LATENCY_HALF_MS,
                "hops_scale": obs::HOPS_SCALE,
                "bandwidth_scale_mbps": obs::BANDWIDTH_SCALE_MBPS,
                "etx_half": meshrl_format::ETX_HALF,
                "etx_excess_scale": meshrl_format::ETX_EXCESS_SCALE,
                "path_latency_half_ms": meshrl_format::PATH_LATENCY_HALF_MS,
            },
            "empty_slots": "all zero and masked out",
            "slot_order": "the node's neighbours (its num_actions strongest by RSSI when it has more) in ascending node id",
        },
        "action": "index of the neighbour slot to forward to; argmax of the masked logits (deterministic) or a sample from softmax",
        "training_config": training,
        "checksum_note": "fnv1a64 over the actor tensors' bytes (layer by layer, weight then bias), then every metadata entry but `checksum` sorted by key as key NUL value LF",
    });

    let mut meta: HashMap<String, String> = HashMap::new();
    let mut put = |k: &str, v: String| {
        meta.insert(k.to_string(), v);
    };
    put("format", EXPORT_FORMAT.into());
    put("format_version", EXPORT_VERSION.to_string());
    put("meshrl_version", env!("CARGO_PKG_VERSION").into());
    put("obs_dim", spec.obs_dim.to_string());
    put("num_actions", spec.num_actions.to_string());
    put("architecture", if slots { "slots" } else { "mlp" }.into());
    put("feature_set", features.name().into());
    put("per_slot", features.per_slot().to_string());
    put("context", features.context().to_string());
    put("hidden", hidden);
    put("activation", activation.into());
    put("obs.rssi_center_dbm", obs::RSSI_CENTER_DBM.to_string());
    put("obs.rssi_scale_db", obs::RSSI_SCALE_DB.to_string());
    put("obs.latency_half_ms", obs::LATENCY_HALF_MS.to_string());
    put("obs.hops_scale", obs::HOPS_SCALE.to_string());
    put("obs.bandwidth_scale_mbps", obs::BANDWIDTH_SCALE_MBPS.to_string());
    put("obs.etx_half", meshrl_format::ETX_HALF.to_string());
    put("obs.etx_excess_scale", meshrl_format::ETX_EXCESS_SCALE.to_string());
    put("obs.path_latency_half_ms", meshrl_format::PATH_LATENCY_HALF_MS.to_string());
    put("obs.slot_features", features.slot_names().join(","));
    put("obs.context_features", features.context_names().join(","));
    put("includes_critic", opts.include_critic.to_string());
    put("training_config", training.to_string());
    put("model_card", card.to_string());
    let checksum = metadata_checksum(&actor_bytes, meta.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    meta.insert("checksum".into(), format!("fnv1a64:{checksum:016x}"));

    let mut layers = actor;
    if opts.include_critic {
        layers.extend(critic);
    }
    let mut views = Vec::new();
    let bad = |e: safetensors::SafeTensorError| PpoError::input("export", e.to_string());
    for l in &layers {
        views.push((
            format!("{}.weight", l.name),
            TensorView::new(Dtype::F32, vec![l.d_out, l.d_in], &l.weight).map_err(bad)?,
        ));
        views.push((
            format!("{}.bias", l.name),
            TensorView::new(Dtype::F32, vec![l.d_out], &l.bias).map_err(bad)?,
        ));
    }
    let bytes = safetensors::serialize(views, Some(meta)).map_err(bad)?;
    crate::file::atomic_write(path, &bytes).map_err(|e| PpoError::io(path, e))?;
    Ok(checksum)
}

impl Policy {
    /// Exports this policy for mesh nodes; see [`export`].
    pub fn export(&self, path: impl AsRef<Path>, opts: &ExportOptions) -> Result<u64, PpoError> {
        export(self, path.as_ref(), opts)
    }
}
