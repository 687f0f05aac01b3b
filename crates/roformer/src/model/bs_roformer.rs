//! MSST's `BSRoformer`: STFT -> band split -> depth x (optional linear transformer, time
//! transformer, frequency transformer) -> final RMSNorm -> one mask estimator per stem ->
//! complex masking -> iSTFT.

use candle_core::{Device, Module, Result as CResult, Tensor};
use rayon::prelude::*;
use realfft::num_complex::Complex32;

use super::band_split::BandSplit;
use super::mask_estimator::{MaskEstimator, MlpShape};
use super::rms_norm::RmsNorm;
use super::transformer::{AttentionKind, Transformer, TransformerShape};
use crate::config::ModelConfig;
use crate::dsp::{Spectrogram, Stft};
use crate::error::{Error, Result};
use crate::weights::WeightsView;

/// One axial block: an optional linear-attention transformer over all tokens, then time, then
/// frequency.
#[derive(Debug, Clone)]
struct Block {
    linear: Option<Transformer>,
    time: Transformer,
    freq: Transformer,
}

#[derive(Debug, Clone)]
pub struct BsRoformer {
    config: ModelConfig,
    device: Device,
    stft: Stft,
    band_split: BandSplit,
    blocks: Vec<Block>,
    final_norm: RmsNorm,
    mask_estimators: Vec<MaskEstimator>,
}

impl BsRoformer {
    /// Builds the model from weights under MSST's key names (the view's root).
    pub fn load(config: &ModelConfig, vb: &mut WeightsView<'_>, device: &Device) -> Result<Self> {
        let cfg = config;
        let dim_inputs = cfg.band_input_dims();
        let band_split = BandSplit::load(&mut vb.pp("band_split"), cfg.dim, &dim_inputs, device)?;
        let shape = |depth, kind| TransformerShape {
            dim: cfg.dim,
            depth,
            heads: cfg.heads,
            dim_head: cfg.dim_head,
            kind,
        };
        let mut layers = vb.pp("layers");
        let mut blocks = Vec::with_capacity(cfg.depth);
        for l in 0..cfg.depth {
            let mut block = layers.pp(l);
            // With a linear transformer present it takes index 0 and shifts time/freq to 1/2.
            let has_linear = cfg.linear_transformer_depth > 0;
            let linear = if has_linear {
                Some(Transformer::load(
                    &mut block.pp("0"),
                    shape(cfg.linear_transformer_depth, AttentionKind::Linear),
                    device,
                )?)
            } else {
                None
            };
            let first = usize::from(has_linear);
            let time = Transformer::load(
                &mut block.pp(first),
                shape(cfg.time_transformer_depth, AttentionKind::Rotary),
                device,
            )?;
            let freq = Transformer::load(
                &mut block.pp(first + 1),
                shape(cfg.freq_transformer_depth, AttentionKind::Rotary),
                device,
            )?;
            blocks.push(Block { linear, time, freq });
        }
        let final_norm = RmsNorm::load(&mut vb.pp("final_norm"), cfg.dim, device)?;
        // BS-RoFormer's MLP(depth) has `depth` Linears.
        let mlp = MlpShape {
            dim: cfg.dim,
            hidden: cfg.dim * cfg.mlp_expansion_factor,
            linears: cfg.mask_depth(),
        };
        let mut estimators_vb = vb.pp("mask_estimators");
        let mask_estimators = (0..cfg.num_stems)
            .map(|s| MaskEstimator::load(&mut estimators_vb.pp(s), mlp, &dim_inputs, device))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config: cfg.clone(),
            device: device.clone(),
            stft: Stft::new(cfg.stft_n_fft, cfg.stft_hop_length, cfg.stft_win_length)?,
            band_split,
            blocks,
            final_norm,
            mask_estimators,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn num_stems(&self) -> usize {
        self.config.num_stems
    }

    pub fn channels(&self) -> usize {
        self.config.audio_channels()
    }

    /// The network: packed spectrogram `[b, t, freqs * channels * 2]` (ordered `[f][ch][re, im]`)
    /// to masks `[b, stems, t, freqs * channels * 2]` in the same packing.
    pub fn masks(&self, x: &Tensor) -> CResult<Tensor> {
        let mut x = self.band_split.forward(x)?; // b t f d
        let (b, t, f, d) = x.dims4()?;
        let mut store: Vec<Tensor> = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            if let Some(linear) = &block.linear {
                x = linear
                    .forward(&x.reshape((b, t * f, d))?)?
                    .reshape((b, t, f, d))?;
            }
            if self.config.skip_connection {
                // The reference adds the outputs of all earlier blocks, one by one.
                for earlier in &store {
                    x = (x + earlier)?;
                }
            }
            // Time attention over (b f) t d.
            let xt = x.permute((0, 2, 1, 3))?.reshape((b * f, t, d))?;
            let xt = block.time.forward(&xt)?;
            // Frequency attention over (b t) f d.
            let xf = xt
                .reshape((b, f, t, d))?
                .permute((0, 2, 1, 3))?
                .reshape((b * t, f, d))?;
            x = block.freq.forward(&xf)?.reshape((b, t, f, d))?;
            if self.config.skip_connection {
                store.push(x.clone());
            }
        }
        let x = self.final_norm.forward(&x)?;
        let masks = self
            .mask_estimators
            .iter()
            .map(|m| m.forward(&x))
            .collect::<CResult<Vec<_>>>()?;
        Tensor::stack(&masks, 1)
    }

