//! Whole-track separation: MSST's chunked overlap-add (`demix`) around any chunk separator.

pub mod demix;
pub mod ensemble;
pub mod tta;

pub use demix::{demix, DemixOptions, Progress};
pub use ensemble::{ensemble, Algorithm as EnsembleAlgorithm};
pub use tta::demix_tta;

use crate::error::Result;

/// Anything that separates fixed-length chunks: `[batch][channel][sample]` in,
/// `[batch][stem][channel][sample]` out.
pub trait Separator: Sync {
    fn channels(&self) -> usize;
    fn num_stems(&self) -> usize;
    fn separate_batch(&self, audio: &[f32], batch: usize, len: usize) -> Result<Vec<f32>>;
}

/// MSST `inference.normalize`: statistics of the mono mix, applied to every channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    pub mean: f32,
    pub std: f32,
}

impl Normalization {
    /// Mean and (population) standard deviation of the channel-averaged signal.
    pub fn measure(channels: &[Vec<f32>]) -> Self {
        let n = channels.first().map_or(0, Vec::len);
        if n == 0 || channels.is_empty() {
            return Self {
                mean: 0.0,
                std: 1.0,
            };
        }
        let c = channels.len() as f64;
        let mono = |i: usize| channels.iter().map(|ch| ch[i] as f64).sum::<f64>() / c;
        let mean = (0..n).map(mono).sum::<f64>() / n as f64;
        let var = (0..n).map(|i| (mono(i) - mean).powi(2)).sum::<f64>() / n as f64;
        let std = var.sqrt();
        Self {
            mean: mean as f32,
            // A silent track would divide by zero; leave it unscaled.
            std: if std > 0.0 { std as f32 } else { 1.0 },
        }
    }

    pub fn apply(&self, channels: &mut [Vec<f32>]) {
        for x in channels.iter_mut().flatten() {
            *x = (*x - self.mean) / self.std;
        }
    }

    pub fn invert(&self, channels: &mut [Vec<f32>]) {
        for x in channels.iter_mut().flatten() {
            *x = *x * self.std + self.mean;
        }
    }
}

/// Separates a whole track (planar channels) into `[stem][channel][sample]`, with MSST's optional
/// normalisation around the model.
pub fn separate_track(
    model: &dyn Separator,
    mix: &[Vec<f32>],
    options: &DemixOptions,
    normalize: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<Vec<Vec<f32>>>> {
    separate_track_with_tta(model, mix, options, normalize, false, progress)
}

/// [`separate_track`], optionally with MSST's test-time augmentation ([`demix_tta`]) inside the
/// normalisation, as MSST's inference.py does.
pub fn separate_track_with_tta(
    model: &dyn Separator,
    mix: &[Vec<f32>],
    options: &DemixOptions,
    normalize: bool,
    tta: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<Vec<Vec<f32>>>> {
    let run = |x: &[Vec<f32>], progress: &mut dyn FnMut(Progress)| {
        if tta {
            demix_tta(model, x, options, progress)
        } else {
            demix(model, x, options, progress)
        }
    };
    let norm = normalize.then(|| Normalization::measure(mix));
    let mut stems = match &norm {
        Some(n) => {
            let mut normalized = mix.to_vec();
            n.apply(&mut normalized);
            run(&normalized, progress)?
        }
        None => run(mix, progress)?,
    };
    if let Some(n) = &norm {
        for stem in &mut stems {
            n.invert(stem);
        }
    }
    Ok(stems)
}
