//! Parsing and validating an exported policy file. The checksum is verified before anything
//! the metadata says is believed: an edited entry is reported as corruption, and only a file
//! whose checksum holds gets the detailed consistency errors.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use meshrl_format::{
    fnv1a64, metadata_checksum, FeatureSet, EXPORT_FORMAT, EXPORT_VERSION, FNV_OFFSET,
};
use safetensors::tensor::{Dtype, Metadata, SafeTensors};

use crate::nn::Layer;
use crate::{Activation, Architecture, Error, ObsSpec, Policy};

/// Largest layer width and slot count accepted (a guard against absurd files).
pub const MAX_WIDTH: usize = 1 << 16;
/// Most hidden layers accepted.
pub const MAX_HIDDEN_LAYERS: usize = 16;
/// Most metadata entries accepted (the checksum sorts them; a guard against absurd files).
pub const MAX_METADATA_ENTRIES: usize = 1024;
/// The oldest `format_version` this runtime reads (the newest is [`EXPORT_VERSION`]).
pub const OLDEST_FORMAT_VERSION: u32 = 1;

fn meta<'a>(header: &'a Metadata, key: &'static str) -> Result<&'a str, Error> {
    header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(key))
        .map(|s| s.as_str())
        .ok_or(Error::Metadata {
            key,
            reason: String::from("missing"),
        })
}

fn metadata_error(key: &'static str, reason: String) -> Error {
    Error::Metadata { key, reason }
}

fn parse_usize(s: &str, key: &'static str) -> Result<usize, Error> {
    s.trim()
        .parse::<usize>()
        .map_err(|_| metadata_error(key, format!("`{s}` is not a non-negative integer")))
}

fn parse_f32(s: &str, key: &'static str) -> Result<f32, Error> {
    match s.trim().parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(metadata_error(key, format!("`{s}` is not a finite number"))),
    }
}

/// The normalization constants and the values `meshrl-format` (this runtime's observation
/// builder) normalizes with; version 1 files hold the first five.
const CONSTANTS: [(&str, f32); 8] = [
    ("obs.rssi_center_dbm", meshrl_format::RSSI_CENTER_DBM),
    ("obs.rssi_scale_db", meshrl_format::RSSI_SCALE_DB),
    ("obs.latency_half_ms", meshrl_format::LATENCY_HALF_MS),
    ("obs.hops_scale", meshrl_format::HOPS_SCALE),
    ("obs.bandwidth_scale_mbps", meshrl_format::BANDWIDTH_SCALE_MBPS),
    ("obs.etx_half", meshrl_format::ETX_HALF),
    ("obs.etx_excess_scale", meshrl_format::ETX_EXCESS_SCALE),
    ("obs.path_latency_half_ms", meshrl_format::PATH_LATENCY_HALF_MS),
];

/// The file's names, comma separated, must be the feature set's.
fn check_names(
    header: &Metadata,
    key: &'static str,
    set: FeatureSet,
    names: &[&str],
) -> Result<(), Error> {
    let text = meta(header, key)?;
    if !text.split(',').map(str::trim).eq(names.iter().copied()) {
        return Err(metadata_error(
            key,
            format!(
                "`{text}`, but the `{}` feature set is `{}`",
                set.name(),
                names.join(",")
            ),
        ));
    }
    Ok(())
}

/// The raw bytes of the actor's tensors as stored, layer by layer, weight then bias, for
/// every `actor.{i}` present (at most `MAX_HIDDEN_LAYERS + 2` layers: enough to tell that a
/// file holds more than its metadata says).
fn actor_bytes(st: &SafeTensors<'_>) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    for i in 0..MAX_HIDDEN_LAYERS + 2 {
        let Ok(w) = st.tensor(&format!("actor.{i}.weight")) else {
            break;
        };
        let name = format!("actor.{i}.bias");
        let b = st.tensor(&name).map_err(|_| Error::Tensor {
            name,
            reason: String::from("missing"),
        })?;
        bytes.extend_from_slice(w.data());
        bytes.extend_from_slice(b.data());
    }
    Ok(bytes)
}

