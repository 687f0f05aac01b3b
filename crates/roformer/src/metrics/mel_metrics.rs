//! MSST's `bleedless` and `fullness` (`utils/metrics.py: bleed_full`).
//!
//! Both signals get a magnitude STFT (`torch.stft`: n_fft 4096, hop 1024, periodic Hann window,
//! `center=True` with zero padding, one-sided), then a 512-band mel projection of the magnitudes
//! with `librosa.filters.mel(sr, n_fft=4096, n_mels=512)` (Slaney mel scale and area
//! normalisation, float32 weights), then torchaudio's `AmplitudeToDB(stype="magnitude",
//! top_db=80)`: `20 log10(max(x, 1e-10))`, floored at 80 dB below the maximum over all channels,
//! bands and frames of that signal. With `d = dB(estimate) - dB(reference)` over every
//! channel, band and frame:
//! `bleedless = 100 / (1 + mean(d[d > 0]))` and `fullness = 100 / (1 + |mean(d[d < 0])|)`
//! (a mean over no elements counts as 0). Higher is better for both.
//!
//! MSST always builds the filterbank for 44.1 kHz; here it is built for the signal's own rate,
//! which is the same thing for 44.1 kHz audio.

use rayon::prelude::*;
use realfft::num_complex::Complex64;
use realfft::RealFftPlanner;

use super::{check_same_shape, MetricsError};
use crate::dsp::stft::hann_periodic;
use crate::model::mel_bands::mel_filterbank;

const N_FFT: usize = 4096;
const HOP: usize = 1024;
const N_MELS: usize = 512;
const AMIN: f64 = 1e-10;
const TOP_DB: f64 = 80.0;

/// MSST's two mel-spectrogram scores (0..100, higher is better).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BleedFull {
    /// Penalises estimate energy above the reference's (bleed from other stems).
    pub bleedless: f64,
    /// Penalises estimate energy below the reference's (missing parts of the stem).
    pub fullness: f64,
}

/// A mel filter as its first non-zero bin and weights.
struct MelFilter {
    first: usize,
    weights: Vec<f64>,
}

/// `bleedless` and `fullness` of `estimate` against `reference` (planar, same shape).
pub fn bleedless_fullness(
    reference: &[Vec<f32>],
    estimate: &[Vec<f32>],
    sample_rate: u32,
) -> Result<BleedFull, MetricsError> {
    check_same_shape(reference, estimate)?;
    let filters: Vec<MelFilter> = mel_filterbank(f64::from(sample_rate), N_FFT, N_MELS)
        .into_iter()
        .map(|w| {
            let first = w.iter().position(|&x| x != 0.0).unwrap_or(0);
            let last = w.iter().rposition(|&x| x != 0.0).map_or(0, |i| i + 1);
            MelFilter {
                first,
                weights: w[first..last.max(first)]
                    .iter()
                    .map(|&x| f64::from(x))
                    .collect(),
            }
        })
        .collect();
    let window: Vec<f64> = hann_periodic(N_FFT).into_iter().map(f64::from).collect();
    let (ref_db, est_db) = rayon::join(
        || mel_db(reference, &filters, &window),
        || mel_db(estimate, &filters, &window),
    );
    let (ref_db, est_db) = (ref_db?, est_db?);
    let (mut pos_sum, mut pos_n, mut neg_sum, mut neg_n) = (0.0f64, 0usize, 0.0f64, 0usize);
    for (r, e) in ref_db.iter().zip(&est_db) {
        let d = e - r;
        if d > 0.0 {
            pos_sum += d;
            pos_n += 1;
        } else if d < 0.0 {
            neg_sum += d;
            neg_n += 1;
        }
    }
    let mean = |s: f64, n: usize| if n == 0 { 0.0 } else { s / n as f64 };
    Ok(BleedFull {
        bleedless: 100.0 / (mean(pos_sum, pos_n) + 1.0),
        fullness: 100.0 / (-mean(neg_sum, neg_n) + 1.0),
    })
}

/// The floored dB mel spectrogram of one planar signal, all values in one vector
/// (`[channel][frame][band]`).
fn mel_db(
    signal: &[Vec<f32>],
    filters: &[MelFilter],
    window: &[f64],
) -> Result<Vec<f64>, MetricsError> {
    let len = signal.first().map_or(0, Vec::len);
    let frames = 1 + len / HOP;
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(N_FFT);
    let pad = N_FFT / 2;
    let mut db = vec![0.0f64; signal.len() * frames * N_MELS];
    db.par_chunks_mut(N_MELS).enumerate().try_for_each_init(
        || {
            (
                fft.make_input_vec(),
                fft.make_output_vec(),
                fft.make_scratch_vec(),
                vec![0.0f64; N_FFT / 2 + 1],
            )
        },
        |(input, spec, scratch, mag), (index, out)| {
            let (c, t) = (index / frames, index % frames);
            let x = &signal[c];
            // Frame t covers padded samples t·hop .. t·hop + n_fft; the signal starts at `pad`.
            for (i, (d, w)) in input.iter_mut().zip(window).enumerate() {
                let n = (t * HOP + i).wrapping_sub(pad);
                *d = if n < len { f64::from(x[n]) * w } else { 0.0 };
            }
            fft.process_with_scratch(input, spec, scratch)
                .map_err(|e| MetricsError::Fft(e.to_string()))?;
            for (m, s) in mag.iter_mut().zip(spec.iter()) {
                *m = Complex64::norm(*s);
            }
            for (o, f) in out.iter_mut().zip(filters) {
                let v: f64 = f
                    .weights
                    .iter()
                    .zip(&mag[f.first..])
                    .map(|(w, m)| w * m)
                    .sum();
                *o = 20.0 * v.max(AMIN).log10();
            }
            Ok(())
        },
    )?;
    let floor = db.iter().copied().fold(f64::NEG_INFINITY, f64::max) - TOP_DB;
    for v in &mut db {
        *v = v.max(floor);
    }
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_signals_are_perfect() {
        let x: Vec<f32> = (0..20000)
            .map(|i| ((i as f32) * 0.05).sin() * 0.3)
            .collect();
        let s = vec![x.clone(), x];
        let r = bleedless_fullness(&s, &s, 44100).unwrap();
        assert_eq!(r.bleedless, 100.0);
        assert_eq!(r.fullness, 100.0);
        // Louder estimate: bleed only.
        let louder: Vec<Vec<f32>> = s
            .iter()
            .map(|c| c.iter().map(|v| v * 2.0).collect())
            .collect();
        let r = bleedless_fullness(&s, &louder, 44100).unwrap();
        assert!(r.bleedless < 100.0 && r.fullness == 100.0, "{r:?}");
    }
}
