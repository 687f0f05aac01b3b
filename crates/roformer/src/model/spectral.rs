//! The spectral ends both models share: the STFT of a batch of chunks packed into the network
//! input, and complex masking + iSTFT of the network's masks.

use candle_core::{Device, Result as CResult, Tensor};
use rayon::prelude::*;
use realfft::num_complex::Complex32;

use crate::audio::AudioError;
use crate::dsp::{Spectrogram, Stft};
use crate::error::{Error, Result};

/// The front of `separate_batch`: checks that `audio` (`[batch][channel][sample]` flattened) holds
/// `batch * channels * len` samples, takes the STFT of every chunk and channel in parallel and
/// packs them into the network input on `device`. Returns the spectrograms (in `audio`'s order,
/// for [`apply_masks`]) and the packed input `[b, t, (f ch re/im)]`.
pub(crate) fn analyse_batch(
    stft: &Stft,
    audio: &[f32],
    batch: usize,
    channels: usize,
    len: usize,
    device: &Device,
) -> Result<(Vec<Spectrogram>, Tensor)> {
    if audio.len() != batch * channels * len {
        return Err(Error::Audio(AudioError::Other(format!(
            "expected {batch} x {channels} x {len} samples, got {}",
            audio.len()
        ))));
    }
    let specs = audio
        .par_chunks(len)
        .map(|signal| stft.forward(signal))
        .collect::<Result<Vec<_>>>()?;
    let x = pack_spectrograms(&specs, batch, channels, device)?;
    Ok((specs, x))
}

/// All of a tensor's values, in row-major order, copied to the CPU.
pub(crate) fn to_cpu_vec(t: &Tensor) -> CResult<Vec<f32>> {
    t.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()
}

/// Packs per-(batch, channel) spectrograms into the model input `[b, t, (f ch re/im)]`.
pub fn pack_spectrograms(
    specs: &[Spectrogram],
    batch: usize,
    channels: usize,
    device: &Device,
) -> CResult<Tensor> {
    let (bins, frames) = specs.first().map_or((0, 0), |s| (s.bins, s.frames));
    let width = bins * channels * 2;
    let mut data = vec![0.0f32; batch * frames * width];
    for b in 0..batch {
        for s in 0..channels {
            let spec = &specs[b * channels + s];
            for t in 0..frames {
                let row = &mut data[(b * frames + t) * width..(b * frames + t + 1) * width];
                for (f, v) in spec.frame(t).iter().enumerate() {
                    let i = (f * channels + s) * 2;
                    row[i] = v.re;
                    row[i + 1] = v.im;
                }
            }
        }
    }
    Tensor::from_vec(data, (batch, frames, width), device)
}

/// How the masked spectrograms go back to audio.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reconstruction {
    pub stems: usize,
    pub channels: usize,
    /// Zero the DC bin before the iSTFT (MSST `zero_dc`).
    pub zero_dc: bool,
    /// The `length=` of `torch.istft`; samples from there up to the chunk length stay zero.
    pub istft_len: usize,
}

/// Complex-multiplies each stem's mask (`[b][stem][t][(f ch re/im)]` flattened) with the mixture
/// spectrograms and inverts them: `[b][stem][ch][len]` flattened.
pub(crate) fn apply_masks(
    stft: &Stft,
    specs: &[Spectrogram],
    masks: &[f32],
    batch: usize,
    rec: Reconstruction,
    len: usize,
) -> Result<Vec<f32>> {
    let mut outputs = reconstruct(stft, specs, masks, batch, rec)?;
    outputs
        .par_iter_mut()
        .for_each(|audio| audio.resize(len, 0.0));
    Ok(outputs.concat())
}

/// One job per (batch, stem, channel), in output order.
fn jobs(batch: usize, rec: Reconstruction) -> Vec<(usize, usize, usize)> {
    let Reconstruction {
        stems, channels, ..
    } = rec;
    (0..batch)
        .flat_map(|b| (0..stems).flat_map(move |n| (0..channels).map(move |s| (b, n, s))))
        .collect()
}

/// The masked spectrograms inverted to `rec.istft_len` samples each, one signal per
/// (batch, stem, channel) in that order.
pub(crate) fn reconstruct(
    stft: &Stft,
    specs: &[Spectrogram],
    masks: &[f32],
    batch: usize,
    rec: Reconstruction,
) -> Result<Vec<Vec<f32>>> {
    let channels = rec.channels;
    let bins = stft.bins();
    let frames = specs.first().map_or(0, |s| s.frames);
    let width = bins * channels * 2;
    jobs(batch, rec)
        .par_iter()
        .map(|&(b, n, s)| {
            let mix = &specs[b * channels + s];
            let mut out = Spectrogram::zeros(bins, frames);
            let mask_base = (b * rec.stems + n) * frames * width;
            for t in 0..frames {
                let row = &masks[mask_base + t * width..mask_base + (t + 1) * width];
                for f in 0..bins {
                    let i = (f * channels + s) * 2;
                    let m = Complex32::new(row[i], row[i + 1]);
                    out.data[t * bins + f] = mix.data[t * bins + f] * m;
                }
                if rec.zero_dc {
                    out.data[t * bins] = Complex32::new(0.0, 0.0);
                }
            }
            stft.inverse(&out, rec.istft_len)
        })
        .collect()
}

/// Adjoint of [`reconstruct`] with respect to the masks: from the gradient of each reconstructed
/// signal (same order and length) to the gradient of the masks, in their layout.
pub(crate) fn reconstruct_adjoint(
    stft: &Stft,
    specs: &[Spectrogram],
    grads: &[Vec<f32>],
    batch: usize,
    rec: Reconstruction,
) -> Result<Vec<f32>> {
    let channels = rec.channels;
    let bins = stft.bins();
    let frames = specs.first().map_or(0, |s| s.frames);
    let width = bins * channels * 2;
    let per_signal = jobs(batch, rec)
        .par_iter()
        .zip(grads)
        .map(|(&(b, _, s), grad)| {
            let spec_grad = stft.inverse_adjoint(grad, frames)?;
            Ok((b * channels + s, spec_grad))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut out = vec![0.0f32; batch * rec.stems * frames * width];
    for (&(b, n, s), (spec_index, g)) in jobs(batch, rec).iter().zip(per_signal) {
        let mix = &specs[spec_index];
        let mask_base = (b * rec.stems + n) * frames * width;
        for t in 0..frames {
            // The DC bin was zeroed after masking, so its mask gets no gradient.
            let first = usize::from(rec.zero_dc);
            for f in first..bins {
                // d/dm of Re/Im(m x) . g  =  conj(x) g.
                let v = mix.data[t * bins + f].conj() * g.data[t * bins + f];
                let i = mask_base + t * width + (f * channels + s) * 2;
                out[i] = v.re;
                out[i + 1] = v.im;
            }
        }
    }
    Ok(out)
}
