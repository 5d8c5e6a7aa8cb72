//! Random test schedules for the simulator: validators with Byzantine behaviours, a faulty
//! network, rounds with two valid values each; and what a run showed.

use crate::error::TrustError;
use crate::hash::{Enc, Hash32};
use crate::identity::{Identity, SpiffeId};

use super::sim::{Behavior, NetConfig, Rng, Simulator};
use super::{Config, Value};

/// One random test schedule: validators, faults, rounds and their candidate values.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// f: n = 3f + 1 validators.
    pub f: usize,
    /// The behaviour of each validator.
    pub behaviors: Vec<Behavior>,
    /// The network.
    pub net: NetConfig,
    /// Rounds to agree on (1..=rounds).
    pub rounds: u64,
    /// Time between the submissions of successive rounds (ms).
    pub round_interval_ms: u64,
    /// The replicas' settings.
    pub config: Config,
    /// The seed of everything.
    pub seed: u64,
}

/// What a schedule's run showed.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Safety violations (must be empty).
    pub violations: Vec<String>,
    /// Whether every honest replica decided every round.
    pub all_decided: bool,
    /// Views the honest replicas went through after GST until every round was decided:
    /// the highest honest view at the end minus the highest at GST.
    pub views_after_gst: u64,
    /// Simulated time from GST (or the last submission, if later) until every round was
    /// decided (ms).
    pub ms_after_gst: u64,
    /// The highest view reached.
    pub max_view: u64,
    /// Messages delivered.
    pub delivered: u64,
}

impl Schedule {
    /// A random schedule with 3f + 1 validators and up to `f` Byzantine ones (or `byzantine`
    /// of them if given, to test the checker beyond PBFT's bound).
    pub fn random(f: usize, seed: u64, byzantine: Option<usize>) -> Self {
        let mut rng = Rng::new(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let n = 3 * f + 1;
        let count = byzantine
            .unwrap_or_else(|| rng.below(f as u64 + 1) as usize)
            .min(n);
        let mut behaviors = vec![Behavior::Honest; n];
        let mut placed = 0;
        while placed < count {
            let i = rng.below(n as u64) as usize;
            if behaviors[i] == Behavior::Honest {
                behaviors[i] =
                    [Behavior::Silent, Behavior::Twins, Behavior::Forger][rng.below(3) as usize];
                placed += 1;
            }
        }
        let gst_ms = rng.below(3_000);
        let net = NetConfig {
            gst_ms,
            delta_ms: 1 + rng.below(10),
            max_delay_ms: 5 + rng.below(200),
            drop: rng.below(30) as f64 / 100.0,
            duplicate: rng.below(20) as f64 / 100.0,
            partition: rng.below(50) as f64 / 100.0,
            partition_epoch_ms: 50 + rng.below(250),
            budget_ms: gst_ms + 120_000,
        };
        Schedule {
            f,
            behaviors,
            net,
            rounds: 1 + rng.below(12),
            round_interval_ms: rng.below(300),
            config: Config::default(),
            seed,
        }
    }

    /// The identities of the validators of this schedule.
    pub fn identities(&self) -> Vec<Identity> {
        (0..self.behaviors.len())
            .map(|i| {
                let id = SpiffeId::node("sim.meshrl", &format!("v{i}")).expect("valid ID");
                Identity::from_seed(id, self.seed.wrapping_add(i as u64))
            })
            .collect()
    }

    /// The two valid candidate values of `round` (an honest validator accepts either; the
    /// primary proposes the one it was given first).
    pub fn candidates(&self, round: u64) -> [Value; 2] {
        let v = |which: u64| {
            let mut e = Enc::new(b"sim-candidate");
            e.u64(self.seed).u64(round).u64(which);
            Value {
                round,
                model_hash: e.digest(),
                certificate: Hash32::of(&which.to_le_bytes()),
            }
        };
        [v(0), v(1)]
    }

    /// Runs the schedule to completion (or its budget).
    pub fn run(&self) -> Result<Outcome, TrustError> {
        self.simulate().map(|(_, o)| o)
    }

    /// Runs the schedule and returns the simulator too, to inspect the replicas.
    pub fn simulate(&self) -> Result<(Simulator, Outcome), TrustError> {
        let n = self.behaviors.len();
        let mut sim = Simulator::new(
            self.identities(),
            self.behaviors.clone(),
            self.config.clone(),
            self.net.clone(),
            0,
            self.seed,
        )?;
        let mut rng = Rng::new(self.seed ^ 0x5eed);
        let mut last_submit = 0;
        for round in 1..=self.rounds {
            let [a, b] = self.candidates(round);
            for node in 0..n {
                let at = round * self.round_interval_ms + rng.below(50);
                last_submit = last_submit.max(at);
                let (first, second) = if rng.chance(0.5) { (a, b) } else { (b, a) };
                if self.behaviors[node] == Behavior::Twins {
                    // The halves prefer different values: an equivocating primary.
                    sim.submit_half_at(at, node, 0, first);
                    sim.submit_half_at(at, node, 0, second);
                    sim.submit_half_at(at, node, 1, second);
                    sim.submit_half_at(at, node, 1, first);
                } else {
                    sim.submit_at(at, node, first);
                    sim.submit_at(at, node, second);
                }
            }
        }
        let honest = sim.honest();
        let rounds = self.rounds;
        let all = |s: &Simulator| {
            honest.iter().all(|i| {
                s.decisions()
                    .get(i)
                    .is_some_and(|d| d.len() as u64 >= rounds)
            })
        };
        sim.run_until(all);
        let all_decided = all(&sim);
        let end = sim.now();
        let from = self.net.gst_ms.max(last_submit);
        let outcome = Outcome {
            violations: sim.violations().to_vec(),
            all_decided,
            // A run that ended before GST went through no view after it.
            views_after_gst: sim
                .max_honest_view()
                .saturating_sub(sim.view_at_gst().unwrap_or(sim.max_honest_view())),
            ms_after_gst: end.saturating_sub(from),
            max_view: sim.max_honest_view(),
            delivered: sim.delivered,
        };
        Ok((sim, outcome))
    }
}
