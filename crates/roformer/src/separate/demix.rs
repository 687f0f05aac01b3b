//! MSST's `demix` for generic models, reproduced rule by rule:
//! - chunk = `inference.chunk_size` or `audio.chunk_size`, step = chunk / num_overlap;
//! - the track is reflect-padded by `border = chunk - step` on both sides when it is longer than
//!   `2 * border`;
//! - a short final chunk is reflect-padded when longer than half a chunk, else zero-padded;
//! - each chunk output is weighted by a window with linear fades of `chunk / 10` samples, without
//!   the fade-in on the first chunk and without the fade-out on the last one (as MSST does with
//!   `batch_size = 1`; its batched path picks those per batch, which we do not copy);
//! - the result is `sum(window * out) / sum(window)`, 0 where nothing was added.
//!
//! HT Demucs runs in MSST's "demucs" mode ([`ChunkMode::Demucs`]): chunk = `samplerate *
//! segment`, the same step, but no border padding, no fades (a plain average of the chunks
//! that overlap) and every short final chunk zero-padded.
//!
//! The padded track is never materialised, and outputs are accumulated only over the unpadded
//! range, so memory is the input plus the output plus one counter track. [`super::stream`] does
//! the same over a track read block by block, in memory bounded by the chunking, with
//! bit-identical results; this whole-track form stays as its reference.

use super::Separator;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemixOptions {
    pub chunk_size: usize,
    pub num_overlap: usize,
    pub batch_size: usize,
    pub mode: ChunkMode,
}

/// Which of MSST's two `demix` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChunkMode {
    /// Every model but HT Demucs: reflect-padded borders, faded windows.
    #[default]
    Generic,
    /// HT Demucs: no border padding, flat windows, zero-padded final chunks.
    Demucs,
}

/// Reported after every model call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub chunks_done: usize,
    pub chunks_total: usize,
}

/// `torch.linspace(start, end, steps)` in f32, with torch's symmetric evaluation.
fn linspace(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let half = steps / 2;
    (0..steps)
        .map(|i| {
            if i < half {
                start + step * i as f32
            } else {
                end - step * (steps - i - 1) as f32
            }
        })
        .collect()
}

/// MSST `_getWindowingArray` with the first/last-chunk adjustments.
pub(super) fn chunk_window(chunk: usize, fade: usize, first: bool, last: bool) -> Vec<f32> {
    let mut w = vec![1.0f32; chunk];
    if fade > 0 {
        w[chunk - fade..].copy_from_slice(&linspace(1.0, 0.0, fade));
        w[..fade].copy_from_slice(&linspace(0.0, 1.0, fade));
        if first {
            w[..fade].fill(1.0);
        } else if last {
            w[chunk - fade..].fill(1.0);
        }
    }
    w
}

/// Index into the original track for position `p` of the reflect-padded track.
pub(super) fn reflect_index(p: isize, len: usize) -> usize {
    let n = len as isize;
    let i = if p < 0 {
        -p
    } else if p >= n {
        2 * (n - 1) - p
    } else {
        p
    };
    i as usize
}

/// MSST's chunking of a track of `len` samples: hop between chunks, fade length, and the reflect
/// padding at each end (`chunk - step` when the track is longer than twice that, else none).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkPlan {
    pub step: usize,
    pub fade: usize,
    pub offset: usize,
    /// Whether a short final chunk longer than half a chunk is reflect-padded (else zeros).
    pub reflect_tail: bool,
}

impl ChunkPlan {
    pub(crate) fn new(options: &DemixOptions, len: usize) -> Result<Self> {
        let DemixOptions {
            chunk_size: chunk,
            num_overlap,
            batch_size,
            mode,
        } = *options;
        if len == 0 {
            return Err(Error::EmptyAudio);
        }
        if num_overlap == 0 || batch_size == 0 || chunk < num_overlap {
            return Err(Error::InvalidChunking(format!(
                "chunk {chunk}, overlap {num_overlap}, batch {batch_size}"
            )));
        }
        let step = chunk / num_overlap;
        if mode == ChunkMode::Demucs {
            return Ok(Self {
                step,
                fade: 0,
                offset: 0,
                reflect_tail: false,
            });
        }
        let border = chunk - step;
        let padded = len > 2 * border && border > 0;
        Ok(Self {
            step,
            fade: chunk / 10,
            offset: if padded { border } else { 0 },
            reflect_tail: true,
        })
    }

    /// Pads the `seg` samples just appended to `input` (from `base`) to a whole chunk: with a
    /// reflection of the segment itself when that is the rule and it is longer than half a
    /// chunk, else with zeros.
    pub(crate) fn pad_tail(&self, input: &mut Vec<f32>, base: usize, seg: usize, chunk: usize) {
        if self.reflect_tail && seg > chunk / 2 {
            for k in 0..chunk - seg {
                let v = input[base + seg - 2 - k];
                input.push(v);
            }
        } else {
            input.resize(base + chunk, 0.0);
        }
    }
}

