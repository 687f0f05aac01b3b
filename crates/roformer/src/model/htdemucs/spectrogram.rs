//! HT Demucs' own STFT framing (`HTDemucs._spec` / `_ispec` over demucs' `spectro` /
//! `ispectro`): hop `nfft / 4`, the signal reflect-padded so that a length divisible by the hop
//! gives exactly `length / hop` frames, the Nyquist bin dropped, `normalized=True` (a factor
//! `1 / sqrt(nfft)`), and complex values as channels (`cac`: `[c][re, im]`).

use realfft::num_complex::Complex32;

use crate::dsp::stft::{Spectrogram, Stft};
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct Spectro {
    stft: Stft,
    nfft: usize,
    hop: usize,
}

impl Spectro {
    pub fn new(nfft: usize) -> Result<Self> {
        let hop = nfft / 4;
        Ok(Self {
            stft: Stft::new(nfft, hop, nfft)?,
            nfft,
            hop,
        })
    }

    /// Frequency rows of the spectrogram the network sees.
    pub fn freqs(&self) -> usize {
        self.nfft / 2
    }

    /// Frames for a signal of `len` samples: `ceil(len / hop)`.
    pub fn frames(&self, len: usize) -> usize {
        len.div_ceil(self.hop)
    }

    /// `_magnitude(_spec(x))` of one item, `channels: [c][len]`, as `[c * 2][freqs][frames]`
    /// (real and imaginary parts of channel `c` in rows `2c`, `2c + 1`), appended to `out`.
    pub fn forward(&self, channels: &[&[f32]], out: &mut Vec<f32>) -> Result<()> {
        let (fr, scale) = (self.freqs(), (self.nfft as f32).sqrt().recip());
        for x in channels {
            let le = self.frames(x.len());
            let pad = self.hop / 2 * 3;
            let padded = pad1d_reflect(x, pad, pad + le * self.hop - x.len());
            let z = self.stft.forward(&padded)?;
            // `spectro` gives `le + 4` frames; `_spec` keeps `2 .. 2 + le`.
            let mut re = vec![0.0f32; fr * le];
            let mut im = vec![0.0f32; fr * le];
            for t in 0..le {
                let frame = z.frame(t + 2);
                for f in 0..fr {
                    re[f * le + t] = frame[f].re * scale;
                    im[f * le + t] = frame[f].im * scale;
                }
            }
            out.extend_from_slice(&re);
            out.extend_from_slice(&im);
        }
        Ok(())
    }

    /// `_ispec(_mask(z, m), length)` of one stem: `cac: [c * 2][freqs][frames]` back to
    /// `[c][length]`, appended to `out`.
    pub fn inverse(
        &self,
        cac: &[f32],
        channels: usize,
        length: usize,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let fr = self.freqs();
        let frames = cac.len() / (channels * 2 * fr);
        let bins = fr + 1;
        let scale = (self.nfft as f32).sqrt();
        let pad = self.hop / 2 * 3;
        let le = self.hop * length.div_ceil(self.hop) + 2 * pad;
        for c in 0..channels {
            let re = &cac[(2 * c) * fr * frames..(2 * c + 1) * fr * frames];
            let im = &cac[(2 * c + 1) * fr * frames..(2 * c + 2) * fr * frames];
            // Two empty frames on each side and an empty Nyquist bin, as `_ispec` pads.
            let mut spec = Spectrogram::zeros(bins, frames + 4);
            for t in 0..frames {
                let frame = &mut spec.data[(t + 2) * bins..(t + 3) * bins];
                for f in 0..fr {
                    frame[f] = Complex32::new(re[f * frames + t], im[f * frames + t]) * scale;
                }
            }
            let x = self.stft.inverse(&spec, le)?;
            out.extend_from_slice(&x[pad..pad + length]);
        }
        Ok(())
    }
}

/// Demucs' `pad1d(x, (left, right), mode="reflect")`: reflection padding that also works on
/// signals no longer than the padding, by first adding the zeros reflection cannot provide.
pub fn pad1d_reflect(x: &[f32], left: usize, right: usize) -> Vec<f32> {
    let max_pad = left.max(right);
    if x.len() <= max_pad {
        let extra = max_pad - x.len() + 1;
        let extra_right = right.min(extra);
        let extra_left = extra - extra_right;
        let mut widened = vec![0.0f32; extra_left];
        widened.extend_from_slice(x);
        widened.resize(widened.len() + extra_right, 0.0);
        return reflect(&widened, left - extra_left, right - extra_right);
    }
    reflect(x, left, right)
}

/// `F.pad(x, (left, right), mode="reflect")`; needs `left, right < x.len()`.
fn reflect(x: &[f32], left: usize, right: usize) -> Vec<f32> {
    let n = x.len() as isize;
    (-(left as isize)..n + right as isize)
        .map(|i| {
            let j = if i < 0 {
                -i
            } else if i >= n {
                2 * (n - 1) - i
            } else {
                i
            };
            x[j as usize]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_padding_matches_torch_and_demucs_on_short_signals() {
        // F.pad([1, 2, 3, 4], (2, 3), "reflect") = [3, 2, 1, 2, 3, 4, 3, 2, 1].
        assert_eq!(
            pad1d_reflect(&[1.0, 2.0, 3.0, 4.0], 2, 3),
            [3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0]
        );
        // pad1d([1, 2], (1, 3)): length 2 <= 3, so two zeros go right first, [1, 2, 0, 0],
        // then reflection by (1, 1): [2, 1, 2, 0, 0, 0].
        assert_eq!(
            pad1d_reflect(&[1.0, 2.0], 1, 3),
            [2.0, 1.0, 2.0, 0.0, 0.0, 0.0]
        );
    }
}
