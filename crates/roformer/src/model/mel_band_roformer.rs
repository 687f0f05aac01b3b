//! MSST's `MelBandRoformer`: STFT -> gather the (overlapping) mel bands' bins -> band split ->
//! depth x (optional linear transformer, time transformer, frequency transformer; each ends in
//! its own RMSNorm, and there is no final norm) -> one mask estimator per stem -> masks averaged
//! over the bands that share a bin -> complex masking -> iSTFT.
//!
//! Output length: MSST calls `torch.istft(length=None)` unless `match_input_audio_length`, which
//! yields `hop * (frames - 1)` = the chunk length rounded down to a multiple of the hop. MSST's
//! `demix` then takes `[..., :chunk_len]`; with chunk sizes that are multiples of the hop (every
//! published config) both agree. For other chunk sizes MSST's `demix` cannot add the shorter
//! output to its buffers and fails; we return the natural-length reconstruction followed by zeros
//! up to the chunk length, so a chunk's last `len % hop` samples contribute silence.

use candle_core::{Device, Module, Result as CResult, Tensor};
use rayon::prelude::*;

use super::backbone::{Backbone, Variant};
use super::mel_bands::MelBands;
use super::spectral::to_cpu_vec;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::weights::WeightsView;

#[derive(Debug)]
pub struct MelBandRoformer {
    backbone: Backbone,
    bands: MelBands,
    /// For every value of the band-split input `[band][freq][ch][re, im]`, its column in the
    /// packed spectrogram `[(f ch re/im)]` (MSST's `freq_indices`, times 2, plus re/im).
    columns: Vec<u32>,
    /// `columns` on the model's device, for the gather.
    columns_tensor: Tensor,
}

impl MelBandRoformer {
    /// Builds the model from weights under MSST's key names (the view's root).
    ///
    /// The mel bands come from the config (`num_bands`, `sample_rate`, `stft_n_fft`); a layout
    /// that leaves a bin or a band empty is an [`Error::Unsupported`] naming the values.
    pub fn load(
        config: &ModelConfig,
        vb: &mut WeightsView<'_>,
        device: &Device,
        backend: &dyn super::backend::Backend,
    ) -> Result<Self> {
        let cfg = config;
        let num_bands = cfg.num_bands.ok_or_else(|| {
            Error::Unsupported("a Mel-Band RoFormer config needs model.num_bands".into())
        })?;
        let bands = MelBands::new(cfg.sample_rate, cfg.stft_n_fft, num_bands)
            .map_err(|e| Error::Unsupported(format!("model.num_bands: {e}")))?;
        let channels = cfg.audio_channels();
        let columns: Vec<u32> = bands
            .freq_indices(channels)
            .into_iter()
            .flat_map(|row| [2 * row as u32, 2 * row as u32 + 1])
            .collect();
        let columns_tensor = Tensor::new(columns.as_slice(), device)?;
        let dim_inputs = bands.band_input_dims(channels);
        // Every Mel transformer (the linear one too) ends in its own RMSNorm, and Mel-Band
        // RoFormer's MLP(depth) has `depth + 1` Linears.
        let variant = Variant {
            norm_output: true,
            mask_linears: cfg.mask_depth() + 1,
        };
        Ok(Self {
            backbone: Backbone::load(cfg, vb, device, backend, &dim_inputs, variant)?,
            bands,
            columns,
            columns_tensor,
        })
    }

    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    pub fn config(&self) -> &ModelConfig {
        &self.backbone.config
    }

    pub fn device(&self) -> &Device {
        &self.backbone.device
    }

    pub fn bands(&self) -> &MelBands {
        &self.bands
    }

    pub fn num_stems(&self) -> usize {
        self.backbone.num_stems()
    }

    pub fn channels(&self) -> usize {
        self.backbone.channels()
    }

    /// The network up to the mask estimators: packed spectrogram `[b, t, freqs * channels * 2]`
    /// (ordered `[f][ch][re, im]`) to per-band masks `[b, stems, t, sum(band widths)]`, ordered
    /// `[band][freq][ch][re, im]` (before the overlapping bands are averaged).
    pub fn band_masks(&self, x: &Tensor) -> CResult<Tensor> {
        // x = stft_repr[:, freq_indices], then 'b f t c -> b t (f c)'.
        let x = x.contiguous()?.index_select(&self.columns_tensor, 2)?;
        let b = &self.backbone;
        let x = b.band_split.forward(&x)?; // b t bands d
        b.mask_estimators.forward(b.layers.forward(x)?)
    }

