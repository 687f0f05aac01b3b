//! Test-time augmentation as MSST's `apply_tta` (inference.py `--use_tta`):
//! the track is separated three times, as is, with its channels reversed and with its polarity
//! inverted; the second result gets its channels reversed back, the third is subtracted, and the
//! sum is divided by 3: `(y(x) + rev(y(rev(x))) - y(-x)) / 3`, per stem.
//!
//! It runs inside the normalisation (MSST normalises once, then augments), and the instrumental
//! is computed from its result.

use std::cell::Cell;

use super::{demix, DemixOptions, Progress, Separator};
use crate::error::Result;

/// MSST's augmentations, applied and undone around `demix`; `[channel][sample]` in,
/// `[stem][channel][sample]` out. Progress counts the chunks of all three passes.
pub fn demix_tta(
    model: &dyn Separator,
    mix: &[Vec<f32>],
    options: &DemixOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<Vec<Vec<f32>>>> {
    const PASSES: usize = 3;
    let pass = Cell::new(0usize);
    let mut report = |p: Progress| {
        progress(Progress {
            chunks_done: pass.get() * p.chunks_total + p.chunks_done,
            chunks_total: PASSES * p.chunks_total,
        })
    };

    let mut result = demix(model, mix, options, &mut report)?;

    // `mix[::-1]`: the channels in reverse order; the output's channels are reversed back.
    pass.set(1);
    let reversed: Vec<Vec<f32>> = mix.iter().rev().cloned().collect();
    let separated = demix(model, &reversed, options, &mut report)?;
    drop(reversed);
    for (acc, stem) in result.iter_mut().zip(separated) {
        for (a, s) in acc.iter_mut().zip(stem.into_iter().rev()) {
            a.iter_mut().zip(s).for_each(|(a, s)| *a += s);
        }
    }

    // `-1.0 * mix`: the output is subtracted.
    pass.set(2);
    let inverted: Vec<Vec<f32>> = mix.iter().map(|c| c.iter().map(|x| -x).collect()).collect();
    let separated = demix(model, &inverted, options, &mut report)?;
    drop(inverted);
    for (acc, stem) in result.iter_mut().zip(separated) {
        for (a, s) in acc.iter_mut().zip(stem) {
            a.iter_mut().zip(s).for_each(|(a, s)| *a -= s);
        }
    }

    for x in result.iter_mut().flatten().flatten() {
        *x /= PASSES as f32;
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One stem: `left^2 + 2 * right`, `right` on both channels; neither symmetric under a channel
    /// swap nor under a sign flip, so every term of the formula shows.
    struct Skewed;
    impl Separator for Skewed {
        fn channels(&self) -> usize {
            2
        }
        fn num_stems(&self) -> usize {
            1
        }
        fn separate_batch(&self, audio: &[f32], batch: usize, len: usize) -> Result<Vec<f32>> {
            let mut out = Vec::with_capacity(audio.len());
            for b in 0..batch {
                let (l, r) = audio[b * 2 * len..(b + 1) * 2 * len].split_at(len);
                out.extend(l.iter().zip(r).map(|(l, r)| l * l + 2.0 * r));
                out.extend_from_slice(r);
            }
            Ok(out)
        }
    }

    #[test]
    fn averages_the_undone_augmentations_like_msst() {
        let len = 500;
        let mix: Vec<Vec<f32>> = (0..2)
            .map(|c| {
                (0..len)
                    .map(|i| ((i * 5 + c * 11) % 17) as f32 / 8.0 - 1.0)
                    .collect()
            })
            .collect();
        let opts = DemixOptions {
            chunk_size: 100,
            num_overlap: 2,
            batch_size: 3,
            mode: Default::default(),
        };
        let mut last = None;
        let out = demix_tta(&Skewed, &mix, &opts, &mut |p| last = Some(p)).unwrap();
        let last = last.unwrap();
        assert_eq!(last.chunks_done, last.chunks_total);
        for i in 0..len {
            let (l, r) = (mix[0][i], mix[1][i]);
            // y(x) = [l^2 + 2r, r]; rev(y(rev x)) = [l, r^2 + 2l]; y(-x) = [l^2 - 2r, -r]
            let want = [(4.0 * r + l) / 3.0, (r * r + 2.0 * l + 2.0 * r) / 3.0];
            for c in 0..2 {
                assert!((out[0][c][i] - want[c]).abs() < 1e-4, "ch {c} sample {i}");
            }
        }
    }
}