/// Separates `mix` (`[channel][sample]`) into `[stem][channel][sample]`.
pub fn demix(
    model: &dyn Separator,
    mix: &[Vec<f32>],
    options: &DemixOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<Vec<Vec<f32>>>> {
    let channels = model.channels();
    let stems = model.num_stems();
    let DemixOptions {
        chunk_size: chunk,
        batch_size,
        ..
    } = *options;
    if mix.len() != channels {
        return Err(Error::ChannelMismatch {
            expected: channels,
            found: mix.len(),
        });
    }
    let len = mix[0].len();
    if mix.iter().any(|c| c.len() != len) {
        return Err(Error::EmptyAudio);
    }
    let plan = ChunkPlan::new(options, len)?;
    let ChunkPlan {
        step, fade, offset, ..
    } = plan;
    let total = len + 2 * offset;

    let starts: Vec<usize> = (0..total).step_by(step).collect();
    let chunks_total = starts.len();
    let mut result = vec![vec![vec![0.0f32; len]; channels]; stems];
    let mut counter = vec![0.0f32; len];

    // Sample `p` of channel `c` in the (virtually) padded track.
    let sample = |c: usize, p: usize| mix[c][reflect_index(p as isize - offset as isize, len)];

    let mut done = 0;
    for batch in starts.chunks(batch_size) {
        let mut input = Vec::with_capacity(batch.len() * channels * chunk);
        for &start in batch {
            let seg = chunk.min(total - start);
            for c in 0..channels {
                let base = input.len();
                input.extend((start..start + seg).map(|p| sample(c, p)));
                plan.pad_tail(&mut input, base, seg, chunk);
            }
        }
        let out = model.separate_batch(&input, batch.len(), chunk)?;
        for (j, &start) in batch.iter().enumerate() {
            let seg = chunk.min(total - start);
            let window = chunk_window(chunk, fade, start == 0, start + step >= total);
            // Only the part inside the unpadded track matters.
            let lo = offset.saturating_sub(start);
            let hi = seg.min((offset + len).saturating_sub(start));
            for k in lo..hi {
                counter[start + k - offset] += window[k];
            }
            for (n, stem) in result.iter_mut().enumerate() {
                for (c, dst) in stem.iter_mut().enumerate() {
                    let src = &out[((j * stems + n) * channels + c) * chunk..][..chunk];
                    for k in lo..hi {
                        dst[start + k - offset] += src[k] * window[k];
                    }
                }
            }
        }
        done += batch.len();
        progress(Progress {
            chunks_done: done,
            chunks_total,
        });
    }

    for stem in &mut result {
        for ch in stem.iter_mut() {
            for (x, &w) in ch.iter_mut().zip(&counter) {
                let v = *x / w;
                *x = if v.is_nan() { 0.0 } else { v };
            }
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_torch_values() {
        // torch.linspace(0, 1, 5) and (1, 0, 4), exact in binary floating point.
        assert_eq!(linspace(0.0, 1.0, 5), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(linspace(1.0, 0.0, 3), vec![1.0, 0.5, 0.0]);
    }

    #[test]
    fn window_matches_msst_docstring_example() {
        // MSST `_getWindowingArray(10, 3)` docstring: [0, .5, 1, 1, 1, 1, 1, 1, .5, 0].
        let w = chunk_window(10, 3, false, false);
        assert_eq!(w, vec![0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.0]);
        assert_eq!(chunk_window(10, 3, true, false)[..3], [1.0, 1.0, 1.0]);
        assert_eq!(chunk_window(10, 3, false, true)[7..], [1.0, 1.0, 1.0]);
    }

    #[test]
    fn reflect_index_matches_numpy_reflect() {
        // np.pad([0,1,2,3,4], 2, mode="reflect") == [2,1,0,1,2,3,4,3,2]
        let got: Vec<usize> = (-2..7).map(|p| reflect_index(p, 5)).collect();
        assert_eq!(got, vec![2, 1, 0, 1, 2, 3, 4, 3, 2]);
    }

    /// A separator whose single stem is the input itself: overlap-add must give back the track.
    struct Identity;
    impl Separator for Identity {
        fn channels(&self) -> usize {
            2
        }
        fn num_stems(&self) -> usize {
            1
        }
        fn separate_batch(&self, audio: &[f32], _batch: usize, _len: usize) -> Result<Vec<f32>> {
            Ok(audio.to_vec())
        }
    }

    #[test]
    fn identity_model_reconstructs_the_track_at_any_batch_size() {
        let len = 1000;
        let mix: Vec<Vec<f32>> = (0..2)
            .map(|c| {
                (0..len)
                    .map(|i| ((i * 7 + c * 3) % 13) as f32 - 6.0)
                    .collect()
            })
            .collect();
        for batch_size in [1, 2, 5] {
            let opts = DemixOptions {
                chunk_size: 120,
                num_overlap: 4,
                batch_size,
                mode: Default::default(),
            };
            let out = demix(&Identity, &mix, &opts, &mut |_| {}).unwrap();
            for (c, ch) in out[0].iter().enumerate() {
                for (i, (&a, &b)) in ch.iter().zip(&mix[c]).enumerate() {
                    assert!(
                        (a - b).abs() < 1e-4,
                        "batch {batch_size} ch {c} sample {i}: {a} vs {b}"
                    );
                }
            }
        }
    }
}
