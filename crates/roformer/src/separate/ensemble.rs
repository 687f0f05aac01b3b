//! Combining the same stem from several models, as MSST's `ensemble.py` (`average_waveforms`):
//! - `avg_wave`: `sum(w_i * x_i) / sum(w)` per sample;
//! - `median_wave`: the per-sample median (mean of the two middle values for an even count);
//! - `min_wave` / `max_wave`: per sample, the value with the smallest / largest magnitude, sign kept;
//! - `*_fft`: the same on the complex STFT (librosa: n_fft 2048, hop 1024, periodic Hann,
//!   `center=True` with zero padding), then the inverse STFT to the input length. `avg_fft` is the
//!   weighted complex mean; `min_fft` / `max_fft` keep the whole complex value (magnitude and
//!   phase) of the input with the smallest / largest magnitude; `median_fft` is numpy's median of
//!   complex numbers, which orders them by real part, then imaginary part.
//!
//! Only the `avg_*` algorithms use the weights, as in MSST. On ties, the first input wins (numpy's
//! `argmin`/`argmax`). A single input is returned unchanged.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use rayon::prelude::*;
use realfft::num_complex::Complex32;

use crate::dsp::{Spectrogram, Stft};
use crate::error::{Error, Result};

/// MSST ensemble.py's STFT: `librosa.stft(wave, n_fft=2048, hop_length=1024)`.
pub const ENSEMBLE_N_FFT: usize = 2048;
pub const ENSEMBLE_HOP: usize = 1024;

/// How an ensemble combines the same stem of several models (MSST's `ensemble.py`): per
/// sample of the waveform, or per bin of the complex spectrogram (then inverted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// Weighted mean of the waveforms.
    #[default]
    AvgWave,
    /// Median of the waveforms, sample by sample.
    MedianWave,
    /// The sample of smallest magnitude.
    MinWave,
    /// The sample of largest magnitude.
    MaxWave,
    /// Weighted mean of the spectrograms.
    AvgFft,
    /// Median of the spectrograms, bin by bin.
    MedianFft,
    /// The bin of smallest magnitude.
    MinFft,
    /// The bin of largest magnitude.
    MaxFft,
}

impl Algorithm {
    /// Every algorithm, in the order the CLI lists them.
    pub const ALL: [Algorithm; 8] = [
        Algorithm::AvgWave,
        Algorithm::MedianWave,
        Algorithm::MinWave,
        Algorithm::MaxWave,
        Algorithm::AvgFft,
        Algorithm::MedianFft,
        Algorithm::MinFft,
        Algorithm::MaxFft,
    ];

    /// MSST's name for it (`--type` of ensemble.py).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::AvgWave => "avg_wave",
            Algorithm::MedianWave => "median_wave",
            Algorithm::MinWave => "min_wave",
            Algorithm::MaxWave => "max_wave",
            Algorithm::AvgFft => "avg_fft",
            Algorithm::MedianFft => "median_fft",
            Algorithm::MinFft => "min_fft",
            Algorithm::MaxFft => "max_fft",
        }
    }

    /// Whether the weights matter (only the averages use them).
    pub fn uses_weights(self) -> bool {
        matches!(self, Algorithm::AvgWave | Algorithm::AvgFft)
    }

    fn reduction(self) -> Reduction {
        match self {
            Algorithm::AvgWave | Algorithm::AvgFft => Reduction::Mean,
            Algorithm::MedianWave | Algorithm::MedianFft => Reduction::Select(Selection::Median),
            Algorithm::MinWave | Algorithm::MinFft => Reduction::Select(Selection::Min),
            Algorithm::MaxWave | Algorithm::MaxFft => Reduction::Select(Selection::Max),
        }
    }

    fn is_fft(self) -> bool {
        matches!(
            self,
            Algorithm::AvgFft | Algorithm::MedianFft | Algorithm::MinFft | Algorithm::MaxFft
        )
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
                Error::Unsupported(format!(
                    "unknown ensemble algorithm `{s}` (one of {})",
                    names.join(", ")
                ))
            })
    }
}

