//! STFT and iSTFT equal to `torch.stft`/`torch.istft` as the RoFormers call them: `center=True`,
//! reflect padding, periodic Hann window (zero-padded to `n_fft` when shorter), one-sided,
//! unnormalised; the inverse divides by the summed squared window and honours `length=`.

use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use crate::audio::AudioError;
use crate::error::{Error, Result};

/// A one-sided complex spectrogram of one signal, stored frame-major: `data[t * bins + f]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Spectrogram {
    pub bins: usize,
    pub frames: usize,
    pub data: Vec<Complex32>,
}

impl Spectrogram {
    pub fn zeros(bins: usize, frames: usize) -> Self {
        Self {
            bins,
            frames,
            data: vec![Complex32::new(0.0, 0.0); bins * frames],
        }
    }

    pub fn frame(&self, t: usize) -> &[Complex32] {
        &self.data[t * self.bins..(t + 1) * self.bins]
    }
}

/// A planned STFT of fixed size; cheap to share between threads.
#[derive(Clone)]
pub struct Stft {
    n_fft: usize,
    hop: usize,
    /// The analysis window, already centred and zero-padded to `n_fft`.
    window: Vec<f32>,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
}

impl std::fmt::Debug for Stft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stft")
            .field("n_fft", &self.n_fft)
            .field("hop", &self.hop)
            .finish()
    }
}

/// `torch.hann_window(n)` (periodic): `0.5 - 0.5 cos(2 pi i / n)`.
pub fn hann_periodic(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let x = 2.0 * std::f64::consts::PI * i as f64 / n as f64;
            (0.5 - 0.5 * x.cos()) as f32
        })
        .collect()
}

impl Stft {
    pub fn new(n_fft: usize, hop: usize, win_length: usize) -> Result<Self> {
        if n_fft < 2 || hop == 0 || win_length == 0 || win_length > n_fft {
            return Err(Error::Unsupported(format!(
                "STFT with n_fft {n_fft}, hop {hop}, window {win_length}"
            )));
        }
        // torch centres a shorter window inside the n_fft frame.
        let mut window = vec![0.0f32; n_fft];
        let left = (n_fft - win_length) / 2;
        window[left..left + win_length].copy_from_slice(&hann_periodic(win_length));
        let mut planner = RealFftPlanner::<f32>::new();
        Ok(Self {
            n_fft,
            hop,
            window,
            forward: planner.plan_fft_forward(n_fft),
            inverse: planner.plan_fft_inverse(n_fft),
        })
    }

    pub fn n_fft(&self) -> usize {
        self.n_fft
    }

    pub fn hop(&self) -> usize {
        self.hop
    }

    pub fn bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Frames `torch.stft(center=True)` produces for `len` samples.
    pub fn frames_for(&self, len: usize) -> usize {
        1 + len / self.hop
    }

    /// Forward transform of one channel.
    pub fn forward(&self, signal: &[f32]) -> Result<Spectrogram> {
        let pad = self.n_fft / 2;
        if signal.len() <= pad {
            return Err(Error::Audio(AudioError::Other(format!(
                "a signal of {} samples is too short for reflect padding by {pad} (STFT size {})",
                signal.len(),
                self.n_fft
            ))));
        }
        let padded = reflect_pad(signal, pad);
        let frames = self.frames_for(signal.len());
        let bins = self.bins();
        let mut out = Spectrogram::zeros(bins, frames);
        let mut input = self.forward.make_input_vec();
        let mut scratch = self.forward.make_scratch_vec();
        for (t, dst) in out.data.chunks_exact_mut(bins).enumerate() {
            let frame = &padded[t * self.hop..t * self.hop + self.n_fft];
            for ((i, &x), &w) in input.iter_mut().zip(frame).zip(&self.window) {
                *i = x * w;
            }
            self.forward
                .process_with_scratch(&mut input, dst, &mut scratch)
                .map_err(|e| Error::Audio(AudioError::Other(format!("FFT failed: {e}"))))?;
        }
        Ok(out)
    }

