//! A trained policy behind the evaluation harness's [`Router`] interface.

use meshrl_env::twin::Twin;
use meshrl_eval::{Decision, Router};

use crate::Policy;

/// Routes with a policy: argmax over valid slots (`deterministic`) or a sample from the masked
/// categorical, drawn from a hash of (seed, env, episode, hop) so evaluations repeat exactly.
pub struct PolicyRouter {
    pub policy: Policy,
    pub name: String,
    pub deterministic: bool,
    pub seed: u64,
}

impl Router for PolicyRouter {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn next_hop(&mut self, _twin_index: usize, _twin: &Twin, d: &Decision<'_>) -> usize {
        let draw = meshrl_env::episode_seed(
            self.seed ^ (d.env as u64).rotate_left(32),
            (d.episode << 16) + d.hops as u64,
        );
        self.policy
            .act_unchecked(d.obs, d.mask, self.deterministic, draw)[0] as usize
    }
}
