//! A replica's settings.

/// Which proposals a backup accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acceptance {
    /// Only values submitted to this replica (it checked the aggregation itself).
    Submitted,
    /// Any value whose round equals the sequence number.
    Any,
}

/// A replica's settings; times are in ms of the driver's clock.
#[derive(Clone, Debug)]
pub struct Config {
    /// K: a checkpoint every K sequence numbers (default 4).
    pub checkpoint_interval: u64,
    /// L: the high watermark is the last stable checkpoint + L (default 8, a multiple of K).
    pub watermark_window: u64,
    /// The view-change timeout; it doubles with each view change without progress (default
    /// 100 ms).
    pub timeout_ms: u64,
    /// The cap of the doubling timeout (default 6,400 ms).
    pub max_timeout_ms: u64,
    /// Which proposals a backup accepts (default [`Acceptance::Submitted`]).
    pub acceptance: Acceptance,
    /// Executed decisions kept to answer replicas that fell behind (default 1,024).
    pub retain_decisions: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            checkpoint_interval: 4,
            watermark_window: 8,
            timeout_ms: 100,
            max_timeout_ms: 6_400,
            acceptance: Acceptance::Submitted,
            retain_decisions: 1_024,
        }
    }
}