    /// Inverse transform to exactly `length` samples, like `torch.istft(..., length=length)`.
    pub fn inverse(&self, spec: &Spectrogram, length: usize) -> Result<Vec<f32>> {
        if spec.bins != self.bins() {
            return Err(Error::Audio(AudioError::Other(format!(
                "iSTFT expects {} bins, got {}",
                self.bins(),
                spec.bins
            ))));
        }
        let n = self.n_fft;
        let full = n + self.hop * spec.frames.saturating_sub(1);
        let mut acc = vec![0.0f32; full];
        let envelope = self.envelope(spec.frames);
        let mut buf = self.inverse.make_input_vec();
        let mut frame = self.inverse.make_output_vec();
        let mut scratch = self.inverse.make_scratch_vec();
        let scale = 1.0 / n as f32;
        for t in 0..spec.frames {
            buf.copy_from_slice(spec.frame(t));
            // A real inverse ignores the imaginary parts of the DC and Nyquist bins (as torch's c2r).
            buf[0].im = 0.0;
            if n.is_multiple_of(2) {
                if let Some(last) = buf.last_mut() {
                    last.im = 0.0;
                }
            }
            self.inverse
                .process_with_scratch(&mut buf, &mut frame, &mut scratch)
                .map_err(|e| Error::Audio(AudioError::Other(format!("inverse FFT failed: {e}"))))?;
            let start = t * self.hop;
            for (i, (&x, &w)) in frame.iter().zip(&self.window).enumerate() {
                acc[start + i] += x * scale * w;
            }
        }
        // `center=True`: drop the n_fft/2 padding at the start; torch zero-fills past the end.
        let start = n / 2;
        let mut out = vec![0.0f32; length];
        let available = full.saturating_sub(start).min(length);
        for (i, o) in out.iter_mut().take(available).enumerate() {
            let e = envelope[start + i];
            if e.abs() < 1e-11 {
                return Err(Error::Audio(AudioError::Other(format!(
                    "iSTFT window overlap-add is zero at sample {i} (hop {} too large for the window)",
                    self.hop
                ))));
            }
            *o = acc[start + i] / e;
        }
        Ok(out)
    }
}

/// Gradients through the transforms, for training: each `*_adjoint` maps the gradient of a loss
/// with respect to a transform's output back to its input (the transpose of the linear map, with
/// complex values read as pairs of independent reals, which is how torch's autograd sees them).
impl Stft {
    /// Adjoint of [`forward`](Self::forward) for a signal of `len` samples: `grad` holds
    /// `dL/dRe + i dL/dIm` per bin and frame.
    pub fn forward_adjoint(&self, grad: &Spectrogram, len: usize) -> Result<Vec<f32>> {
        let n = self.n_fft;
        let pad = n / 2;
        if grad.bins != self.bins() || grad.frames != self.frames_for(len) || len <= pad {
            return Err(Error::Audio(AudioError::Other(format!(
                "STFT adjoint: {} bins x {} frames do not fit {len} samples",
                grad.bins, grad.frames
            ))));
        }
        let mut padded = vec![0.0f32; len + 2 * pad];
        let mut buf = self.inverse.make_input_vec();
        let mut frame = self.inverse.make_output_vec();
        let mut scratch = self.inverse.make_scratch_vec();
        let last = buf.len() - 1;
        for t in 0..grad.frames {
            // sum_k Re(G_k e^{i 2 pi k n / N}) over the one-sided bins is a real inverse FFT of
            // G/2 with DC and Nyquist kept whole (their imaginary parts meet sin(0) = sin(pi n) = 0).
            for (b, g) in buf.iter_mut().zip(grad.frame(t)) {
                *b = g * 0.5;
            }
            buf[0] = Complex32::new(grad.frame(t)[0].re, 0.0);
            if n.is_multiple_of(2) {
                buf[last] = Complex32::new(grad.frame(t)[last].re, 0.0);
            }
            self.inverse
                .process_with_scratch(&mut buf, &mut frame, &mut scratch)
                .map_err(|e| Error::Audio(AudioError::Other(format!("inverse FFT failed: {e}"))))?;
            let dst = &mut padded[t * self.hop..t * self.hop + n];
            for ((d, &x), &w) in dst.iter_mut().zip(&frame).zip(&self.window) {
                *d += x * w;
            }
        }
        Ok(reflect_pad_adjoint(&padded, len, pad))
    }

    /// Adjoint of [`inverse`](Self::inverse) to `length` samples from `frames` frames: the
    /// gradient per bin and frame (`dL/dRe + i dL/dIm`).
    pub fn inverse_adjoint(&self, grad: &[f32], frames: usize) -> Result<Spectrogram> {
        let n = self.n_fft;
        let full = n + self.hop * frames.saturating_sub(1);
        let envelope = self.envelope(frames);
        let start = n / 2;
        // Through the crop and the division by the window envelope.
        let mut acc = vec![0.0f32; full];
        for (i, &g) in grad.iter().enumerate().take(full.saturating_sub(start)) {
            acc[start + i] = g / envelope[start + i];
        }
        let bins = self.bins();
        let mut out = Spectrogram::zeros(bins, frames);
        let mut input = self.forward.make_input_vec();
        let mut scratch = self.forward.make_scratch_vec();
        let scale = 1.0 / n as f32;
        for (t, dst) in out.data.chunks_exact_mut(bins).enumerate() {
            let src = &acc[t * self.hop..t * self.hop + n];
            for ((i, &g), &w) in input.iter_mut().zip(src).zip(&self.window) {
                *i = g * w * scale;
            }
            self.forward
                .process_with_scratch(&mut input, dst, &mut scratch)
                .map_err(|e| Error::Audio(AudioError::Other(format!("FFT failed: {e}"))))?;
            // A real inverse FFT counts each inner bin twice (with its mirror) and ignores the
            // imaginary parts of DC and Nyquist.
            for v in dst.iter_mut().skip(1) {
                *v *= 2.0;
            }
            dst[0].im = 0.0;
            if n.is_multiple_of(2) {
                let last = dst.len() - 1;
                dst[last] = Complex32::new(dst[last].re * 0.5, 0.0);
            }
        }
        Ok(out)
    }

