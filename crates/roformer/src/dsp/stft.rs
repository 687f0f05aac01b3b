//! STFT and iSTFT equal to `torch.stft`/`torch.istft` as the RoFormers call them: `center=True`,
//! reflect padding, periodic Hann window (zero-padded to `n_fft` when shorter), one-sided,
//! unnormalised; the inverse divides by the summed squared window and honours `length=`.

use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

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
            return Err(Error::Audio(format!(
                "a signal of {} samples is too short for reflect padding by {pad} (STFT size {})",
                signal.len(),
                self.n_fft
            )));
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
                .map_err(|e| Error::Audio(format!("FFT failed: {e}")))?;
        }
        Ok(out)
    }

    /// Inverse transform to exactly `length` samples, like `torch.istft(..., length=length)`.
    pub fn inverse(&self, spec: &Spectrogram, length: usize) -> Result<Vec<f32>> {
        if spec.bins != self.bins() {
            return Err(Error::Audio(format!(
                "iSTFT expects {} bins, got {}",
                self.bins(),
                spec.bins
            )));
        }
        let n = self.n_fft;
        let full = n + self.hop * spec.frames.saturating_sub(1);
        let mut acc = vec![0.0f32; full];
        let mut envelope = vec![0.0f32; full];
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
                .map_err(|e| Error::Audio(format!("inverse FFT failed: {e}")))?;
            let start = t * self.hop;
            for (i, (&x, &w)) in frame.iter().zip(&self.window).enumerate() {
                acc[start + i] += x * scale * w;
                envelope[start + i] += w * w;
            }
        }
        // `center=True`: drop the n_fft/2 padding at the start; torch zero-fills past the end.
        let start = n / 2;
        let mut out = vec![0.0f32; length];
        let available = full.saturating_sub(start).min(length);
        for (i, o) in out.iter_mut().take(available).enumerate() {
            let e = envelope[start + i];
            if e.abs() < 1e-11 {
                return Err(Error::Audio(format!(
                    "iSTFT window overlap-add is zero at sample {i} (hop {} too large for the window)",
                    self.hop
                )));
            }
            *o = acc[start + i] / e;
        }
        Ok(out)
    }
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
