//! After loading, acting and building observations allocate nothing, for both architectures:
//! a counting global allocator proves it.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use meshrl_env::FeatureSet;
use meshrl_ppo::Architecture;
use meshrl_runtime::{NodeContext, Policy, SlotMeasurement};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations while the policy acts 1000 times on environment observations and on
/// observations it builds from raw measurements. The counter is global: the variants run in
/// one test, one after the other, so no other test thread allocates meanwhile.
fn allocations_while_acting(arch: Architecture, features: FeatureSet) -> usize {
    let path = common::export(&common::untrained(arch, features), &format!("alloc-{}", common::variant_name(arch, features)), false);
    let (obs, mask, d, k) = common::env_observations(1000, 3, features);
    let masks: Vec<bool> = mask.iter().map(|&v| v != 0).collect();
    let policy = Policy::from_bytes(&std::fs::read(&path).unwrap()).unwrap();
    let mut scratch = policy.scratch();
    let mut probs = vec![0.0f32; k];
    let mut built = vec![0.0f32; d];
    let mut built_mask = vec![false; k];
    let near = SlotMeasurement {
        rssi_dbm: -60.0,
        latency_ms: 4.0,
        packet_loss: 0.1,
        hops_to_destination: Some(2),
        bandwidth_mbps: 39.0,
        trust: 0.9,
        etx_to_destination: 2.5,
        latency_to_destination_ms: 12.0,
        queue: 0.1,
        visited: false,
    };
    let far = SlotMeasurement { rssi_dbm: -80.0, packet_loss: 0.4, hops_to_destination: None, ..near };
    let mut table = vec![None; k];
    table[0] = Some(near);
    table[k - 1] = Some(far);
    let context = NodeContext { queue: 0.5, hops_taken: 3, ttl: 32 };

    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let mut chosen = 0usize;
    for i in 0..1000 {
        let o = &obs[i * d..(i + 1) * d];
        let m = &masks[i * k..(i + 1) * k];
        chosen += policy.act(o, m, &mut scratch).unwrap();
        policy.probs(o, m, &mut scratch, &mut probs).unwrap();
        policy.logits(o, &mut scratch).unwrap();
        policy.obs_spec().build(&table, &context, &mut built, &mut built_mask, &mut scratch).unwrap();
        chosen += policy.act(&built, &built_mask, &mut scratch).unwrap();
    }
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert!(chosen > 0, "every call chose slot 0: the loop may have been optimized away");
    after - before
}

#[test]
fn acting_allocates_nothing() {
    for (arch, features) in common::VARIANTS {
        let n = allocations_while_acting(arch, features);
        assert_eq!(n, 0, "{}: {n} allocations in 1000 calls", common::variant_name(arch, features));
    }
}
