//! Building observations on a node from its own neighbour measurements.
//!
//! The normalization is `meshrl-format`'s ([`meshrl_format::write_slot`],
//! [`meshrl_format::write_context`], [`meshrl_format::finish_observation`]), the very code the
//! environment trains with. Loading checks that the constants in the file equal the ones
//! compiled into that code, so a policy trained with other constants is refused rather than
//! fed observations it never saw.

use alloc::format;

use meshrl_format::{FeatureSet, NodeContext, SlotMeasurement};

use crate::{Error, Scratch};

/// The observation layout of a policy: `num_slots` neighbour slots of
/// [`FeatureSet::per_slot`] normalized features, then [`FeatureSet::context`] context
/// features. Per slot (`routing` adds indices 6 to 10):
///
/// | index | feature | normalized |
/// |---|---|---|
/// | 0 | RSSI | `(rssi_dbm − rssi_center_dbm) / rssi_scale_db` |
/// | 1 | latency | `latency_ms / (latency_ms + latency_half_ms)` |
/// | 2 | packet loss | as is |
/// | 3 | hops to destination | `min(hops, hops_scale) / hops_scale`, 1 if unknown |
/// | 4 | bandwidth | `bandwidth_mbps / bandwidth_scale_mbps` |
/// | 5 | trust | as is |
/// | 6 | advertised ETX to destination | `etx / (etx + etx_half)`, 1 if no route |
/// | 7 | ETX excess | `min(c − c_min, etx_excess_scale) / etx_excess_scale` where `c` = this link's ETX + the advertised ETX and `c_min` its least value over the valid slots; 1 if no route |
/// | 8 | advertised latency to destination | `ms / (ms + path_latency_half_ms)`, 1 if no route |
/// | 9 | the neighbour's advertised queue | as is |
/// | 10 | visited | 1 if the packet already passed through the neighbour |
///
/// Context: `spec`: the node's queue occupancy; `routing`: the queue, the fraction of the TTL
/// left and `min(hops taken, hops_scale) / hops_scale`. Empty slots are all zero and masked
/// out. Slots hold a node's neighbours (its `num_slots` strongest by RSSI when it has more) in
/// ascending node-id order. The constants are `meshrl_format`'s (`RSSI_CENTER_DBM`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObsSpec {
    feature_set: FeatureSet,
    num_slots: usize,
}

fn bad(what: &'static str, s: usize, field: &str, value: f32, want: &str) -> Error {
    Error::Input {
        what,
        reason: format!("slot {s}: {field} is {value}, expected {want}"),
    }
}

fn check_slot(set: FeatureSet, s: usize, m: &SlotMeasurement) -> Result<(), Error> {
    let finite = |field: &str, v: f32| {
        if v.is_finite() {
            Ok(())
        } else {
            Err(bad("slots", s, field, v, "a finite number"))
        }
    };
    let at_least_0 = |field: &str, v: f32| {
        if v >= 0.0 && v.is_finite() {
            Ok(())
        } else {
            Err(bad("slots", s, field, v, "a finite number ≥ 0"))
        }
    };
    let unit = |field: &str, v: f32| {
        if (0.0..=1.0).contains(&v) {
            Ok(())
        } else {
            Err(bad("slots", s, field, v, "a number in [0, 1]"))
        }
    };
    finite("rssi_dbm", m.rssi_dbm)?;
    at_least_0("latency_ms", m.latency_ms)?;
    unit("packet_loss", m.packet_loss)?;
    at_least_0("bandwidth_mbps", m.bandwidth_mbps)?;
    unit("trust", m.trust)?;
    if set == FeatureSet::Routing {
        // Infinite (or NaN) advertised distances mean "no route"; negative ones are nonsense.
        let distance = |field: &str, v: f32| {
            if v.is_nan() || v >= 0.0 {
                Ok(())
            } else {
                Err(bad("slots", s, field, v, "≥ 0, or infinite / NaN for no route"))
            }
        };
        distance("etx_to_destination", m.etx_to_destination)?;
        distance("latency_to_destination_ms", m.latency_to_destination_ms)?;
        unit("queue", m.queue)?;
    }
    Ok(())
}

