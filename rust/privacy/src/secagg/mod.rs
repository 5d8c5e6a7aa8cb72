//! Secure aggregation: the server learns the sum of the clients' vectors and nothing else,
//! even when clients drop out at any stage (Bonawitz et al. 2017; SecAgg+ of Bell et al.
//! 2020 as an option).
//!
//! Each client `u` holds two X25519 key pairs (one for the channel that carries its Shamir
//! shares through the server, one for masks) and a self-mask seed `b_u`. It sends
//! `y_u = q(x_u) + PRG(b_u) + Σ_{v ∈ N(u), v > u} PRG(s_uv) − Σ_{v ∈ N(u), v < u} PRG(s_uv)`
//! mod `2^bits`, `q` the fixed-point quantization ([`Quantization`]), `s_uv` the HKDF of the
//! X25519 agreement between `u` and `v` (256 bits) and PRG the ChaCha20 keystream under it.
//! Pairwise masks cancel in the sum. For a client whose masked input arrived the server
//! rebuilds `b_u` from `t` shares; for one that dropped after sharing, it rebuilds the seed of
//! its mask key and removes its pairwise masks. A client never reveals both secrets of one
//! peer, so no individual input is exposed. Shares are sealed with ChaCha20-Poly1305 (a
//! tampered share is caught by its recipient) and committed to by their dealer (a forged share
//! revealed at unmasking is caught by the server, named, and left out). With identities,
//! key advertisements are Ed25519-signed (a server cannot substitute keys), and before any
//! share is revealed the survivors sign the survivor set they were sent (Bonawitz et al.'s
//! consistency check): a client reveals nothing unless `t` of its neighbours signed the very
//! sets it signed, so a server cannot tell some clients that `u` dropped and others that it
//! survived, and collect both of `u`'s secrets.
//!
//! Use the state machines ([`Client`], [`Server`]) over a real or simulated transport, or
//! [`secure_sum`] to run every party in process.
//!
//! Threat model, as implemented: clients and server follow the protocol but may collude up
//! to `t − 1` parties and try to learn an input (honest-but-curious), plus an active server
//! that alters or forges shares or keys, or lies to different clients about who dropped out
//! (with identities), which is detected. Not implemented: verifiable secret sharing against a
//! client that deals inconsistent shares (detected when its secret is rebuilt, via its signed
//! commitments, but the round aborts).

mod client;
mod crypto;
mod driver;
mod identity;
mod quantize;
mod server;
pub mod shamir;

use std::collections::BTreeSet;

use chacha20::ChaCha20Rng;
use rand::{RngExt, SeedableRng};

use crate::error::{invalid, PrivacyError};
pub use crate::error::{SecretKind, Stage};
pub use client::Client;
pub use driver::{secure_sum, Dropouts};
pub use identity::{Ed25519Directory, Identity, IdentityDirectory, IdentitySigner};
pub use quantize::{Quantization, Quantizer};
pub use server::Server;

/// The most clients one session may hold.
pub const MAX_CLIENTS: usize = 1 << 16;
/// The longest input vector (2^28 values: 2 GiB as the server's `u64` words).
pub const MAX_DIM: usize = 1 << 28;

/// The `meshrl-fl` rules that can run on a secure sum: only those computed from the sum of
/// the updates. Every other rule (Krum, multi-Krum, median, trimmed mean, Bulyan, geometric
/// median, centered clipping, NNM) needs the individual updates, which secure aggregation
/// hides by design.
pub const SUM_BASED_RULES: &[&str] = &["fedavg"];

/// Refuses a rule that cannot run on a secure sum, with an error that says why.
pub fn require_sum_based_rule(rule: &str) -> Result<(), PrivacyError> {
    if SUM_BASED_RULES.contains(&rule) {
        Ok(())
    } else {
        Err(invalid(
            "rule",
            format!(
                "`{rule}` needs the individual client updates, but secure aggregation reveals only their sum; use fedavg (DP-FedAvg for privacy) or turn secure aggregation off"
            ),
        ))
    }
}

