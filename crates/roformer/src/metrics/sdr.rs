//! Global SDR and SI-SDR as MSST's `utils/metrics.py` defines them (`sdr`, `si_sdr`): one value
//! for the whole track, summing over all channels and samples.

use super::{check_same_shape, MetricsError};

const EPS: f64 = 1e-8;

/// Global ("utterance") SDR in dB: `10 log10((Σ s² + 1e-8) / (Σ (s - ŝ)² + 1e-8))` over all
/// channels and samples (MSST `sdr`; the SDX'23 / MVSep leaderboard convention).
pub fn sdr(reference: &[Vec<f32>], estimate: &[Vec<f32>]) -> Result<f64, MetricsError> {
    check_same_shape(reference, estimate)?;
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (r, e) in reference.iter().zip(estimate) {
        for (&r, &e) in r.iter().zip(e) {
            let (r, e) = (f64::from(r), f64::from(e));
            num += r * r;
            den += (r - e) * (r - e);
        }
    }
    Ok(10.0 * ((num + EPS) / (den + EPS)).log10())
}

/// Scale-invariant SDR in dB as MSST's `si_sdr` computes it for one `(channels, samples)` track:
/// `α = Σ(ŝ·s + ε) / Σ(s² + ε)` (ε added per element), then
/// `10 log10(Σ(α s)² / (Σ(α s - ŝ)² + ε) + ε)`, with ε = 1e-8.
pub fn si_sdr(reference: &[Vec<f32>], estimate: &[Vec<f32>]) -> Result<f64, MetricsError> {
    check_same_shape(reference, estimate)?;
    let count = reference.iter().map(Vec::len).sum::<usize>() as f64;
    let (mut cross, mut energy) = (0.0f64, 0.0f64);
    for (r, e) in reference.iter().zip(estimate) {
        for (&r, &e) in r.iter().zip(e) {
            let (r, e) = (f64::from(r), f64::from(e));
            cross += r * e;
            energy += r * r;
        }
    }
    let scale = (cross + count * EPS) / (energy + count * EPS);
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (r, e) in reference.iter().zip(estimate) {
        for (&r, &e) in r.iter().zip(e) {
            let s = f64::from(r) * scale;
            num += s * s;
            den += (s - f64::from(e)) * (s - f64::from(e));
        }
    }
    Ok(10.0 * (num / (den + EPS) + EPS).log10())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let r = vec![vec![1.0f32, -1.0, 1.0, -1.0]];
        let e = vec![vec![1.1f32, -0.9, 1.0, -1.0]];
        // Σs² = 4, Σ(s-ŝ)² = 0.02 (in f32 inputs).
        let d: f64 = (1.1f32 as f64 - 1.0).powi(2) + (1.0 - 0.9f32 as f64).powi(2);
        let want = 10.0 * ((4.0 + 1e-8) / (d + 1e-8)).log10();
        assert!((sdr(&r, &e).unwrap() - want).abs() < 1e-12);
        // A scaled estimate is perfect for SI-SDR (up to ε).
        let e2 = vec![vec![0.5f32, -0.5, 0.5, -0.5]];
        assert!(si_sdr(&r, &e2).unwrap() > 70.0);
        assert!(sdr(&r, &[vec![0.0f32; 3]]).is_err());
    }
}