fn check_context(set: FeatureSet, c: &NodeContext) -> Result<(), Error> {
    if !(0.0..=1.0).contains(&c.queue) {
        return Err(Error::Input {
            what: "context",
            reason: format!("queue is {}, expected a number in [0, 1]", c.queue),
        });
    }
    if set == FeatureSet::Routing && (c.ttl == 0 || c.hops_taken > c.ttl) {
        return Err(Error::Input {
            what: "context",
            reason: format!(
                "hops_taken {} and ttl {}: expected 1 ≤ ttl and hops_taken ≤ ttl",
                c.hops_taken, c.ttl
            ),
        });
    }
    Ok(())
}

impl ObsSpec {
    pub(crate) fn new(feature_set: FeatureSet, num_slots: usize) -> ObsSpec {
        ObsSpec {
            feature_set,
            num_slots,
        }
    }

    /// The feature set.
    pub fn feature_set(&self) -> FeatureSet {
        self.feature_set
    }

    /// Neighbour slots.
    pub fn num_slots(&self) -> usize {
        self.num_slots
    }

    /// Features per slot.
    pub fn per_slot(&self) -> usize {
        self.feature_set.per_slot()
    }

    /// Features after the slots.
    pub fn context(&self) -> usize {
        self.feature_set.context()
    }

    /// Observation length: `num_slots * per_slot + context`.
    pub fn obs_dim(&self) -> usize {
        self.feature_set.obs_dim(self.num_slots)
    }

    /// Fills `obs` and `mask` from the neighbour table (`None`: empty slot; the `routing`
    /// fields of [`SlotMeasurement`] are ignored by the `spec` set) and what the node knows
    /// about itself and the packet (`spec` reads only `context.queue`). Raw values out of
    /// their documented ranges (NaN, a negative latency, a loss above 1, ...) are an
    /// [`Error::Input`] naming the slot and field. No allocation (`scratch` holds the mask in
    /// `meshrl-format`'s form).
    pub fn build(
        &self,
        slots: &[Option<SlotMeasurement>],
        context: &NodeContext,
        obs: &mut [f32],
        mask: &mut [bool],
        scratch: &mut Scratch,
    ) -> Result<(), Error> {
        let (set, k, f) = (self.feature_set, self.num_slots, self.per_slot());
        if slots.len() != k {
            return Err(Error::Input {
                what: "slots",
                reason: format!("{} slots, the policy has {k}", slots.len()),
            });
        }
        if obs.len() != self.obs_dim() || mask.len() != k {
            return Err(Error::Input {
                what: "obs",
                reason: format!(
                    "buffers of length {} and {}, expected {} and {k}",
                    obs.len(),
                    mask.len(),
                    self.obs_dim(),
                ),
            });
        }
        if scratch.valid.len() < k {
            return Err(Error::Input {
                what: "scratch",
                reason: format!("made for a policy with fewer than {k} slots"),
            });
        }
        for (s, m) in slots.iter().enumerate() {
            if let Some(m) = m {
                check_slot(set, s, m)?;
            }
        }
        check_context(set, context)?;
        let valid = &mut scratch.valid[..k];
        for (s, m) in slots.iter().enumerate() {
            let o = &mut obs[s * f..(s + 1) * f];
            match m {
                Some(m) => meshrl_format::write_slot(set, m, o),
                None => o.fill(0.0),
            }
            mask[s] = m.is_some();
            valid[s] = m.is_some() as i8;
        }
        meshrl_format::write_context(set, context, &mut obs[k * f..]);
        meshrl_format::finish_observation(set, &mut obs[..k * f], valid);
        Ok(())
    }
}
