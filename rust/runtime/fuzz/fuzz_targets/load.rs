//! Loads arbitrary bytes as a policy file; whatever loads must also build observations and
//! act. Any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshrl_runtime::{NodeContext, SlotMeasurement};

fuzz_target!(|data: &[u8]| {
    if let Ok(policy) = meshrl_runtime::Policy::from_bytes(data) {
        let mut scratch = policy.scratch();
        let k = policy.num_actions();
        let mut obs = vec![0.5f32; policy.obs_dim()];
        let mut mask = vec![true; k];
        let mut probs = vec![0.0f32; k];
        policy.act(&obs, &mask, &mut scratch).expect("a loaded policy acts");
        policy.probs(&obs, &mask, &mut scratch, &mut probs).expect("a loaded policy has probs");
        let mut table = vec![None; k];
        table[k - 1] = Some(SlotMeasurement { latency_ms: 3.0, packet_loss: 0.1, ..Default::default() });
        let context = NodeContext { queue: 0.5, hops_taken: 1, ttl: 8 };
        policy
            .obs_spec()
            .build(&table, &context, &mut obs, &mut mask, &mut scratch)
            .expect("a loaded policy builds observations");
        policy.act(&obs, &mask, &mut scratch).expect("a loaded policy acts on them");
    }
});
