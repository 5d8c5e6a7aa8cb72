//! [`secure_sum`]: every client and the server of one session, in process, clients in
//! parallel (rayon), with scripted dropouts.

use std::collections::BTreeSet;
use std::sync::Arc;

use chacha20::ChaCha20Rng;
use ed25519_dalek::SigningKey;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use super::identity::{Ed25519Directory, IdentityDirectory};
use super::{Client, Identity, SecAggConfig, SecAggOutcome, Server, Stage, Topology};
use crate::error::{invalid, PrivacyError};

/// The most values (`n × d`) one in-process session may hold: 2^28 (2 GiB of `u64` words).
pub const MAX_SESSION_VALUES: usize = 1 << 28;

/// Clients that drop out, by the stage whose message they never send.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dropouts {
    /// Never advertise keys (the same as a `None` input).
    pub advertise_keys: Vec<usize>,
    /// Advertise keys, then send no shares.
    pub share_keys: Vec<usize>,
    /// Share keys, then send no masked input (their pairwise masks are removed).
    pub masked_input: Vec<usize>,
    /// Send their masked input (it is in the sum), then confirm no survivor set (and so
    /// reveal no shares).
    pub consistency_check: Vec<usize>,
    /// Send their masked input and confirm the survivor set, then reveal no shares.
    pub unmasking: Vec<usize>,
}

impl Dropouts {
    /// No dropouts.
    pub fn none() -> Self {
        Self::default()
    }

    /// `clients` drop out at `stage`.
    pub fn at(stage: Stage, clients: impl IntoIterator<Item = usize>) -> Self {
        let mut d = Self::default();
        *d.stage_mut(stage) = clients.into_iter().collect();
        d
    }

    /// The clients that drop out at `stage`.
    pub fn stage(&self, stage: Stage) -> &[usize] {
        match stage {
            Stage::AdvertiseKeys => &self.advertise_keys,
            Stage::ShareKeys => &self.share_keys,
            Stage::MaskedInput => &self.masked_input,
            Stage::ConsistencyCheck => &self.consistency_check,
            Stage::Unmasking => &self.unmasking,
        }
    }

    fn stage_mut(&mut self, stage: Stage) -> &mut Vec<usize> {
        match stage {
            Stage::AdvertiseKeys => &mut self.advertise_keys,
            Stage::ShareKeys => &mut self.share_keys,
            Stage::MaskedInput => &mut self.masked_input,
            Stage::ConsistencyCheck => &mut self.consistency_check,
            Stage::Unmasking => &mut self.unmasking,
        }
    }
}

/// Per-client secrets and identities drawn from the session seed.
pub(crate) struct Parties {
    pub(crate) topology: Arc<Topology>,
    pub(crate) seeds: Vec<[u8; 32]>,
    pub(crate) identities: Option<Vec<Identity>>,
    pub(crate) directory: Option<Arc<dyn IdentityDirectory>>,
}

impl Parties {
    /// Draws every client's seed and (if messages are signed) Ed25519 identity from `seed`.
    pub(crate) fn new(config: &SecAggConfig, seed: u64) -> Self {
        let n = config.num_clients;
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut draw = || {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            b
        };
        let seeds: Vec<[u8; 32]> = (0..n).map(|_| draw()).collect();
        let (identities, directory) = if config.sign_messages {
            let keys: Vec<SigningKey> = (0..n).map(|_| SigningKey::from_bytes(&draw())).collect();
            let directory = Arc::new(Ed25519Directory(
                keys.iter().map(|k| k.verifying_key()).collect(),
            ));
            let ids = keys
                .into_iter()
                .map(|k| Identity::ed25519(k, directory.clone()))
                .collect();
            (Some(ids), Some(directory as Arc<dyn IdentityDirectory>))
        } else {
            (None, None)
        };
        Self {
            topology: Arc::new(Topology::new(config)),
            seeds,
            identities,
            directory,
        }
    }

    pub(crate) fn client(&self, config: &SecAggConfig, id: usize) -> Result<Client, PrivacyError> {
        let identity = self.identities.as_ref().map(|ids| ids[id].clone());
        Client::with_topology(config, self.topology.clone(), id, self.seeds[id], identity)
    }

    pub(crate) fn server(&self, config: &SecAggConfig) -> Result<Server, PrivacyError> {
        Server::with_topology(config, self.topology.clone(), self.directory.clone())
    }
}

