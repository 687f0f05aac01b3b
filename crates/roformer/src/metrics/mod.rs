//! Separation quality metrics, in the two conventions the literature mixes up, each computed as
//! its reference implementation does:
//!
//! - [`sdr`]: the global ("utterance") SDR of the SDX challenges, MSST and MVSep, and MSST's
//!   SI-SDR: one number over the whole track, all channels and samples together.
//! - [`bss_eval`]: BSSEval v4 as museval 0.4.1 computes it (the papers' tables): time-invariant
//!   512-tap distortion filters fitted on the whole track with all its stems, then SDR, ISR, SIR
//!   and SAR per 1 s window; the track's value is the median over the windows that are not NaN.
//! - [`mel_metrics`]: MSST's `bleedless` and `fullness` (512-band mel spectrograms in dB).
//!
//! Signals are planar, `[channel][sample]`, like the rest of the crate. Every metric computes in
//! `f64` and uses all cores (rayon). No terminal code.

pub mod bss_eval;
mod correlation;
mod fft_size;
mod least_squares;
mod lu;
pub mod mel_metrics;
pub mod sdr;

pub use bss_eval::{bss_eval_v4, BssEvalOptions, BssFrames, BssScores};
pub use mel_metrics::{bleedless_fullness, BleedFull};
pub use sdr::{sdr, si_sdr};

/// Why a metric could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Signals that must have the same channel count and length do not.
    #[error("{0}")]
    Shape(String),
    /// museval refuses a source that is silent over the whole track (every sample of the
    /// channel sum is 0): the decomposition would be undetermined.
    #[error("the {which} of source {index} is silent over the whole track (BSSEval needs every reference and estimate to be non-silent)")]
    Silent { which: &'static str, index: usize },
    /// The distortion-filter system is singular and its least-squares fallback failed too
    /// (non-finite values, or an SVD that did not converge).
    #[error("the BSSEval distortion-filter system is singular")]
    Singular,
    #[error("FFT failed: {0}")]
    Fft(String),
}

/// Checks that two planar signals have the same, non-zero, channel count and equal lengths.
pub(crate) fn check_same_shape(
    reference: &[Vec<f32>],
    estimate: &[Vec<f32>],
) -> Result<(), MetricsError> {
    if reference.is_empty() || reference.len() != estimate.len() {
        return Err(MetricsError::Shape(format!(
            "the reference has {} channel(s), the estimate {}",
            reference.len(),
            estimate.len()
        )));
    }
    let n = reference[0].len();
    for (c, (r, e)) in reference.iter().zip(estimate).enumerate() {
        if r.len() != n || e.len() != n {
            return Err(MetricsError::Shape(format!(
                "channel {c}: the reference has {} samples, the estimate {} (expected {n})",
                r.len(),
                e.len()
            )));
        }
    }
    Ok(())
}

/// `numpy.nanmedian`: the median of the values that are not NaN (the mean of the two middle ones
/// for an even count); NaN when there are none.
pub fn nanmedian(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// The mean of the values that are not NaN; NaN when there are none.
pub fn nanmean(values: &[f64]) -> f64 {
    let (sum, n) = values
        .iter()
        .filter(|x| !x.is_nan())
        .fold((0.0, 0usize), |(s, n), &x| (s + x, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_aggregates() {
        assert_eq!(nanmedian(&[3.0, f64::NAN, 1.0, 2.0]), 2.0);
        assert_eq!(nanmedian(&[4.0, 1.0, f64::NAN, 2.0, 3.0]), 2.5);
        assert!(nanmedian(&[f64::NAN]).is_nan());
        assert!(nanmedian(&[]).is_nan());
        assert_eq!(nanmean(&[1.0, f64::NAN, 2.0]), 1.5);
        assert!(nanmean(&[f64::NAN]).is_nan());
    }
}