    /// Separates a batch of equally long chunks.
    ///
    /// `audio` is `[batch][channel][sample]` flattened (`batch * channels * len` values); the result
    /// is `[batch][stem][channel][sample]` flattened, each chunk reconstructed to `len` samples.
    pub fn separate_batch(&self, audio: &[f32], batch: usize, len: usize) -> Result<Vec<f32>> {
        let channels = self.channels();
        if audio.len() != batch * channels * len {
            return Err(Error::Audio(format!(
                "expected {batch} x {channels} x {len} samples, got {}",
                audio.len()
            )));
        }
        let specs = audio
            .par_chunks(len)
            .map(|signal| self.stft.forward(signal))
            .collect::<Result<Vec<_>>>()?;
        let x = pack_spectrograms(&specs, batch, channels, &self.device)?;
        let masks = self.masks(&x)?.to_device(&Device::Cpu)?;
        let masks = masks.flatten_all()?.to_vec1::<f32>()?;
        self.apply_masks(&specs, &masks, batch, len)
    }

    /// Complex-multiplies each stem's mask with the mixture spectrogram and inverts it.
    fn apply_masks(
        &self,
        specs: &[Spectrogram],
        masks: &[f32],
        batch: usize,
        len: usize,
    ) -> Result<Vec<f32>> {
        let (channels, stems) = (self.channels(), self.num_stems());
        let bins = self.stft.bins();
        let frames = specs.first().map_or(0, |s| s.frames);
        let width = bins * channels * 2;
        let zero_dc = self.config.zero_dc;
        // One job per (batch, stem, channel), in output order.
        let jobs: Vec<(usize, usize, usize)> = (0..batch)
            .flat_map(|b| (0..stems).flat_map(move |n| (0..channels).map(move |s| (b, n, s))))
            .collect();
        let outputs = jobs
            .par_iter()
            .map(|&(b, n, s)| {
                let mix = &specs[b * channels + s];
                let mut out = Spectrogram::zeros(bins, frames);
                let mask_base = (b * stems + n) * frames * width;
                for t in 0..frames {
                    let row = &masks[mask_base + t * width..mask_base + (t + 1) * width];
                    for f in 0..bins {
                        let i = (f * channels + s) * 2;
                        let m = Complex32::new(row[i], row[i + 1]);
                        out.data[t * bins + f] = mix.data[t * bins + f] * m;
                    }
                    if zero_dc {
                        out.data[t * bins] = Complex32::new(0.0, 0.0);
                    }
                }
                self.stft.inverse(&out, len)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(outputs.concat())
    }
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