fn tensor_f32(st: &SafeTensors<'_>, name: &str, shape: &[usize]) -> Result<Vec<f32>, Error> {
    let err = |reason: String| Error::Tensor {
        name: String::from(name),
        reason,
    };
    let view = st.tensor(name).map_err(|_| err(String::from("missing")))?;
    if view.dtype() != Dtype::F32 {
        return Err(err(format!("dtype is {:?}, expected F32", view.dtype())));
    }
    if view.shape() != shape {
        return Err(err(format!(
            "shape is {:?}, the metadata implies {:?}",
            view.shape(),
            shape
        )));
    }
    let data = view.data();
    let mut out = Vec::with_capacity(data.len() / 4);
    for (i, c) in data.chunks_exact(4).enumerate() {
        let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        if !v.is_finite() {
            return Err(err(format!("value {i} is {v} (weights must be finite)")));
        }
        out.push(v);
    }
    Ok(out)
}

/// What the metadata says about the network, checked for consistency.
struct Shape {
    architecture: Architecture,
    features: FeatureSet,
    num_actions: usize,
    hidden: Vec<usize>,
    activation: Activation,
}

fn read_shape(header: &Metadata, version: u32) -> Result<Shape, Error> {
    let obs_dim = parse_usize(meta(header, "obs_dim")?, "obs_dim")?;
    let num_actions = parse_usize(meta(header, "num_actions")?, "num_actions")?;
    if num_actions == 0 || num_actions > MAX_WIDTH {
        return Err(metadata_error(
            "num_actions",
            format!("{num_actions} is outside 1..={MAX_WIDTH}"),
        ));
    }
    let (architecture, features) = if version == 1 {
        (Architecture::Mlp, FeatureSet::Spec)
    } else {
        let architecture = match meta(header, "architecture")? {
            "mlp" => Architecture::Mlp,
            "slots" => Architecture::Slots,
            other => {
                return Err(metadata_error(
                    "architecture",
                    format!("`{other}`, expected `mlp` or `slots`"),
                ))
            }
        };
        let name = meta(header, "feature_set")?;
        let features = FeatureSet::from_name(name).ok_or_else(|| {
            metadata_error(
                "feature_set",
                format!("`{name}`, expected `spec` or `routing`"),
            )
        })?;
        for (key, want) in [
            ("per_slot", features.per_slot()),
            ("context", features.context()),
        ] {
            let got = parse_usize(meta(header, key)?, key)?;
            if got != want {
                return Err(metadata_error(
                    key,
                    format!("{got}, but the `{}` feature set has {want}", features.name()),
                ));
            }
        }
        check_names(header, "obs.slot_features", features, features.slot_names())?;
        check_names(header, "obs.context_features", features, features.context_names())?;
        (architecture, features)
    };
    let want = features.obs_dim(num_actions);
    if obs_dim != want {
        return Err(metadata_error(
            "obs_dim",
            format!(
                "{obs_dim}, but {num_actions} neighbour slots of {} features and {} context \
                 features make {want}",
                features.per_slot(),
                features.context()
            ),
        ));
    }
    let mut hidden = Vec::new();
    let hidden_text = meta(header, "hidden")?;
    for part in hidden_text.split(',').filter(|p| !p.trim().is_empty()) {
        let h = parse_usize(part, "hidden")?;
        if h == 0 || h > MAX_WIDTH {
            return Err(metadata_error(
                "hidden",
                format!("width {h} is outside 1..={MAX_WIDTH}"),
            ));
        }
        hidden.push(h);
        if hidden.len() > MAX_HIDDEN_LAYERS {
            return Err(metadata_error(
                "hidden",
                format!("more than {MAX_HIDDEN_LAYERS} layers"),
            ));
        }
    }
    let activation = match meta(header, "activation")? {
        "tanh" => Activation::Tanh,
        "relu" => Activation::Relu,
        other => {
            return Err(metadata_error(
                "activation",
                format!("`{other}`, expected `tanh` or `relu`"),
            ))
        }
    };
    let constants = if version == 1 { &CONSTANTS[..5] } else { &CONSTANTS[..] };
    for &(key, want) in constants {
        let got = parse_f32(meta(header, key)?, key)?;
        if got != want {
            return Err(metadata_error(
                key,
                format!(
                    "{got}, but this runtime normalizes with {want} (meshrl-format's): the \
                     policy was trained on other observations"
                ),
            ));
        }
    }
    Ok(Shape {
        architecture,
        features,
        num_actions,
        hidden,
        activation,
    })
}

