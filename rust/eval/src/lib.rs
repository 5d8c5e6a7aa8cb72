//! Routing baselines and A/B evaluation.
//!
//! [`baselines`] has what mesh networks run today (hop count, ETX, latency link state,
//! greedy), Q-routing as the classic learning router, and an oracle upper bound, all behind
//! the [`Router`] interface a trained agent also implements. [`evaluate`] routes the same
//! packets over the same mesh evolution for every policy (common random numbers);
//! [`stats`] summarizes with 95 % intervals and compares two policies pairwise.

pub mod baselines;
mod harness;
pub use meshrl_env::paths;
mod report;
pub mod stats;

pub use baselines::{baseline, Decision, Router, BASELINES};
pub use harness::{evaluate, evaluate_batch, BatchEvalError, Episode, EvalOptions, MAX_EPISODES};
pub use report::{csv, table};