/// Checks the inputs and dropouts of a session.
fn check<V: AsRef<[f32]>>(
    inputs: &[Option<V>],
    config: &SecAggConfig,
    dropouts: &Dropouts,
) -> Result<(), PrivacyError> {
    config.validate()?;
    let n = config.num_clients;
    if inputs.len() != n {
        return Err(invalid(
            "inputs",
            format!("has {} entries for num_clients = {n}", inputs.len()),
        ));
    }
    if n.saturating_mul(config.dim) > MAX_SESSION_VALUES {
        return Err(invalid(
            "dim",
            format!(
                "num_clients × dim = {n} × {} exceeds {MAX_SESSION_VALUES} values",
                config.dim
            ),
        ));
    }
    for (i, x) in inputs.iter().enumerate() {
        if let Some(x) = x {
            let x = x.as_ref();
            if x.len() != config.dim {
                return Err(invalid(
                    "inputs",
                    format!(
                        "input {i} has length {}, expected dim = {}",
                        x.len(),
                        config.dim
                    ),
                ));
            }
            if let Some(j) = x.iter().position(|v| !v.is_finite()) {
                return Err(invalid(
                    "inputs",
                    format!("input {i} holds {} at index {j}", x[j]),
                ));
            }
        }
    }
    let mut seen = BTreeSet::new();
    for stage in Stage::ALL {
        for &u in dropouts.stage(stage) {
            if u >= n || !seen.insert(u) {
                return Err(invalid(
                    "dropouts",
                    format!("client {u} is out of range or drops out twice"),
                ));
            }
        }
    }
    Ok(())
}

/// Runs one secure aggregation session in process and returns the sum of the inputs of the
/// clients that sent a masked input.
///
/// `inputs[i]` is client `i`'s vector (length `config.dim`, finite; clipped to the clip
/// range) or `None` if it does not take part. `dropouts` scripts who stops at which stage.
/// Every secret, identity and the server's view derive from `seed`, so a run is
/// reproducible. Errors: bad arguments name the parameter; too few clients left at any stage
/// is [`PrivacyError::ThresholdNotMet`] (raised before any share is revealed).
pub fn secure_sum<V: AsRef<[f32]> + Sync>(
    inputs: &[Option<V>],
    config: &SecAggConfig,
    dropouts: &Dropouts,
    seed: u64,
) -> Result<SecAggOutcome, PrivacyError> {
    check(inputs, config, dropouts)?;
    let parties = Parties::new(config, seed);
    let mut server = parties.server(config)?;
    let mut clients: Vec<Client> = (0..config.num_clients)
        .filter(|&i| inputs[i].is_some() && !dropouts.advertise_keys.contains(&i))
        .map(|i| parties.client(config, i))
        .collect::<Result<_, _>>()?;
    let leave = |clients: &mut Vec<Client>, stage: Stage| {
        let out = dropouts.stage(stage);
        clients.retain(|c| !out.contains(&c.id()));
    };

    let adverts = clients
        .par_iter_mut()
        .map(|c| c.advertise_keys())
        .collect::<Result<Vec<_>, _>>()?;
    let roster = server.receive_adverts(adverts)?;

    leave(&mut clients, Stage::ShareKeys);
    let shares = clients
        .par_iter_mut()
        .map(|c| c.share_keys(&roster))
        .collect::<Result<Vec<_>, _>>()?;
    let inboxes = server.receive_shares(shares)?;

    leave(&mut clients, Stage::MaskedInput);
    let masked = clients
        .par_iter_mut()
        .map(|c| {
            let x = inputs[c.id()]
                .as_ref()
                .expect("only clients with inputs joined")
                .as_ref();
            c.masked_input(&inboxes[c.id()], x)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let announced = server.receive_masked_inputs(masked)?;

    leave(&mut clients, Stage::ConsistencyCheck);
    let signatures = clients
        .par_iter_mut()
        .map(|c| c.check_consistency(&announced))
        .collect::<Result<Vec<_>, _>>()?;
    let request = server.receive_consistency_signatures(signatures)?;

    leave(&mut clients, Stage::Unmasking);
    let responses = clients
        .par_iter_mut()
        .map(|c| c.unmask(&request))
        .collect::<Result<Vec<_>, _>>()?;
    server.receive_unmask_responses(responses)
}