impl Policy {
    /// Parses and validates an exported policy (format version 2, or 1): the safetensors
    /// container, the checksum (over the actor and, from version 2, the metadata), the
    /// metadata's consistency (architecture, feature set, sizes, constants), every actor
    /// tensor's dtype and shape, and finite weights. Every defect is an [`Error`] naming the
    /// key or tensor; nothing panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Policy, Error> {
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| Error::Format(format!("not a safetensors file: {e:?}")))?;
        let format_name = meta(&header, "format")?;
        if format_name != EXPORT_FORMAT {
            return Err(metadata_error(
                "format",
                format!("`{format_name}`, expected `{EXPORT_FORMAT}`"),
            ));
        }
        let version_text = meta(&header, "format_version")?;
        let version = match version_text.trim().parse::<u32>() {
            Ok(v) if (OLDEST_FORMAT_VERSION..=EXPORT_VERSION).contains(&v) => v,
            _ => {
                return Err(metadata_error(
                    "format_version",
                    format!(
                        "`{version_text}`; this runtime reads versions \
                         {OLDEST_FORMAT_VERSION} to {EXPORT_VERSION} (a newer meshrl wrote \
                         this file?)"
                    ),
                ))
            }
        };
        let expected = {
            let text = meta(&header, "checksum")?;
            text.strip_prefix("fnv1a64:")
                .filter(|h| h.len() == 16)
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    metadata_error(
                        "checksum",
                        format!("`{text}`, expected `fnv1a64:` and 16 hex digits"),
                    )
                })?
        };
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::Format(format!("not a safetensors file: {e:?}")))?;
        let tensors = actor_bytes(&st)?;
        let actual = if version == 1 {
            fnv1a64(FNV_OFFSET, &tensors)
        } else {
            let entries = header.metadata().as_ref().map(|m| m.len()).unwrap_or(0);
            if entries > MAX_METADATA_ENTRIES {
                return Err(Error::Format(format!(
                    "{entries} metadata entries, at most {MAX_METADATA_ENTRIES}"
                )));
            }
            let map = header.metadata().as_ref();
            metadata_checksum(
                &tensors,
                map.into_iter()
                    .flat_map(|m| m.iter())
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
        };
        if actual != expected {
            return Err(Error::Checksum { expected, actual });
        }

        let shape = read_shape(&header, version)?;
        let slots = shape.architecture == Architecture::Slots;
        let mut widths = Vec::with_capacity(shape.hidden.len() + 2);
        widths.push(if slots {
            shape.features.per_slot() + shape.features.context()
        } else {
            shape.features.obs_dim(shape.num_actions)
        });
        widths.extend_from_slice(&shape.hidden);
        widths.push(if slots { 1 } else { shape.num_actions });
        let mut layers = Vec::with_capacity(widths.len() - 1);
        for (i, pair) in widths.windows(2).enumerate() {
            let (d_in, d_out) = (pair[0], pair[1]);
            let w = tensor_f32(&st, &format!("actor.{i}.weight"), &[d_out, d_in])?;
            let b = tensor_f32(&st, &format!("actor.{i}.bias"), &[d_out])?;
            // [d_out][d_in] in the file -> [d_in][d_out] here.
            let mut wt = vec![0.0f32; d_in * d_out];
            for o in 0..d_out {
                for j in 0..d_in {
                    wt[j * d_out + o] = w[o * d_in + j];
                }
            }
            layers.push(Layer {
                d_in,
                d_out,
                w: wt,
                b,
            });
        }
        if st.tensor(&format!("actor.{}.weight", layers.len())).is_ok() {
            return Err(metadata_error(
                "hidden",
                format!(
                    "says {} hidden layers, the file holds more actor layers",
                    shape.hidden.len()
                ),
            ));
        }
        Ok(Policy {
            layers,
            activation: shape.activation,
            architecture: shape.architecture,
            obs: ObsSpec::new(shape.features, shape.num_actions),
            hidden: shape.hidden,
            format_version: version,
            checksum: expected,
        })
    }
}
