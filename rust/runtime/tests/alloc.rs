//! After loading, acting allocates nothing: a counting global allocator proves it.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use meshrl_runtime::{NeighborMeasurement, Policy};

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

#[test]
fn acting_allocates_nothing() {
    let (_, path) = common::trained_export("alloc", false);
    let (obs, mask, d, k) = common::env_observations(1000, 3);
    let masks: Vec<bool> = mask.iter().map(|&v| v != 0).collect();
    let policy = Policy::from_bytes(&std::fs::read(&path).unwrap()).unwrap();
    let mut scratch = policy.scratch();
    let mut probs = vec![0.0f32; k];
    let mut built = vec![0.0f32; d];
    let mut built_mask = vec![false; k];
    let neighbors = [Some(NeighborMeasurement {
        rssi_dbm: -60.0,
        latency_ms: 4.0,
        packet_loss: 0.1,
        hops_to_destination: Some(2),
        bandwidth_mbps: 39.0,
        trust: 0.9,
    })]
    .into_iter()
    .chain(std::iter::repeat(None))
    .take(k)
    .collect::<Vec<_>>();

    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let mut chosen = 0usize;
    for i in 0..1000 {
        let o = &obs[i * d..(i + 1) * d];
        let m = &masks[i * k..(i + 1) * k];
        chosen += policy.act(o, m, &mut scratch).unwrap();
        policy.probs(o, m, &mut scratch, &mut probs).unwrap();
        policy.logits(o, &mut scratch).unwrap();
        policy.obs_spec().build(&neighbors, 0.5, &mut built, &mut built_mask).unwrap();
        chosen += policy.act(&built, &built_mask, &mut scratch).unwrap();
    }
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert_eq!(after - before, 0, "{} allocations in 1000 calls", after - before);
    assert!(chosen > 0, "every call chose slot 0: the loop may have been optimized away");
}
