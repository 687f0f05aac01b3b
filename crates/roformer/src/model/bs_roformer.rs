//! MSST's `BSRoformer`: STFT -> band split -> depth x (optional linear transformer, time
//! transformer, frequency transformer) -> final RMSNorm -> one mask estimator per stem ->
//! complex masking -> iSTFT.

use candle_core::{Device, Module, Result as CResult, Tensor};

use super::band_split::BandSplit;
use super::mask_estimator::{MaskHeads, MlpShape};
use super::rms_norm::RmsNorm;
pub use super::spectral::pack_spectrograms;
use super::spectral::{analyse_batch, apply_masks, to_cpu_vec, Reconstruction};
use super::transformer::Stack;
use crate::config::ModelConfig;
use crate::dsp::Stft;
use crate::error::Result;
use crate::weights::WeightsView;

#[derive(Debug)]
pub struct BsRoformer {
    config: ModelConfig,
    device: Device,
    stft: Stft,
    band_split: BandSplit,
    layers: Stack,
    final_norm: RmsNorm,
    mask_estimators: MaskHeads,
}

impl BsRoformer {
    /// Builds the model from weights under MSST's key names (the view's root).
    pub fn load(
        config: &ModelConfig,
        vb: &mut WeightsView<'_>,
        device: &Device,
        options: super::LoadOptions,
    ) -> Result<Self> {
        let cfg = config;
        let dim_inputs = cfg.band_input_dims();
        let band_split = BandSplit::load(&mut vb.pp("band_split"), cfg.dim, &dim_inputs, device)?;
        // BS transformers have no output norm; one final norm follows the stack.
        let layers = Stack::load(cfg, false, &mut vb.pp("layers"), device, options)?;
        let final_norm = RmsNorm::load(&mut vb.pp("final_norm"), cfg.dim, device)?;
        // BS-RoFormer's MLP(depth) has `depth` Linears.
        let mlp = MlpShape {
            dim: cfg.dim,
            hidden: cfg.dim * cfg.mlp_expansion_factor,
            linears: cfg.mask_depth(),
        };
        let mask_estimators =
            MaskHeads::load_per_stem(vb, cfg.num_stems, mlp, &dim_inputs, device, options)?;
        Ok(Self {
            config: cfg.clone(),
            device: device.clone(),
            stft: Stft::new(cfg.stft_n_fft, cfg.stft_hop_length, cfg.stft_win_length)?,
            band_split,
            layers,
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
        // Each stage consumes the previous activations, so only two chunk-sized copies live.
        let x = self.band_split.forward(x)?; // b t f d
        let x = self.final_norm.forward(&self.layers.forward(x)?)?;
        self.mask_estimators.forward(x)
    }

    /// Separates a batch of equally long chunks.
    ///
    /// `audio` is `[batch][channel][sample]` flattened (`batch * channels * len` values); the result
    /// is `[batch][stem][channel][sample]` flattened, each chunk reconstructed to `len` samples.
    pub fn separate_batch(&self, audio: &[f32], batch: usize, len: usize) -> Result<Vec<f32>> {
        let channels = self.channels();
        let (specs, x) = analyse_batch(&self.stft, audio, batch, channels, len, &self.device)?;
        let masks = to_cpu_vec(&self.masks(&x)?)?;
        let rec = Reconstruction {
            stems: self.num_stems(),
            channels,
            zero_dc: self.config.zero_dc,
            istft_len: len,
        };
        apply_masks(&self.stft, &specs, &masks, batch, rec, len)
    }
}
