//! Digital twin of a wireless mesh network.
//!
//! A [`Twin`] holds node positions, candidate links with their radio physics
//! ([`radio`]), per-node queues and trust scores, and the neighbour tables a routing agent
//! chooses from. [`Twin::tick`] advances churn, link degradation, mobility, queues and trust;
//! [`Twin::transmit`] forwards a packet one hop. Everything is seeded: the same config and seed
//! give the same run, bit for bit. No ML dependency.

mod config;
mod error;
pub mod radio;
pub mod topology;
mod topology_file;
mod twin;

pub use config::{
    DynamicsConfig, RadioConfig, TopologyConfig, TopologyKind, TrafficConfig, TrustConfig,
    TwinConfig,
};
pub use error::TwinError;
pub use topology::{splitmix64, Layout, LinkSpec, LoadReport};
pub use twin::{
    Hop, LinkMetrics, LocalTraffic, LossCause, Overheard, Twin, NO_NEIGHBOR, QUARANTINED_TRUST,
    UNREACHABLE,
};