#[derive(Clone, Copy)]
enum Reduction {
    /// The weighted mean ([`WeightedMean`]).
    Mean,
    /// One value per element, chosen among the inputs' (or the mean of the middle two).
    Select(Selection),
}

#[derive(Clone, Copy)]
enum Selection {
    Median,
    Min,
    Max,
}

/// The values one reduction needs: real samples or complex STFT bins.
pub(crate) trait Value: Copy {
    fn zero() -> Self;
    fn add(self, other: Self) -> Self;
    fn scale(self, w: f32) -> Self;
    /// `self / d`, computed in f64 and rounded (numpy divides float32 by a float64 scalar so).
    fn div_f64(self, d: f64) -> Self;
    fn half(self) -> Self;
    fn magnitude(self) -> f32;
    /// numpy's sort order (complex: real part, then imaginary part).
    fn order(&self, other: &Self) -> Ordering;
}

impl Value for f32 {
    fn zero() -> Self {
        0.0
    }
    fn add(self, other: Self) -> Self {
        self + other
    }
    fn scale(self, w: f32) -> Self {
        self * w
    }
    fn div_f64(self, d: f64) -> Self {
        (self as f64 / d) as f32
    }
    fn half(self) -> Self {
        self / 2.0
    }
    fn magnitude(self) -> f32 {
        self.abs()
    }
    fn order(&self, other: &Self) -> Ordering {
        self.total_cmp(other)
    }
}

impl Value for Complex32 {
    fn zero() -> Self {
        Complex32::new(0.0, 0.0)
    }
    fn add(self, other: Self) -> Self {
        self + other
    }
    fn scale(self, w: f32) -> Self {
        self * w
    }
    fn div_f64(self, d: f64) -> Self {
        Complex32::new(self.re.div_f64(d), self.im.div_f64(d))
    }
    fn half(self) -> Self {
        Complex32::new(self.re / 2.0, self.im / 2.0)
    }
    fn magnitude(self) -> f32 {
        self.norm()
    }
    fn order(&self, other: &Self) -> Ordering {
        self.re
            .total_cmp(&other.re)
            .then(self.im.total_cmp(&other.im))
    }
}

/// `Σ w_i·x_i / Σ w_i` element by element over signals added one at a time, as numpy computes
/// it: `x_i * w_i` in float32, summed in input order, then divided by `Σ w` in f64. Callers that
/// add signals as they come (a bag of models) need not hold them all.
pub(crate) struct WeightedMean<T> {
    sum: Vec<T>,
    weight_sum: f64,
}

impl<T: Value> WeightedMean<T> {
    pub(crate) fn new(len: usize) -> Self {
        Self {
            sum: vec![T::zero(); len],
            weight_sum: 0.0,
        }
    }

    /// Adds `w · x`; `x` has the length given to [`new`](Self::new).
    pub(crate) fn add(&mut self, x: &[T], w: f64) {
        debug_assert_eq!(x.len(), self.sum.len());
        let scale = w as f32;
        for (s, &v) in self.sum.iter_mut().zip(x) {
            *s = s.add(v.scale(scale));
        }
        self.weight_sum += w;
    }

    /// The mean; the weights added must not sum to zero.
    pub(crate) fn finish(self) -> Vec<T> {
        let d = self.weight_sum;
        self.sum.into_iter().map(|s| s.div_f64(d)).collect()
    }
}

/// Reduces `values` (one per input, reordered in place) to one value.
fn select<T: Value>(values: &mut [T], how: Selection) -> T {
    match how {
        Selection::Median => {
            values.sort_by(T::order);
            let n = values.len();
            if n % 2 == 1 {
                values[n / 2]
            } else {
                values[n / 2 - 1].add(values[n / 2]).half()
            }
        }
        Selection::Min | Selection::Max => {
            let mut best = 0;
            let mut best_mag = values[0].magnitude();
            for (i, v) in values.iter().enumerate().skip(1) {
                let m = v.magnitude();
                let better = match how {
                    Selection::Min => m < best_mag,
                    _ => m > best_mag,
                };
                if better {
                    best = i;
                    best_mag = m;
                }
            }
            values[best]
        }
    }
}

