//! Separation: MSST's chunked overlap-add (`demix`) around any chunk separator, on a whole track
//! in memory ([`separate_track_with_tta`]) or streamed block by block with the same results
//! ([`separate_stream`]).

pub mod demix;
pub mod ensemble;
pub mod stream;
pub mod tta;

pub use demix::{demix, ChunkMode, DemixOptions, Progress};
pub use ensemble::{ensemble, Algorithm as EnsembleAlgorithm};
pub use stream::{separate_stream, FrameSource, StemSink, StreamOptions};
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
        let mut mean = MeanMeter::new(channels.len());
        mean.add(channels);
        let mut spread = mean.spread();
        spread.add(channels);
        spread.finish()
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

/// Sum of no `f64`s, whatever the standard library starts its float sums with: a running sum
/// started from it, then added to term by term, is bit for bit `iter.sum::<f64>()`.
fn empty_sum() -> f64 {
    std::iter::empty::<f64>().sum()
}

/// `sample i` of the mono mix, exactly as [`Normalization::measure`] computes it.
fn mono<C: AsRef<[f32]>>(block: &[C], i: usize) -> f64 {
    block.iter().map(|ch| ch.as_ref()[i] as f64).sum::<f64>() / block.len() as f64
}

/// First pass of [`Normalization::measure`] over a track given block by block (in order; each
/// block planar, all channels of the same length): the mean of the mono mix. Its arithmetic is
/// that of `measure` on the whole track, term for term, so the result is bit-identical.
#[derive(Debug, Clone)]
pub struct MeanMeter {
    channels: usize,
    frames: usize,
    sum: f64,
}

impl MeanMeter {
    pub fn new(channels: usize) -> Self {
        Self {
            channels,
            frames: 0,
            sum: empty_sum(),
        }
    }

    pub fn add<C: AsRef<[f32]>>(&mut self, block: &[C]) {
        if self.channels == 0 {
            return;
        }
        let n = block.first().map_or(0, |c| c.as_ref().len());
        for i in 0..n {
            self.sum += mono(block, i);
        }
        self.frames += n;
    }

    /// Frames seen so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Ends the first pass; the second one goes over the same samples again.
    pub fn spread(self) -> SpreadMeter {
        let mean = if self.frames == 0 {
            0.0
        } else {
            self.sum / self.frames as f64
        };
        SpreadMeter {
            channels: self.channels,
            frames: self.frames,
            mean,
            sum: empty_sum(),
        }
    }
}

/// Second pass of [`Normalization::measure`]: the spread of the mono mix around the mean of the
/// first pass ([`MeanMeter::spread`]), over the same blocks again.
#[derive(Debug, Clone)]
pub struct SpreadMeter {
    channels: usize,
    frames: usize,
    mean: f64,
    sum: f64,
}

impl SpreadMeter {
    pub fn add<C: AsRef<[f32]>>(&mut self, block: &[C]) {
        if self.channels == 0 {
            return;
        }
        let n = block.first().map_or(0, |c| c.as_ref().len());
        for i in 0..n {
            self.sum += (mono(block, i) - self.mean).powi(2);
        }
    }

    pub fn finish(self) -> Normalization {
        if self.frames == 0 || self.channels == 0 {
            return Normalization {
                mean: 0.0,
                std: 1.0,
            };
        }
        let var = self.sum / self.frames as f64;
        let std = var.sqrt();
        Normalization {
            mean: self.mean as f32,
            // A silent track would divide by zero; leave it unscaled.
            std: if std > 0.0 { std as f32 } else { 1.0 },
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `Normalization::measure` as it was written before the meters: the reference.
    fn measure_whole(channels: &[Vec<f32>]) -> Normalization {
        let n = channels[0].len();
        let c = channels.len() as f64;
        let mono = |i: usize| channels.iter().map(|ch| ch[i] as f64).sum::<f64>() / c;
        let mean = (0..n).map(mono).sum::<f64>() / n as f64;
        let var = (0..n).map(|i| (mono(i) - mean).powi(2)).sum::<f64>() / n as f64;
        let std = var.sqrt();
        Normalization {
            mean: mean as f32,
            std: if std > 0.0 { std as f32 } else { 1.0 },
        }
    }

    #[test]
    fn meters_over_blocks_equal_the_whole_track_measure() {
        for channels in [1usize, 2, 3] {
            let track: Vec<Vec<f32>> = (0..channels)
                .map(|c| {
                    (0..10_007)
                        .map(|i| ((i * 7919 + c * 104_729) % 65_536) as f32 / 40_000.0 - 0.8)
                        .collect()
                })
                .collect();
            let want = measure_whole(&track);
            assert_eq!(Normalization::measure(&track), want);
            for block in [1usize, 100, 4096] {
                let blocks = || {
                    (0..track[0].len()).step_by(block).map(|start| {
                        let end = (start + block).min(track[0].len());
                        track.iter().map(|c| &c[start..end]).collect::<Vec<_>>()
                    })
                };
                let mut mean = MeanMeter::new(channels);
                blocks().for_each(|b| mean.add(&b));
                assert_eq!(mean.frames(), track[0].len());
                let mut spread = mean.spread();
                blocks().for_each(|b| spread.add(&b));
                let got = spread.finish();
                assert_eq!(
                    (got.mean.to_bits(), got.std.to_bits()),
                    (want.mean.to_bits(), want.std.to_bits()),
                    "{channels} channel(s), blocks of {block}"
                );
            }
        }
        // Silence and emptiness leave the track unscaled.
        let silent = vec![vec![0.0f32; 10]; 2];
        assert_eq!(Normalization::measure(&silent).std, 1.0);
        let empty: Vec<Vec<f32>> = vec![Vec::new(); 2];
        assert_eq!(
            Normalization::measure(&empty),
            Normalization {
                mean: 0.0,
                std: 1.0
            }
        );
    }
}
