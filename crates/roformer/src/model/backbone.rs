//! What BS-RoFormer and Mel-Band RoFormer share: the config, device and STFT, the band split,
//! the axial transformer stack, one mask estimator per stem, and the chunk round trip
//! (STFT -> masks -> complex masking -> iSTFT) around them.

use candle_core::{Device, Result as CResult, Tensor};

use super::backend::{Backend, RunMaskHeads, RunStack};
use super::band_split::BandSplit;
use super::mask_estimator::{MaskHeads, MlpShape};
use super::spectral::{analyse_batch, apply_masks, Reconstruction};
use super::transformer::AxialStack;
use crate::config::ModelConfig;
use crate::dsp::Stft;
use crate::error::Result;
use crate::weights::WeightsView;

/// How the two models differ inside the shared parts.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    /// Whether every transformer ends in its own RMSNorm (Mel-Band) or not (BS).
    pub norm_output: bool,
    /// Linears in each band's mask MLP (BS: `depth`, Mel-Band: `depth + 1`).
    pub mask_linears: usize,
}

#[derive(Debug)]
pub struct Backbone {
    pub config: ModelConfig,
    pub device: Device,
    pub stft: Stft,
    pub band_split: BandSplit,
    pub layers: Box<dyn RunStack>,
    pub mask_estimators: Box<dyn RunMaskHeads>,
}

impl Backbone {
    /// Loads the shared parts under MSST's key names; `dim_inputs` are the bands' input widths.
    pub fn load(
        config: &ModelConfig,
        vb: &mut WeightsView<'_>,
        device: &Device,
        backend: &dyn Backend,
        dim_inputs: &[usize],
        variant: Variant,
    ) -> Result<Self> {
        let cfg = config;
        let band_split = BandSplit::load(&mut vb.pp("band_split"), cfg.dim, dim_inputs, device)?;
        let layers = AxialStack::load(cfg, variant.norm_output, &mut vb.pp("layers"), device)?;
        let layers = backend.stack(layers)?;
        let mlp = MlpShape {
            dim: cfg.dim,
            hidden: cfg.dim * cfg.mlp_expansion_factor,
            linears: variant.mask_linears,
        };
        let heads = MaskHeads::load(vb, cfg.num_stems, mlp, dim_inputs, device)?;
        let mask_estimators = backend.mask_heads(heads)?;
        Ok(Self {
            config: cfg.clone(),
            device: device.clone(),
            stft: Stft::new(cfg.stft_n_fft, cfg.stft_hop_length, cfg.stft_win_length)?,
            band_split,
            layers,
            mask_estimators,
        })
    }

    pub fn num_stems(&self) -> usize {
        self.config.num_stems
    }

    pub fn channels(&self) -> usize {
        self.config.audio_channels()
    }

    /// Separates a batch of equally long chunks (`audio`: `[batch][channel][sample]` flattened)
    /// into `[batch][stem][channel][sample]`, `len` samples per chunk: `masks` maps the packed
    /// spectrogram to per-bin masks (flattened, in its packing), each stem's spectrogram is
    /// reconstructed to `istft_len` samples and zero-padded to `len`.
    pub fn separate_batch(
        &self,
        audio: &[f32],
        batch: usize,
        len: usize,
        istft_len: usize,
        masks: impl FnOnce(&Tensor) -> CResult<Vec<f32>>,
    ) -> Result<Vec<f32>> {
        let channels = self.channels();
        let (specs, x) = analyse_batch(&self.stft, audio, batch, channels, len, &self.device)?;
        let masks = masks(&x)?;
        let rec = Reconstruction {
            stems: self.num_stems(),
            channels,
            zero_dc: self.config.zero_dc,
            istft_len,
        };
        apply_masks(&self.stft, &specs, &masks, batch, rec, len)
    }
}