    /// The summed squared window of `frames` overlapping frames.
    fn envelope(&self, frames: usize) -> Vec<f32> {
        let full = self.n_fft + self.hop * frames.saturating_sub(1);
        let mut envelope = vec![0.0f32; full];
        for t in 0..frames {
            for (e, &w) in envelope[t * self.hop..].iter_mut().zip(&self.window) {
                *e += w * w;
            }
        }
        envelope
    }
}

/// Adjoint of [`reflect_pad`]: folds the gradient of the padded signal back onto the `len` samples.
fn reflect_pad_adjoint(padded: &[f32], len: usize, pad: usize) -> Vec<f32> {
    let mut out = padded[pad..pad + len].to_vec();
    for i in 1..=pad {
        out[i] += padded[pad - i];
    }
    for k in 0..pad {
        out[len - 2 - k] += padded[pad + len + k];
    }
    out
}

/// `torch.nn.functional.pad(x, (pad, pad), mode="reflect")` for one channel (needs `pad < len`).
pub fn reflect_pad(x: &[f32], pad: usize) -> Vec<f32> {
    let n = x.len();
    debug_assert!(pad < n);
    let mut out = Vec::with_capacity(n + 2 * pad);
    out.extend((1..=pad).rev().map(|i| x[i]));
    out.extend_from_slice(x);
    out.extend((0..pad).map(|k| x[n - 2 - k]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::SplitMix64;

    fn noise(rng: &mut SplitMix64, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.next_f64() as f32 - 0.5).collect()
    }

    fn spectrum(rng: &mut SplitMix64, bins: usize, frames: usize) -> Spectrogram {
        let data = (0..bins * frames)
            .map(|_| Complex32::new(rng.next_f64() as f32 - 0.5, rng.next_f64() as f32 - 0.5))
            .collect();
        Spectrogram { bins, frames, data }
    }

    /// `Re <a, b>` with complex values read as pairs of reals.
    fn dot(a: &Spectrogram, b: &Spectrogram) -> f64 {
        a.data
            .iter()
            .zip(&b.data)
            .map(|(a, b)| f64::from(a.re) * f64::from(b.re) + f64::from(a.im) * f64::from(b.im))
            .sum()
    }

    fn dot_real(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum()
    }

    /// The adjoint identity `<A x, y> = <x, A^T y>` for both transforms, on odd and even sizes,
    /// windows shorter than the frame, and lengths that do not fill the last hop.
    #[test]
    fn adjoints_satisfy_the_dot_product_identity() {
        let mut rng = SplitMix64::new(11);
        for (n_fft, hop, win, len) in [(64, 16, 64, 200), (64, 16, 32, 203), (63, 15, 63, 190)] {
            let stft = Stft::new(n_fft, hop, win).unwrap();
            let frames = stft.frames_for(len);
            let x = noise(&mut rng, len);
            let g = spectrum(&mut rng, stft.bins(), frames);
            let forward = dot(&stft.forward(&x).unwrap(), &g);
            let adjoint = dot_real(&x, &stft.forward_adjoint(&g, len).unwrap());
            assert!(
                (forward - adjoint).abs() < 1e-4 * forward.abs().max(1.0),
                "STFT {n_fft}/{hop}/{win}: {forward} vs {adjoint}"
            );

            let spec = spectrum(&mut rng, stft.bins(), frames);
            let y = noise(&mut rng, len);
            let inverse = dot_real(&stft.inverse(&spec, len).unwrap(), &y);
            let adjoint = dot(&spec, &stft.inverse_adjoint(&y, frames).unwrap());
            assert!(
                (inverse - adjoint).abs() < 1e-4 * inverse.abs().max(1.0),
                "iSTFT {n_fft}/{hop}/{win}: {inverse} vs {adjoint}"
            );
        }
    }
}
