//! Link physics: path loss, frame loss, PHY rate and per-hop delay.
//!
//! Pure functions of the radio config, so baselines and tests can reuse them.

use crate::RadioConfig;

/// Lowest and highest RSSI the twin reports, dBm.
pub const RSSI_MIN_DBM: f64 = -100.0;
pub const RSSI_MAX_DBM: f64 = 0.0;

/// 802.11n, 20 MHz, one spatial stream, long guard interval: (minimum RSSI in dBm, PHY rate in
/// Mbps) for MCS 7 down to MCS 0. Below MCS 0's sensitivity the link falls back to 1 Mbps.
pub const MCS_TABLE: [(f64, f64); 8] = [
    (-64.0, 65.0),
    (-65.0, 58.5),
    (-66.0, 52.0),
    (-70.0, 39.0),
    (-74.0, 26.0),
    (-77.0, 19.5),
    (-79.0, 13.0),
    (-82.0, 6.5),
];
/// Rate below the lowest MCS's sensitivity (DSSS basic rate), Mbps.
pub const FALLBACK_RATE_MBPS: f64 = 1.0;
/// Highest PHY rate of the table, Mbps; used to normalize bandwidth.
pub const MAX_RATE_MBPS: f64 = 65.0;
/// Speed of radio propagation, metres per millisecond.
const LIGHT_M_PER_MS: f64 = 299_792.458;

/// RSSI at `distance_m` by the log-distance model, dBm:
/// `tx_power - (PL(1 m) + 10 n log10(d / 1 m)) - shadowing`, clamped to [-100, 0].
pub fn rssi_dbm(radio: &RadioConfig, distance_m: f64, shadowing_db: f64) -> f64 {
    let d = distance_m.max(1.0);
    let path_loss = radio.reference_loss_db + 10.0 * radio.path_loss_exponent * d.log10();
    (radio.tx_power_dbm - path_loss - shadowing_db).clamp(RSSI_MIN_DBM, RSSI_MAX_DBM)
}

/// Probability that one frame is lost at this RSSI (0..1): a logistic curve over the SNR,
/// `1 / (1 + exp((snr - snr_half_loss) / slope))`, smooth and decreasing in RSSI.
pub fn frame_loss(radio: &RadioConfig, rssi_dbm: f64) -> f64 {
    let snr = rssi_dbm - radio.noise_floor_dbm;
    1.0 / (1.0 + ((snr - radio.snr_half_loss_db) / radio.snr_slope_db).exp())
}

/// The RSSI at which `frame_loss` equals `loss`, dBm: the inverse of the loss curve, used to
/// give measured links (batman-adv TQ) an RSSI consistent with their quality.
pub fn rssi_for_loss(radio: &RadioConfig, loss: f64) -> f64 {
    let p = loss.clamp(1e-6, 1.0 - 1e-6);
    let snr = radio.snr_half_loss_db + radio.snr_slope_db * ((1.0 - p) / p).ln();
    (radio.noise_floor_dbm + snr).clamp(RSSI_MIN_DBM, RSSI_MAX_DBM)
}

/// PHY rate at this RSSI from `MCS_TABLE`, Mbps.
pub fn phy_rate_mbps(rssi_dbm: f64) -> f64 {
    MCS_TABLE
        .iter()
        .find(|(sensitivity, _)| rssi_dbm >= *sensitivity)
        .map_or(FALLBACK_RATE_MBPS, |&(_, rate)| rate)
}

/// Time to send one packet once at `rate_mbps`, ms.
pub fn transmission_ms(radio: &RadioConfig, rate_mbps: f64) -> f64 {
    radio.packet_bytes * 8.0 / (rate_mbps * 1_000.0)
}

/// Propagation delay over `distance_m`, ms.
pub fn propagation_ms(distance_m: f64) -> f64 {
    distance_m / LIGHT_M_PER_MS
}

/// Expected transmissions per delivered frame (ETX) with loss `loss`, capped at the attempts
/// the MAC makes (`1 + mac_retries`).
pub fn expected_attempts(radio: &RadioConfig, loss: f64) -> f64 {
    let cap = 1.0 + radio.mac_retries as f64;
    if loss >= 1.0 {
        cap
    } else {
        (1.0 / (1.0 - loss)).min(cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rate_table_is_monotone() {
        assert_eq!(phy_rate_mbps(-30.0), 65.0);
        assert_eq!(phy_rate_mbps(-82.0), 6.5);
        assert_eq!(phy_rate_mbps(-90.0), FALLBACK_RATE_MBPS);
        for w in MCS_TABLE.windows(2) {
            assert!(w[0].0 > w[1].0 && w[0].1 > w[1].1);
        }
    }

    #[test]
    fn known_values() {
        let r = RadioConfig::default();
        // 100 m, n = 3.3: 40 + 66 = 106 dB path loss -> -86 dBm.
        assert!((rssi_dbm(&r, 100.0, 0.0) + 86.0).abs() < 1e-9);
        // Half the frames are lost at the reference SNR.
        let half = r.noise_floor_dbm + r.snr_half_loss_db;
        assert!((frame_loss(&r, half) - 0.5).abs() < 1e-12);
        // 1500 bytes at 6.5 Mbps: 1.846 ms.
        assert!((transmission_ms(&r, 6.5) - 1.846_153_8).abs() < 1e-6);
    }

    proptest! {
        #[test]
        fn loss_is_a_decreasing_probability(a in -100.0f64..0.0, b in -100.0f64..0.0) {
            let r = RadioConfig::default();
            let (la, lb) = (frame_loss(&r, a), frame_loss(&r, b));
            prop_assert!((0.0..=1.0).contains(&la));
            if a < b { prop_assert!(la >= lb); }
        }

        #[test]
        fn rssi_for_loss_inverts_frame_loss(p in 0.001f64..0.999) {
            let r = RadioConfig::default();
            let rssi = rssi_for_loss(&r, p);
            if rssi > RSSI_MIN_DBM && rssi < RSSI_MAX_DBM {
                prop_assert!((frame_loss(&r, rssi) - p).abs() < 1e-9);
            }
        }

        #[test]
        fn rssi_decreases_with_distance(d1 in 1.0f64..5000.0, d2 in 1.0f64..5000.0) {
            let r = RadioConfig::default();
            if d1 < d2 { prop_assert!(rssi_dbm(&r, d1, 0.0) >= rssi_dbm(&r, d2, 0.0)); }
        }
    }
}