/// Reduces equally long `inputs` element by element (`weights`, one per input, for the mean).
fn reduce_all<T: Value>(inputs: &[&[T]], weights: &[f64], how: Reduction) -> Vec<T> {
    let len = inputs[0].len();
    let how = match how {
        Reduction::Mean => {
            let mut mean = WeightedMean::new(len);
            for (x, &w) in inputs.iter().zip(weights) {
                mean.add(x, w);
            }
            return mean.finish();
        }
        Reduction::Select(how) => how,
    };
    let mut scratch = Vec::with_capacity(inputs.len());
    (0..len)
        .map(|k| {
            scratch.clear();
            scratch.extend(inputs.iter().map(|x| x[k]));
            select(&mut scratch, how)
        })
        .collect()
}

/// librosa's `stft(center=True, pad_mode="constant")`: zero-pad by n_fft/2 ourselves, then drop
/// the frames our (reflect-padding, torch-style) STFT adds in front of them.
fn stft_zero_padded(stft: &Stft, x: &[f32]) -> Result<Spectrogram> {
    let pad = stft.n_fft() / 2;
    debug_assert_eq!(pad % stft.hop(), 0);
    let mut padded = vec![0.0f32; x.len() + 2 * pad];
    padded[pad..pad + x.len()].copy_from_slice(x);
    let full = stft.forward(&padded)?;
    let skip = pad / stft.hop();
    let frames = stft.frames_for(x.len());
    let bins = full.bins;
    Ok(Spectrogram {
        bins,
        frames,
        data: full.data[skip * bins..(skip + frames) * bins].to_vec(),
    })
}