    /// Averages per-band masks (`band_masks`' layout, flattened) into masks over the packed
    /// spectrogram, `[b][stem][t][(f ch re/im)]` flattened: each bin's mask is the sum over the bands
    /// containing it divided by their number (MSST's `scatter_add_` and `/ num_bands_per_freq`).
    pub fn average_band_masks(&self, band_masks: &[f32]) -> Vec<f32> {
        let width_in = self.columns.len();
        let width_out = self.bands.num_freqs() * self.channels() * 2;
        let per_col = 2 * self.channels();
        let rows = band_masks.len() / width_in.max(1);
        let mut out = vec![0.0f32; rows * width_out];
        out.par_chunks_mut(width_out)
            .zip(band_masks.par_chunks(width_in))
            .for_each(|(dst, src)| {
                for (&col, &v) in self.columns.iter().zip(src) {
                    dst[col as usize] += v;
                }
                for (col, v) in dst.iter_mut().enumerate() {
                    // torch divides the complex sum by a real: `a * (1 / d)` per part.
                    let count = self.bands.bands_per_freq[col / per_col] as f32;
                    *v *= 1.0 / count.max(1e-8);
                }
            });
        out
    }

    /// Adjoint of [`average_band_masks`](Self::average_band_masks): the gradient of every band
    /// mask value from the gradient of the per-bin masks.
    pub fn average_band_masks_adjoint(&self, grad_bins: &[f32]) -> Vec<f32> {
        let width_in = self.columns.len();
        let width_out = self.bands.num_freqs() * self.channels() * 2;
        let per_col = 2 * self.channels();
        let rows = grad_bins.len() / width_out.max(1);
        let mut out = vec![0.0f32; rows * width_in];
        out.par_chunks_mut(width_in)
            .zip(grad_bins.par_chunks(width_out))
            .for_each(|(dst, src)| {
                for (d, &col) in dst.iter_mut().zip(&self.columns) {
                    let count = self.bands.bands_per_freq[col as usize / per_col] as f32;
                    *d = src[col as usize] * (1.0 / count.max(1e-8));
                }
            });
        out
    }

    /// Samples the iSTFT returns for a chunk of `len`: MSST passes `length=None` unless
    /// `match_input_audio_length`, which gives `hop * (frames - 1)`.
    pub fn istft_len(&self, len: usize) -> usize {
        let b = &self.backbone;
        if b.config.match_input_audio_length {
            len
        } else {
            b.stft.hop() * (b.stft.frames_for(len) - 1)
        }
    }

    /// Per-bin masks `[b, stems, t, freqs * channels * 2]` (in the packing of the input), as MSST
    /// multiplies them with the mixture; computed on the CPU.
    pub fn masks(&self, x: &Tensor) -> CResult<Tensor> {
        let band_masks = self.band_masks(x)?;
        let (b, n, t, _) = band_masks.dims4()?;
        let flat = to_cpu_vec(&band_masks)?;
        let width = self.bands.num_freqs() * self.channels() * 2;
        Tensor::from_vec(
            self.average_band_masks(&flat),
            (b, n, t, width),
            &Device::Cpu,
        )
    }

    /// Separates a batch of equally long chunks.
    ///
    /// `audio` is `[batch][channel][sample]` flattened (`batch * channels * len` values); the result
    /// is `[batch][stem][channel][sample]` flattened, `len` samples per chunk (see the module notes
    /// for chunk lengths that are not a multiple of the hop).
    pub fn separate_batch(&self, audio: &[f32], batch: usize, len: usize) -> Result<Vec<f32>> {
        let istft_len = self.istft_len(len);
        self.backbone
            .separate_batch(audio, batch, len, istft_len, |x| {
                Ok(self.average_band_masks(&to_cpu_vec(&self.band_masks(x)?)?))
            })
    }
}
