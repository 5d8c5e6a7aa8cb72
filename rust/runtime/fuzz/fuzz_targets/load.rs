//! Loads arbitrary bytes as a policy file; whatever loads must also act. Any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(policy) = meshrl_runtime::Policy::from_bytes(data) {
        let mut scratch = policy.scratch();
        let obs = vec![0.5f32; policy.obs_dim()];
        let mask = vec![true; policy.num_actions()];
        let mut probs = vec![0.0f32; policy.num_actions()];
        policy.act(&obs, &mask, &mut scratch).expect("a loaded policy acts");
        policy.probs(&obs, &mask, &mut scratch, &mut probs).expect("a loaded policy has probs");
    }
});
