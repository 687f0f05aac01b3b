//! Training losses on reconstructed audio, each returned with its gradient: the RoFormers' own loss
//! (time-domain L1 + multi-resolution complex STFT L1, as MSST's `forward(x, target)` computes it)
//! and MSST's default `masked_loss` (a quantile-trimmed MSE).
//!
//! Signals are passed as one `Vec` per (batch, stem, channel), in that order, all of one length.

use std::str::FromStr;

use rayon::prelude::*;
use realfft::num_complex::Complex32;

use crate::audio::AudioError;
use crate::config::MsstConfig;
use crate::dsp::{Spectrogram, Stft};
use crate::error::{Error, Result};

/// Which loss drives training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LossKind {
    /// The model's own loss (MSST's default for the RoFormers).
    #[default]
    Model,
    /// MSST's `masked_loss` (its `--use_standard_loss` default).
    Masked,
}

impl FromStr for LossKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "model" => Ok(Self::Model),
            "masked" | "masked_loss" => Ok(Self::Masked),
            other => Err(Error::Unsupported(format!(
                "loss `{other}`: use `model` (L1 + multi-resolution STFT) or `masked`"
            ))),
        }
    }
}

impl std::fmt::Display for LossKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Model => "model",
            Self::Masked => "masked",
        })
    }
}

/// A loss with the settings its config gives it.
#[derive(Debug, Clone)]
pub enum Loss {
    Model {
        /// One STFT per resolution (`n_fft = max(window, model n_fft)`, hop, window length).
        resolutions: Vec<Stft>,
        /// `multi_stft_resolution_loss_weight`.
        weight: f64,
        /// `multi_stft_normalized` scales each STFT by `n_fft^-1/2`.
        normalized: bool,
    },
    Masked {
        /// `training.q`: entries at or above this quantile of the errors are dropped.
        q: f64,
        /// `training.coarse_loss_clip`: trim whole (stem, item) errors rather than samples.
        coarse: bool,
    },
}

impl Loss {
    pub fn from_config(config: &MsstConfig, kind: LossKind) -> Result<Self> {
        let m = &config.model;
        Ok(match kind {
            LossKind::Model => Self::Model {
                resolutions: m
                    .multi_stft_resolutions_window_sizes
                    .iter()
                    .map(|&w| Stft::new(w.max(m.stft_n_fft), m.multi_stft_hop_size, w))
                    .collect::<Result<_>>()?,
                weight: m.multi_stft_resolution_loss_weight,
                normalized: m.multi_stft_normalized,
            },
            LossKind::Masked => Self::Masked {
                q: config.training.q,
                coarse: config.training.coarse_loss_clip,
            },
        })
    }

    /// The loss of `estimate` against `target` (`stems` signals per batch item, `channels` per
    /// stem) and its gradient with respect to every estimate sample.
    pub fn value_and_grad(
        &self,
        estimate: &[Vec<f32>],
        target: &[Vec<f32>],
        stems: usize,
        channels: usize,
    ) -> Result<(f64, Vec<Vec<f32>>)> {
        if estimate.len() != target.len()
            || estimate.iter().zip(target).any(|(e, t)| e.len() != t.len())
        {
            return Err(Error::Audio(AudioError::Other(
                "the loss needs estimates and targets of equal shapes".into(),
            )));
        }
        match self {
            Self::Model {
                resolutions,
                weight,
                normalized,
            } => {
                let (mut loss, mut grad) = l1(estimate, target);
                for stft in resolutions {
                    let scale = if *normalized {
                        (stft.n_fft() as f64).powf(-0.5)
                    } else {
                        1.0
                    };
                    let (l, g) = stft_l1(stft, estimate, target, weight * scale)?;
                    loss += weight * scale * l;
                    for (acc, g) in grad.iter_mut().zip(g) {
                        acc.iter_mut().zip(g).for_each(|(a, g)| *a += g);
                    }
                }
                Ok((loss, grad))
            }
            Self::Masked { q, coarse } => Ok(masked_mse(
                estimate, target, stems, channels, *q as f32, *coarse,
            )),
        }
    }
}