/// Which pairs of clients mask each other and hold each other's shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Graph {
    /// Every pair (Bonawitz et al. 2017): `n − 1` agreements per client, shares to all.
    Complete,
    /// SecAgg+ (Bell et al. 2020): a Harary graph `H(k, n)`: the clients on a ring in a
    /// random order drawn from `seed` and the session, each linked to the `k/2` nearest on
    /// either side. `k` is even, `2 ≤ k ≤ n − 2`; each secret is split into `k + 1` shares
    /// (the owner keeps one). Cost per client `O(k·d)` instead of `O(n·d)`.
    Harary { degree: usize, seed: u64 },
}

/// One secure aggregation session.
#[derive(Clone, Debug, PartialEq)]
pub struct SecAggConfig {
    /// n: clients that may take part, with ids `0..n` (2..=[`MAX_CLIENTS`]).
    pub num_clients: usize,
    /// t: shares needed to rebuild a secret, and the fewest clients that may remain at every
    /// stage (2..= shares per secret: `n`, or `k + 1` under SecAgg+). Bonawitz et al. advise
    /// `t > 2n/3` against an active server; `t ≥ n/2 + 1` at least.
    pub threshold: usize,
    /// d: length of every input vector (1..=[`MAX_DIM`]).
    pub dim: usize,
    /// Who masks with whom.
    pub graph: Graph,
    /// Fixed-point encoding of the inputs.
    pub quantization: Quantization,
    /// The round this session aggregates: every key and nonce is derived from it, so never run
    /// two sessions with one id and the same clients' keys.
    pub session: u64,
    /// Whether key advertisements are signed with the clients' Ed25519 identities (then
    /// [`Client::new`] and [`Server::new`] need them; [`secure_sum`] makes them from its seed).
    pub sign_messages: bool,
}

impl SecAggConfig {
    /// A complete-graph session with 32-bit words, clip range 1 and signed messages.
    pub fn new(num_clients: usize, threshold: usize, dim: usize) -> Self {
        Self {
            num_clients,
            threshold,
            dim,
            graph: Graph::Complete,
            quantization: Quantization::default(),
            session: 0,
            sign_messages: true,
        }
    }

    /// Shares per secret: `n` (complete) or `k + 1` (Harary).
    pub fn shares_per_secret(&self) -> usize {
        match self.graph {
            Graph::Complete => self.num_clients,
            Graph::Harary { degree, .. } => degree + 1,
        }
    }

    /// Checks every field; errors name the field.
    pub fn validate(&self) -> Result<(), PrivacyError> {
        let n = self.num_clients;
        if !(2..=MAX_CLIENTS).contains(&n) {
            return Err(invalid(
                "num_clients",
                format!("must be in 2..={MAX_CLIENTS}, got {n}"),
            ));
        }
        if !(1..=MAX_DIM).contains(&self.dim) {
            return Err(invalid(
                "dim",
                format!("must be in 1..={MAX_DIM}, got {}", self.dim),
            ));
        }
        if let Graph::Harary { degree, .. } = self.graph {
            if degree % 2 != 0 || degree < 2 || degree + 2 > n {
                return Err(invalid(
                    "degree",
                    format!("must be even and in 2..={} for {n} clients (use the complete graph above that), got {degree}", n.saturating_sub(2)),
                ));
            }
        }
        let shares = self.shares_per_secret();
        if !(2..=shares).contains(&self.threshold) {
            return Err(invalid(
                "threshold",
                format!(
                    "must be in 2..={shares} (shares per secret), got {}",
                    self.threshold
                ),
            ));
        }
        Quantizer::new(&self.quantization, n)?;
        Ok(())
    }
}

/// The resolved graph: who holds whose shares.
#[derive(Clone, Debug)]
pub(crate) enum Topology {
    Complete {
        n: usize,
    },
    Ring {
        position: Vec<usize>,
        order: Vec<usize>,
        half: usize,
    },
}

