//! What one PPO update learns from: a rollout of transitions, its advantages (GAE), and the
//! window of recently finished episodes the metrics are computed over.

use std::collections::VecDeque;

use crate::PpoError;

/// Transitions of one rollout, time-major (`steps × num_envs`). Filled by the trainer's own
/// rollouts on the Rust environment, or step by step with `Learner::store_transition` from any
/// other environment.
#[derive(Clone, Debug, Default)]
pub struct Rollout {
    pub num_envs: usize,
    /// `[steps × num_envs × obs_dim]`
    pub obs: Vec<f32>,
    /// `[steps × num_envs × num_actions]`, 1 = valid
    pub masks: Vec<i8>,
    pub actions: Vec<i64>,
    /// Log-probabilities of `actions` under the policy that chose them.
    pub logps: Vec<f32>,
    /// Critic values of `obs`.
    pub values: Vec<f32>,
    /// Rewards, with `γ·V(final obs)` already added where an episode was truncated.
    pub rewards: Vec<f32>,
    /// 1 where the episode ended (terminated or truncated) at this step.
    pub dones: Vec<f32>,
}

impl Rollout {
    /// An empty rollout of `num_envs` environments.
    pub fn new(num_envs: usize) -> Rollout {
        Rollout {
            num_envs,
            ..Default::default()
        }
    }

    /// Time steps stored.
    pub fn steps(&self) -> usize {
        if self.num_envs == 0 {
            0
        } else {
            self.actions.len() / self.num_envs
        }
    }

    /// Checks that every buffer holds `steps × num_envs` rows of the right width, actions are
    /// slots in `0..num_actions` and `last_values` has one value per environment.
    pub fn check(&self, obs_dim: usize, num_actions: usize, last_values: &[f32]) -> Result<(), PpoError> {
        let (n, t) = (self.num_envs, self.steps());
        let total = n * t;
        if n == 0 || t == 0 {
            return Err(PpoError::input("rollout", "is empty: store transitions before updating"));
        }
        for (name, len, want) in [
            ("obs", self.obs.len(), total * obs_dim),
            ("masks", self.masks.len(), total * num_actions),
            ("actions", self.actions.len(), total),
            ("logps", self.logps.len(), total),
            ("values", self.values.len(), total),
            ("rewards", self.rewards.len(), total),
            ("dones", self.dones.len(), total),
            ("last_values", last_values.len(), n),
        ] {
            if len != want {
                return Err(PpoError::input(
                    "rollout",
                    format!("{name} holds {len} values; {t} steps × {n} environments need {want}"),
                ));
            }
        }
        if let Some(&a) = self.actions.iter().find(|&&a| a < 0 || a as usize >= num_actions) {
            return Err(PpoError::input("rollout", format!("action {a} is outside 0..{num_actions}")));
        }
        Ok(())
    }
}

/// Generalized advantage estimates and returns (`advantages + values`) of a checked rollout.
pub fn gae(r: &Rollout, last_values: &[f32], gamma: f32, lambda: f32) -> (Vec<f32>, Vec<f32>) {
    let (n, t_max) = (r.num_envs, r.steps());
    let mut adv = vec![0f32; n * t_max];
    let mut next_adv = vec![0f32; n];
    for t in (0..t_max).rev() {
        for i in 0..n {
            let idx = t * n + i;
            let nonterminal = 1.0 - r.dones[idx];
            let next_value = if t + 1 == t_max {
                last_values[i]
            } else {
                r.values[idx + n]
            };
            let delta = r.rewards[idx] + gamma * next_value * nonterminal - r.values[idx];
            next_adv[i] = delta + gamma * lambda * nonterminal * next_adv[i];
            adv[idx] = next_adv[i];
        }
    }
    let returns = adv.iter().zip(&r.values).map(|(a, v)| a + v).collect();
    (adv, returns)
}

/// Explained variance `1 − Var(returns − values) / Var(returns)`, as CleanRL logs it.
pub fn explained_variance(returns: &[f32], values: &[f32]) -> f32 {
    let mean = |x: &mut dyn Iterator<Item = f32>| {
        let (s, c) = x.fold((0f64, 0usize), |(s, c), v| (s + v as f64, c + 1));
        s / c.max(1) as f64
    };
    let mean_ret = mean(&mut returns.iter().copied());
    let mean_res = mean(&mut returns.iter().zip(values).map(|(r, v)| r - v));
    let var_y: f64 = returns.iter().map(|&r| (r as f64 - mean_ret).powi(2)).sum();
    let var_res: f64 = returns
        .iter()
        .zip(values)
        .map(|(r, v)| ((r - v) as f64 - mean_res).powi(2))
        .sum();
    if var_y > 0.0 {
        (1.0 - var_res / var_y) as f32
    } else {
        f32::NAN
    }
}

/// A finished episode, as the metrics see it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Finished {
    pub ret: f32,
    pub delivered: bool,
    pub latency_ms: f32,
    pub hops: u32,
}

/// The last [`Episodes::CAPACITY`] finished episodes.
#[derive(Clone, Debug, Default)]
pub struct Episodes(pub(crate) VecDeque<Finished>);

impl Episodes {
    pub const CAPACITY: usize = 1000;

    pub fn push(&mut self, f: Finished) {
        self.0.push_back(f);
        if self.0.len() > Self::CAPACITY {
            self.0.pop_front();
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Finished> {
        self.0.iter()
    }

    /// Mean return over the last 100, then delivery ratio, latency and hops (delivered
    /// packets) over the whole window, into `stats`.
    pub fn summarize(&self, stats: &mut crate::UpdateStats) {
        let last100: Vec<&Finished> = self.0.iter().rev().take(100).collect();
        if !last100.is_empty() {
            stats.episodic_return =
                last100.iter().map(|f| f.ret).sum::<f32>() / last100.len() as f32;
        }
        if self.0.is_empty() {
            return;
        }
        let delivered: Vec<&Finished> = self.0.iter().filter(|f| f.delivered).collect();
        stats.delivery_ratio = delivered.len() as f32 / self.0.len() as f32;
        if !delivered.is_empty() {
            let d = delivered.len() as f32;
            stats.latency_ms = delivered.iter().map(|f| f.latency_ms).sum::<f32>() / d;
            stats.hops = delivered.iter().map(|f| f.hops as f32).sum::<f32>() / d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gae_with_lambda_one_is_the_discounted_return() {
        // One environment, three steps, episode ends at step 1 (index 1).
        let r = Rollout {
            num_envs: 1,
            obs: vec![0.0; 3],
            masks: vec![1; 3],
            actions: vec![0; 3],
            logps: vec![0.0; 3],
            values: vec![0.5, 0.25, 1.0],
            rewards: vec![1.0, 2.0, 3.0],
            dones: vec![0.0, 1.0, 0.0],
        };
        r.check(1, 1, &[10.0]).unwrap();
        let (adv, ret) = gae(&r, &[10.0], 0.5, 1.0);
        assert_eq!(ret, vec![1.0 + 0.5 * 2.0, 2.0, 3.0 + 0.5 * 10.0]);
        assert_eq!(adv, vec![2.0 - 0.5, 2.0 - 0.25, 8.0 - 1.0]);
        assert!(r.check(2, 1, &[10.0]).is_err());
        assert!(r.check(1, 1, &[]).is_err());
        assert!(Rollout::new(1).check(1, 1, &[0.0]).is_err());
    }
}
