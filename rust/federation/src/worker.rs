//! A worker: one mesh node (or site) that trains the shared policy on its own traffic.

use meshrl_ppo::{PpoConfig, Trainer};

use crate::config::FederationConfig;
use crate::FederationError;

/// What a worker sends back after a round: its update as a delta from the global model.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalUpdate {
    /// Local weights − the global weights it started from.
    pub delta: Vec<f32>,
    /// Environment steps it trained on.
    pub num_samples: u64,
    /// Delivery ratio of the packets it routed while training (its own traffic).
    pub delivery_ratio: f64,
    /// Mean episodic return of those packets.
    pub episodic_return: f64,
}

/// A mesh node's learning worker: a PPO trainer whose packets start only at its nodes, so the
/// workers' data are non-IID by construction. Stateless between rounds: each round starts
/// from the global weights with a fresh optimizer and environments seeded by (seed, worker,
/// round), so a resumed federation computes the same updates.
pub struct Worker {
    id: usize,
    /// Nodes whose traffic the worker learns from (its site).
    nodes: Vec<u32>,
    trainer: Trainer,
    seed: u64,
    local_updates: usize,
    learning_rate: f64,
}

/// A 64-bit hash of its parts (splitmix64 over each), for per-worker, per-round seeds.
pub fn mix_seed(parts: &[u64]) -> u64 {
    parts.iter().fold(0x6d65_7368_726c_u64, |h, &p| {
        meshrl_env::twin::splitmix64(h ^ p.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    })
}

impl Worker {
    /// Worker `id` of the federation `cfg`, learning from the packets `nodes` originate.
    /// `poisoned` workers train on negated rewards (a reward-poisoning attacker).
    pub fn new(cfg: &FederationConfig, id: usize, nodes: Vec<u32>, poisoned: bool) -> Result<Worker, FederationError> {
        if nodes.is_empty() {
            return Err(FederationError::input("worker", format!("worker {id} has no nodes")));
        }
        let mut env = cfg.env.clone();
        env.env.sources = nodes.clone();
        env.env.envs_per_twin = cfg.ppo.num_envs;
        let seed = mix_seed(&[cfg.federation.seed, id as u64]);
        let ppo = PpoConfig {
            seed,
            anneal_lr: false,
            ..cfg.ppo.clone()
        };
        let mut trainer = Trainer::new(env, ppo)?;
        if poisoned {
            trainer.set_reward_transform(Some(Box::new(|r: &mut [f32]| r.iter_mut().for_each(|x| *x = -*x))));
        }
        Ok(Worker {
            id,
            nodes,
            trainer,
            seed,
            local_updates: cfg.federation.local_updates,
            learning_rate: cfg.ppo.learning_rate,
        })
    }

    pub fn id(&self) -> usize {
        self.id
    }

    pub fn nodes(&self) -> &[u32] {
        &self.nodes
    }

    /// One round: start from `global`, run the local PPO updates, return the delta.
    pub fn fit(&mut self, global: &[f32], round: u64) -> Result<LocalUpdate, FederationError> {
        self.trainer.learner.restart(global, mix_seed(&[self.seed, round]))?;
        self.trainer.reseed_env(round)?;
        let mut samples = 0u64;
        let mut last = Default::default();
        for _ in 0..self.local_updates {
            last = self.trainer.update(self.learning_rate)?;
            let c = self.trainer.learner.config();
            samples += (c.num_envs * c.num_steps) as u64;
        }
        let local = self.trainer.learner.get_weights();
        let delta = local.iter().zip(global).map(|(l, g)| l - g).collect();
        let meshrl_ppo::UpdateStats { delivery_ratio, episodic_return, .. }: meshrl_ppo::UpdateStats = last;
        Ok(LocalUpdate {
            delta,
            num_samples: samples,
            delivery_ratio: delivery_ratio as f64,
            episodic_return: episodic_return as f64,
        })
    }
}