/// `F.l1_loss`: the mean absolute difference, and its gradient `sign(e - t) / count`.
fn l1(estimate: &[Vec<f32>], target: &[Vec<f32>]) -> (f64, Vec<Vec<f32>>) {
    let count: usize = estimate.iter().map(Vec::len).sum();
    let inv = 1.0 / count.max(1) as f32;
    let sum: f64 = estimate
        .par_iter()
        .zip(target)
        .map(|(e, t)| {
            e.iter()
                .zip(t)
                .map(|(e, t)| f64::from((e - t).abs()))
                .sum::<f64>()
        })
        .sum();
    let grad = estimate
        .par_iter()
        .zip(target)
        .map(|(e, t)| {
            e.iter()
                .zip(t)
                .map(|(e, t)| {
                    let d = e - t;
                    // torch's sign(0) = 0.
                    if d > 0.0 {
                        inv
                    } else if d < 0.0 {
                        -inv
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    (sum / count.max(1) as f64, grad)
}

/// `F.l1_loss` between the complex STFTs of estimate and target: the mean modulus of their
/// difference over every signal, bin and frame. The gradient is scaled by `grad_scale` (the
/// weight the caller applies to the value).
fn stft_l1(
    stft: &Stft,
    estimate: &[Vec<f32>],
    target: &[Vec<f32>],
    grad_scale: f64,
) -> Result<(f64, Vec<Vec<f32>>)> {
    let len = estimate.first().map_or(0, Vec::len);
    let count = estimate.len() * stft.bins() * stft.frames_for(len);
    let g = (grad_scale / count.max(1) as f64) as f32;
    let parts = estimate
        .par_iter()
        .zip(target)
        .map(|(e, t)| {
            let diff = difference(&stft.forward(e)?, &stft.forward(t)?);
            let mut sum = 0.0f64;
            let data = diff
                .data
                .iter()
                .map(|d| {
                    let modulus = d.re.hypot(d.im);
                    sum += f64::from(modulus);
                    // d|z|/dz = z/|z|; torch takes 0 where z = 0.
                    if modulus > 0.0 {
                        d * (g / modulus)
                    } else {
                        Complex32::new(0.0, 0.0)
                    }
                })
                .collect();
            let grad = Spectrogram { data, ..diff };
            Ok((sum, stft.forward_adjoint(&grad, len)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let sum: f64 = parts.iter().map(|(s, _)| s).sum();
    Ok((
        sum / count.max(1) as f64,
        parts.into_iter().map(|(_, g)| g).collect(),
    ))
}

fn difference(a: &Spectrogram, b: &Spectrogram) -> Spectrogram {
    Spectrogram {
        data: a.data.iter().zip(&b.data).map(|(a, b)| a - b).collect(),
        ..a.clone()
    }
}

/// MSST's `masked_loss(y_, y, q, coarse)`: the squared error per sample, averaged per (stem, item)
/// when `coarse`; per stem, the entries below the `q`-quantile (over items, or over every sample of
/// the stem when not coarse) are kept and the mean over all entries is taken (dropped ones count
/// as zero). The quantile is a constant for the gradient, as torch detaches it.
fn masked_mse(
    estimate: &[Vec<f32>],
    target: &[Vec<f32>],
    stems: usize,
    channels: usize,
    q: f32,
    coarse: bool,
) -> (f64, Vec<Vec<f32>>) {
    let len = estimate.first().map_or(0, Vec::len);
    let batch = estimate.len() / (stems * channels).max(1);
    let signal = |b: usize, n: usize, c: usize| (b * stems + n) * channels + c;
    let sq = |i: usize, k: usize| {
        let d = estimate[i][k] - target[i][k];
        d * d
    };
    let mut grad: Vec<Vec<f32>> = estimate.iter().map(|e| vec![0.0; e.len()]).collect();
    let mut total = 0.0f64;
    let entries;
    if coarse {
        entries = stems * batch;
        let per_entry = (channels * len) as f32;
        for n in 0..stems {
            // torch averages the squared errors of each (stem, item) in f32.
            let errors: Vec<f32> = (0..batch)
                .map(|b| {
                    let sum: f64 = (0..channels)
                        .flat_map(|c| (0..len).map(move |k| (signal(b, n, c), k)))
                        .map(|(i, k)| f64::from(sq(i, k)))
                        .sum();
                    (sum / f64::from(per_entry)) as f32
                })
                .collect();
            let limit = quantile(&errors, q);
            for (b, &e) in errors.iter().enumerate() {
                if e < limit {
                    total += f64::from(e);
                    let scale = 2.0 / (per_entry * entries as f32);
                    for c in 0..channels {
                        let i = signal(b, n, c);
                        for k in 0..len {
                            grad[i][k] = scale * (estimate[i][k] - target[i][k]);
                        }
                    }
                }
            }
        }
    } else {
        entries = stems * batch * channels * len;
        let scale = 2.0 / entries as f32;
        for n in 0..stems {
            let rows: Vec<usize> = (0..batch)
                .flat_map(|b| (0..channels).map(move |c| signal(b, n, c)))
                .collect();
            let errors: Vec<f32> = rows
                .iter()
                .flat_map(|&i| (0..len).map(move |k| (i, k)))
                .map(|(i, k)| sq(i, k))
                .collect();
            let limit = quantile(&errors, q);
            for &i in &rows {
                for k in 0..len {
                    let e = sq(i, k);
                    if e < limit {
                        total += f64::from(e);
                        grad[i][k] = scale * (estimate[i][k] - target[i][k]);
                    }
                }
            }
        }
    }
    (total / entries.max(1) as f64, grad)
}

/// `torch.quantile(values, q, interpolation='linear')`.
fn quantile(values: &[f32], q: f32) -> f32 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    if sorted.is_empty() {
        return f32::NAN;
    }
    let rank = q * (sorted.len() - 1) as f32;
    let lo = rank.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let w = rank - lo as f32;
    let (a, b) = (sorted[lo], sorted[hi]);
    // torch.lerp's two-sided formula.
    if w < 0.5 {
        a + w * (b - a)
    } else {
        b - (b - a) * (1.0 - w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_like_torch() {
        // torch.quantile(tensor([3., 1., 2., 10.]), 0.95) = 8.95 (rank 2.85 between 3 and 10).
        assert!((quantile(&[3.0, 1.0, 2.0, 10.0], 0.95) - 8.95).abs() < 1e-5);
        assert_eq!(quantile(&[5.0], 0.5), 5.0);
        assert_eq!(quantile(&[1.0, 2.0], 0.0), 1.0);
    }

    type LossFn<'a> = &'a dyn Fn(&[Vec<f32>], &[Vec<f32>]) -> (f64, Vec<Vec<f32>>);

    /// A loss's gradient against central differences of the loss itself.
    fn check_gradient(loss: LossFn<'_>, signals: usize, len: usize) {
        let mut rng = crate::weights::SplitMix64::new(3);
        let mut signal = || -> Vec<f32> {
            (0..len)
                .map(|_| (rng.next_f64() * 2.0 - 1.0) as f32 * 0.5)
                .collect()
        };
        let n = signals;
        let estimate: Vec<Vec<f32>> = (0..n).map(|_| signal()).collect();
        let target: Vec<Vec<f32>> = (0..n).map(|_| signal()).collect();
        let (_, grad) = loss(&estimate, &target);
        let h = 1e-2f32;
        for (i, k) in [(0, 0), (1, len / 2), (n - 1, len - 1), (n / 2, 7)] {
            let mut plus = estimate.clone();
            plus[i][k] += h;
            let mut minus = estimate.clone();
            minus[i][k] -= h;
            let (lp, lm) = (loss(&plus, &target).0, loss(&minus, &target).0);
            let numeric = (lp - lm) / (2.0 * f64::from(h));
            let analytic = f64::from(grad[i][k]);
            assert!(
                (numeric - analytic).abs() <= 2e-3 * analytic.abs().max(1e-4),
                "signal {i} sample {k}: analytic {analytic:e}, numeric {numeric:e}"
            );
        }
    }

    #[test]
    fn masked_loss_gradient_matches_finite_differences() {
        for coarse in [true, false] {
            let loss = Loss::Masked { q: 0.95, coarse };
            // 3 items x 2 stems x 2 channels.
            check_gradient(&|e, t| loss.value_and_grad(e, t, 2, 2).unwrap(), 12, 64);
        }
    }
}
