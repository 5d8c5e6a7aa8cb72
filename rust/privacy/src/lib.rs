//! Privacy for federated routers: a node's routing experience reveals its traffic, its updates
//! must not.
//!
//! - [`dp`]: DP-FedAvg: clipping, Gaussian noise on the server, on each client (local DP) or
//!   split among clients (distributed DP), fixed or adaptive clip norm, and the L2
//!   sensitivity of robust rules' outputs.
//! - [`accountant`]: the RDP accountant of the Poisson-subsampled Gaussian mechanism, with
//!   Opacus's names and `dp-accounting`'s numbers.
//! - [`secagg`]: secure aggregation (Bonawitz et al. 2017, SecAgg+ as an option): the server
//!   learns only the sum, with dropouts at any stage.
//!
//! Updates are flat `f32` vectors, as in `meshrl-fl`. No ML dependency; the cryptography comes
//! from maintained crates. Everything random takes a seed, so runs are reproducible.
//! `docs/privacy.md` says which aggregation rules compose with DP and with secure
//! aggregation, and how.

pub mod accountant;
pub mod dp;
mod error;
pub mod secagg;

pub use accountant::{noise_multiplier_for, RdpAccountant};
pub use dp::{clip_l2, Clipping, DpConfig, DpFedAvg, NoisePlacement};
pub use error::{PrivacyError, SecretKind, Stage};
pub use secagg::{secure_sum, Dropouts, SecAggConfig, SecAggOutcome};