impl Topology {
    pub(crate) fn new(config: &SecAggConfig) -> Self {
        let n = config.num_clients;
        match config.graph {
            Graph::Complete => Topology::Complete { n },
            Graph::Harary { degree, seed } => {
                let mut rng = ChaCha20Rng::seed_from_u64(seed ^ config.session.rotate_left(32));
                let mut order: Vec<usize> = (0..n).collect();
                for i in (1..n).rev() {
                    order.swap(i, rng.random_range(0..=i));
                }
                let mut position = vec![0; n];
                for (p, &u) in order.iter().enumerate() {
                    position[u] = p;
                }
                Topology::Ring {
                    position,
                    order,
                    half: degree / 2,
                }
            }
        }
    }

    /// Whether `u` and `v` mask each other (a client is linked to itself: it keeps a share).
    pub(crate) fn linked(&self, u: usize, v: usize) -> bool {
        match self {
            Topology::Complete { .. } => true,
            Topology::Ring { position, half, .. } => {
                let n = position.len();
                let d = position[u].abs_diff(position[v]);
                d.min(n - d) <= *half
            }
        }
    }

    /// The clients holding `u`'s shares, `u` included, ascending.
    pub(crate) fn holders(&self, u: usize) -> Vec<usize> {
        match self {
            Topology::Complete { n } => (0..*n).collect(),
            Topology::Ring {
                position,
                order,
                half,
            } => {
                let n = order.len();
                let p = position[u];
                let mut h: Vec<usize> = (0..=2 * half)
                    .map(|k| order[(p + n - half + k) % n])
                    .collect();
                h.sort_unstable();
                h
            }
        }
    }

    /// How many of `u`'s holders are in `alive`.
    pub(crate) fn live_holders(&self, u: usize, alive: &BTreeSet<usize>) -> usize {
        match self {
            Topology::Complete { .. } => alive.len(),
            Topology::Ring { .. } => self.holders(u).iter().filter(|h| alive.contains(h)).count(),
        }
    }
}

/// Round 0, client → server → all: a client's public keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdvertiseKeys {
    /// The sender's id.
    pub client: usize,
    /// X25519 public key of the channel that carries its shares.
    pub cipher_public_key: [u8; 32],
    /// X25519 public key of its pairwise masks.
    pub mask_public_key: [u8; 32],
    /// SHA-256 commitment to its self-mask seed.
    pub self_mask_commitment: [u8; 32],
    /// Ed25519 signature over the above and the session (when messages are signed).
    pub signature: Option<[u8; 64]>,
}

/// Round 1: one sealed pair of shares, from its owner to one holder, relayed by the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedShare {
    /// The owner (dealer).
    pub from: usize,
    /// The holder.
    pub to: usize,
    /// ChaCha20-Poly1305 ciphertext of (owner, holder, mask-key share, self-mask share).
    pub ciphertext: Vec<u8>,
}

/// Round 1: the dealer's commitments to the two shares it gave one holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareCommitment {
    /// The holder.
    pub holder: usize,
    /// SHA-256 commitment to the mask-key-seed share.
    pub mask_key: [u8; 32],
    /// SHA-256 commitment to the self-mask-seed share.
    pub self_mask: [u8; 32],
}

/// Round 1, client → server: sealed shares for each neighbour and commitments to all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareKeys {
    /// The sender's id.
    pub client: usize,
    /// One sealed share pair per live neighbour.
    pub shares: Vec<EncryptedShare>,
    /// One commitment pair per holder, the sender included.
    pub commitments: Vec<ShareCommitment>,
}

/// Round 2, client → server: the masked, quantized input, words in `Z_{2^bits}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaskedInput {
    /// The sender's id.
    pub client: usize,
    /// `d` words, each below `2^bits`.
    pub masked: Vec<u64>,
}

/// Server → clients, twice: whose input arrived and who dropped after sharing. Round 3 announces
/// the sets (`signatures` empty) for the survivors to sign; round 4 repeats them with the
/// signatures of the survivors that confirmed them, and asks for the shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnmaskRequest {
    /// Clients whose masked input arrived (their self-mask seeds are asked for), ascending.
    pub survivors: Vec<usize>,
    /// Clients that shared but sent no input (their mask-key seeds are asked for), ascending.
    pub dropped: Vec<usize>,
    /// Round 4: each confirming survivor's signature over these two sets, ascending by client.
    pub signatures: Vec<SurvivorSignature>,
}

