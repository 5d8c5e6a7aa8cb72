//! The 100 parties of the secure-aggregation bench and cost example (`benches/secagg.rs`,
//! `examples/secagg_cost.rs`): keys, the three session kinds, setup and one round.

use std::sync::Arc;

use chacha20::ChaCha20Rng;
use ed25519_dalek::SigningKey;
use meshrl_privacy::secagg::{Client, Ed25519Directory, EncryptedShare, Graph, Identity, IdentityDirectory, Server};
use meshrl_privacy::SecAggConfig;
use rand::{Rng, RngExt, SeedableRng};
use rayon::prelude::*;

pub const N: usize = 100;
pub const D: usize = 10_000;

/// Each client's input, uniform in [−1, 1).
pub fn inputs() -> Vec<Vec<f32>> {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    (0..N).map(|_| (0..D).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect()
}

/// The complete graph signed (t = 51), the same unsigned, and SecAgg+ on a Harary graph of
/// degree 14 (t = 8).
pub fn sessions() -> [SecAggConfig; 3] {
    let complete = SecAggConfig::new(N, 51, D);
    let mut unsigned = complete.clone();
    unsigned.sign_messages = false;
    let mut harary = complete.clone();
    harary.graph = Graph::Harary { degree: 14, seed: 0 };
    harary.threshold = 8;
    [complete, unsigned, harary]
}

/// N clients with keys drawn from `seed`, and the server.
pub fn parties(cfg: &SecAggConfig, seed: u64) -> (Vec<Client>, Server) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut draw = || {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        b
    };
    let keys: Vec<SigningKey> = (0..N).map(|_| SigningKey::from_bytes(&draw())).collect();
    let directory = Arc::new(Ed25519Directory(keys.iter().map(|k| k.verifying_key()).collect()));
    let clients = keys
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            let identity = cfg.sign_messages.then(|| Identity::ed25519(k, directory.clone()));
            Client::new(cfg, i, draw(), identity).unwrap()
        })
        .collect();
    let dir = cfg.sign_messages.then_some(directory as Arc<dyn IdentityDirectory>);
    (clients, Server::new(cfg, dir).unwrap())
}

/// Rounds 0 and 1: keys advertised, shares sent; each client's inbox.
pub fn setup(clients: &mut [Client], server: &mut Server) -> Vec<Vec<EncryptedShare>> {
    let adverts = clients.par_iter_mut().map(|c| c.advertise_keys().unwrap()).collect();
    let roster = server.receive_adverts(adverts).unwrap();
    let shares = clients.par_iter_mut().map(|c| c.share_keys(&roster).unwrap()).collect();
    server.receive_shares(shares).unwrap()
}

/// Rounds 2 to 4 among `clients` (the others dropped out): masked inputs, the consistency
/// check, unmasking. Returns how many inputs the sum includes.
pub fn round(clients: &mut [Client], server: &mut Server, inboxes: &[Vec<EncryptedShare>], inputs: &[Vec<f32>]) -> usize {
    let masked = clients
        .par_iter_mut()
        .map(|c| c.masked_input(&inboxes[c.id()], &inputs[c.id()]).unwrap())
        .collect();
    let announced = server.receive_masked_inputs(masked).unwrap();
    let signatures = clients.par_iter_mut().map(|c| c.check_consistency(&announced).unwrap()).collect();
    let request = server.receive_consistency_signatures(signatures).unwrap();
    let responses = clients.par_iter_mut().map(|c| c.unmask(&request).unwrap()).collect();
    server.receive_unmask_responses(responses).unwrap().included.len()
}