/// Combines `inputs` (each `[channel][sample]`, all the same shape) into one `[channel][sample]`
/// signal. `weights` (one per input, default all 1) are used by the `avg_*` algorithms.
pub fn ensemble(
    inputs: &[Vec<Vec<f32>>],
    weights: Option<&[f64]>,
    algorithm: Algorithm,
) -> Result<Vec<Vec<f32>>> {
    let first = inputs
        .first()
        .ok_or_else(|| Error::Ensemble("ensemble of no signals".into()))?;
    let channels = first.len();
    let len = first.first().map_or(0, Vec::len);
    for (i, x) in inputs.iter().enumerate() {
        if x.len() != channels || x.iter().any(|c| c.len() != len) {
            return Err(Error::Ensemble(format!(
                "ensemble input {} has a different shape than the first one ({channels} channel(s) of {len} samples)",
                i + 1
            )));
        }
    }
    let weights: Vec<f64> = match weights {
        Some(w) if w.len() != inputs.len() => {
            return Err(Error::Ensemble(format!(
                "{} ensemble weights for {} signals",
                w.len(),
                inputs.len()
            )))
        }
        Some(w) => w.to_vec(),
        None => vec![1.0; inputs.len()],
    };
    if weights.iter().any(|w| !w.is_finite() || *w < 0.0) || weights.iter().sum::<f64>() <= 0.0 {
        return Err(Error::Ensemble(format!(
            "ensemble weights must be non-negative and not all zero, got {weights:?}"
        )));
    }
    if inputs.len() == 1 || len == 0 {
        return Ok(first.clone());
    }
    let how = algorithm.reduction();

    if !algorithm.is_fft() {
        return Ok((0..channels)
            .map(|c| {
                let chans: Vec<&[f32]> = inputs.iter().map(|x| x[c].as_slice()).collect();
                reduce_all(&chans, &weights, how)
            })
            .collect());
    }

    let stft = Stft::new(ENSEMBLE_N_FFT, ENSEMBLE_HOP, ENSEMBLE_N_FFT)?;
    (0..channels)
        .into_par_iter()
        .map(|c| {
            let specs = inputs
                .iter()
                .map(|x| stft_zero_padded(&stft, &x[c]))
                .collect::<Result<Vec<_>>>()?;
            let views: Vec<&[Complex32]> = specs.iter().map(|s| s.data.as_slice()).collect();
            let data = reduce_all(&views, &weights, how);
            let combined = Spectrogram {
                bins: specs[0].bins,
                frames: specs[0].frames,
                data,
            };
            stft.inverse(&combined, len)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::weights::{load_state_dict, StateDict};

    fn tensor(r: &StateDict, key: &str) -> (Vec<usize>, Vec<f32>) {
        let t = r.get(key).unwrap_or_else(|| panic!("{key} missing"));
        let shape = t.dims().to_vec();
        (shape, t.flatten_all().unwrap().to_vec1().unwrap())
    }

    fn snr_db(reference: &[f32], ours: &[f32]) -> f64 {
        assert_eq!(reference.len(), ours.len());
        let s: f64 = reference.iter().map(|&r| (r as f64).powi(2)).sum();
        let n: f64 = reference
            .iter()
            .zip(ours)
            .map(|(&r, &o)| (r as f64 - o as f64).powi(2))
            .sum();
        10.0 * (s / n.max(1e-30)).log10()
    }

    /// Every algorithm against MSST's `average_waveforms` (tools/gen_tta_ensemble_fixtures.py).
    #[test]
    fn every_algorithm_matches_msst() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/ensemble/reference.safetensors");
        let r = load_state_dict(&path).unwrap();
        for n in [3, 4] {
            let (shape, flat) = tensor(&r, &format!("inputs{n}"));
            let (channels, len) = (shape[1], shape[2]);
            let inputs: Vec<Vec<Vec<f32>>> = flat
                .chunks(channels * len)
                .map(|x| x.chunks(len).map(<[f32]>::to_vec).collect())
                .collect();
            let weights: Vec<f64> = tensor(&r, &format!("weights{n}"))
                .1
                .into_iter()
                .map(f64::from)
                .collect();
            for alg in Algorithm::ALL {
                let ours = ensemble(&inputs, Some(&weights), alg).unwrap().concat();
                let (_, theirs) = tensor(&r, &format!("{}_{n}", alg.name()));
                let snr = snr_db(&theirs, &ours);
                println!("{n} inputs, {alg}: {snr:.1} dB");
                match alg {
                    Algorithm::MedianWave | Algorithm::MinWave | Algorithm::MaxWave => {
                        assert_eq!(ours, theirs, "{n} inputs, {alg}: not exact")
                    }
                    _ => assert!(snr >= 60.0, "{n} inputs, {alg}: {snr:.1} dB"),
                }
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.name().parse::<Algorithm>().unwrap(), alg);
        }
        assert!("mean".parse::<Algorithm>().is_err());
    }

    #[test]
    fn bad_inputs_are_errors() {
        let a = vec![vec![1.0f32, 2.0], vec![3.0, 4.0]];
        let short = vec![vec![1.0f32], vec![3.0]];
        assert!(ensemble(&[], None, Algorithm::AvgWave).is_err());
        assert!(ensemble(&[a.clone(), short], None, Algorithm::AvgWave).is_err());
        let two = [a.clone(), a.clone()];
        assert!(ensemble(&two, Some(&[1.0]), Algorithm::AvgWave).is_err());
        assert!(ensemble(&two, Some(&[0.0, 0.0]), Algorithm::AvgWave).is_err());
        assert!(ensemble(&two, Some(&[-1.0, 2.0]), Algorithm::AvgWave).is_err());
        assert_eq!(
            ensemble(&two, Some(&[1.0, 3.0]), Algorithm::AvgWave).unwrap(),
            a
        );
        assert_eq!(
            ensemble(std::slice::from_ref(&a), None, Algorithm::MaxFft).unwrap(),
            a
        );
    }

    #[test]
    fn wave_selections_keep_the_sign_and_prefer_the_first_on_ties() {
        let x = |v: f32| vec![vec![v]];
        let inputs = [x(-3.0), x(2.0), x(3.0), x(-1.0)];
        let one = |alg| ensemble(&inputs, None, alg).unwrap()[0][0];
        assert_eq!(one(Algorithm::MaxWave), -3.0);
        assert_eq!(one(Algorithm::MinWave), -1.0);
        assert_eq!(one(Algorithm::MedianWave), 0.5);
        assert_eq!(
            ensemble(&inputs, Some(&[1.0, 1.0, 0.0, 2.0]), Algorithm::AvgWave).unwrap()[0][0],
            -0.75
        );
    }
}
