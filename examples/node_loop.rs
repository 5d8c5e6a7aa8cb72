//! A mesh node's forwarding loop with an exported policy and nothing else (`meshrl-runtime`).
//!
//! ```sh
//! cargo run --release -p meshrl-cli -- train configs/train/small.toml --out runs/small
//! cargo run --release -p meshrl-cli -- export runs/small -o policy.safetensors
//! cargo run --release -p meshrl-runtime --example node_loop -- policy.safetensors
//! ```
//!
//! A real node reads its neighbour table from the routing daemon (batman-adv's originator
//! table, OLSR's link set: RSSI, link quality, rate), the hop counts and advertised ETX and
//! latency distances to the packet's destination from its routes, and the TTL, hop count and
//! visited nodes from the packet's header; here a small simulated radio stands in for those
//! reads. The same loop runs policies of either feature set (`spec` reads the link
//! measurements and the queue; `routing` also the advertisements and the header).

use std::process::ExitCode;

use meshrl_runtime::{NodeContext, Policy, SlotMeasurement};

/// Stand-in for the radio and routing daemon: a few neighbours whose links drift.
struct Radio {
    state: u64,
    /// (node id, rssi dBm, base latency ms) of the neighbours in the table, by node id.
    neighbors: Vec<(u32, f32, f32)>,
}

impl Radio {
    fn next(&mut self) -> f32 {
        // xorshift64*: deterministic noise without a dependency.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        (self.state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32
    }

    /// The neighbour table as the policy wants it: one entry per slot, `None` when empty.
    /// `visited`: the nodes in the packet's header.
    fn measure(&mut self, destination: u32, visited: &[u32], table: &mut [Option<SlotMeasurement>]) {
        table.fill(None);
        let entries = self.neighbors.clone();
        for (slot, &(id, rssi, latency)) in entries.iter().enumerate().take(table.len()) {
            let rssi = rssi + 4.0 * (self.next() - 0.5);
            // Frame loss grows as the signal nears the noise floor.
            let loss = (1.0 / (1.0 + ((rssi + 85.0) / 3.0).exp())).clamp(0.0, 1.0);
            let hops = id.abs_diff(destination);
            table[slot] = Some(SlotMeasurement {
                rssi_dbm: rssi,
                latency_ms: latency * (1.0 + self.next()),
                packet_loss: loss,
                hops_to_destination: Some(hops),
                bandwidth_mbps: if rssi > -65.0 { 65.0 } else { 13.0 },
                trust: 0.9 + 0.1 * self.next(),
                // What the routing protocol's last advertisement said about the rest of the path.
                etx_to_destination: hops as f32 * (1.0 + 0.5 * self.next()),
                latency_to_destination_ms: hops as f32 * 4.0,
                queue: 0.3 * self.next(),
                visited: visited.contains(&id),
            });
        }
    }
}

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: node_loop POLICY.safetensors   (from `meshrl export`)");
        return ExitCode::from(2);
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let policy = match Policy::from_bytes(&bytes) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let spec = *policy.obs_spec();
    // Everything the loop needs, allocated once.
    let mut scratch = policy.scratch();
    let mut table = vec![None; policy.num_actions()];
    let mut obs = vec![0.0f32; policy.obs_dim()];
    let mut mask = vec![false; policy.num_actions()];
    let mut probs = vec![0.0f32; policy.num_actions()];
    let mut radio = Radio {
        state: 0x9e37_79b9_7f4a_7c15,
        neighbors: vec![(3, -52.0, 2.0), (7, -71.0, 4.0), (9, -83.0, 9.0), (12, -60.0, 3.0)],
    };
    println!(
        "policy: {} architecture on {} features, {} slots, hidden {:?}, checksum {:016x}",
        policy.architecture().name(),
        policy.feature_set().name(),
        policy.num_actions(),
        policy.hidden(),
        policy.checksum()
    );
    for packet in 0..8u32 {
        let destination = [5, 10, 14, 8][packet as usize % 4];
        // The packet's header: it came from node 1 (and node 7, for every other packet).
        let visited: &[u32] = if packet % 2 == 0 { &[1] } else { &[1, 7] };
        let here = NodeContext {
            queue: 0.1 * (packet % 5) as f32,
            hops_taken: visited.len() as u32,
            ttl: 32,
        };
        radio.measure(destination, visited, &mut table);
        if let Err(e) = spec.build(&table, &here, &mut obs, &mut mask, &mut scratch) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        match policy
            .act(&obs, &mask, &mut scratch)
            .and_then(|slot| policy.probs(&obs, &mask, &mut scratch, &mut probs).map(|_| slot))
        {
            Ok(slot) => println!(
                "packet {packet} to node {destination}: forward to node {} (slot {slot}, p = {:.2})",
                radio.neighbors[slot].0, probs[slot]
            ),
            Err(e) => println!("packet {packet}: cannot route ({e})"),
        }
    }
    ExitCode::SUCCESS
}