/// Round 3, client → server: a survivor's confirmation of the announced sets, Ed25519-signed
/// when the client has an identity (`None` without one: the check then only compares sets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SurvivorSignature {
    /// The signer.
    pub client: usize,
    /// Its signature over the session, the survivors and the dropped clients.
    pub signature: Option<[u8; 64]>,
}

/// One revealed share of a peer's secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RevealedShare {
    /// Whose secret it is a share of.
    pub owner: usize,
    /// The share's value (a canonical field element).
    pub value: [u8; 32],
}

/// Round 4, client → server: the shares the request asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnmaskResponse {
    /// The sender (holder) id.
    pub client: usize,
    /// Shares of dropped clients' mask-key seeds.
    pub mask_key_shares: Vec<RevealedShare>,
    /// Shares of surviving clients' self-mask seeds.
    pub self_mask_shares: Vec<RevealedShare>,
}

/// A revealed share that did not match its dealer's commitment: left out, holder named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForgedShare {
    /// The client that revealed it.
    pub holder: usize,
    /// Whose secret it claimed to be a share of.
    pub owner: usize,
    /// Which secret.
    pub kind: SecretKind,
}

/// What a session produced.
#[derive(Clone, Debug, PartialEq)]
pub struct SecAggOutcome {
    /// The sum of the included clients' inputs (each clipped to the clip range), length `d`.
    pub sum: Vec<f32>,
    /// The clients whose inputs are in the sum, ascending.
    pub included: Vec<usize>,
    /// Every other client and the stage at which it dropped out (or never joined).
    pub dropouts: Vec<(usize, Stage)>,
    /// Forged shares detected and left out.
    pub forged_shares: Vec<ForgedShare>,
    /// Bound on `|sum − exact sum of clipped inputs|` per coordinate from quantization (input
    /// units); the f32 rounding of `sum` comes on top.
    pub max_error: f64,
}

impl SecAggOutcome {
    /// `sum / included.len()`.
    pub fn mean(&self) -> Vec<f32> {
        let k = self.included.len().max(1) as f64;
        self.sum.iter().map(|&x| (x as f64 / k) as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harary_graph_is_symmetric_and_regular() {
        let mut cfg = SecAggConfig::new(11, 3, 1);
        cfg.graph = Graph::Harary { degree: 4, seed: 5 };
        let t = Topology::new(&cfg);
        for u in 0..11 {
            let h = t.holders(u);
            assert_eq!(h.len(), 5);
            assert!(h.contains(&u));
            for v in 0..11 {
                assert_eq!(t.linked(u, v), h.contains(&v), "u {u} v {v}");
                assert_eq!(t.linked(u, v), t.linked(v, u));
            }
        }
    }

    #[test]
    fn only_sum_based_rules_run_on_a_secure_sum() {
        assert!(require_sum_based_rule("fedavg").is_ok());
        for r in [
            "krum",
            "median",
            "trimmed_mean",
            "bulyan",
            "geometric_median",
            "centered_clipping",
            "nnm",
        ] {
            let e = require_sum_based_rule(r).unwrap_err().to_string();
            assert!(e.contains(r) && e.contains("only their sum"), "{e}");
        }
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = |c: SecAggConfig| c.validate().unwrap_err().to_string();
        assert!(e(SecAggConfig::new(1, 2, 4)).contains("num_clients"));
        assert!(e(SecAggConfig::new(5, 6, 4)).contains("threshold"));
        assert!(e(SecAggConfig::new(5, 1, 4)).contains("threshold"));
        assert!(e(SecAggConfig::new(5, 3, 0)).contains("dim"));
        let mut c = SecAggConfig::new(10, 3, 4);
        c.graph = Graph::Harary { degree: 3, seed: 0 };
        assert!(e(c.clone()).contains("degree"));
        c.graph = Graph::Harary { degree: 4, seed: 0 };
        c.threshold = 6;
        assert!(e(c).contains("threshold"));
    }
}
