//! MSST's `BSRoformer`: STFT -> band split -> depth x (optional linear transformer, time
//! transformer, frequency transformer) -> final RMSNorm -> one mask estimator per stem ->
//! complex masking -> iSTFT.

use candle_core::{Device, Module, Result as CResult, Tensor};

use super::backbone::{Backbone, Variant};
use super::rms_norm::RmsNorm;
pub use super::spectral::pack_spectrograms;
use super::spectral::to_cpu_vec;
use crate::config::ModelConfig;
use crate::error::Result;
use crate::weights::WeightsView;

#[derive(Debug)]
pub struct BsRoformer {
    backbone: Backbone,
    final_norm: RmsNorm,
}

impl BsRoformer {
    /// Builds the model from weights under MSST's key names (the view's root).
    pub fn load(
        config: &ModelConfig,
        vb: &mut WeightsView<'_>,
        device: &Device,
        backend: &dyn super::backend::Backend,
    ) -> Result<Self> {
        // BS transformers have no output norm (one final norm follows the stack), and
        // BS-RoFormer's MLP(depth) has `depth` Linears.
        let variant = Variant {
            norm_output: false,
            mask_linears: config.mask_depth(),
        };
        let dim_inputs = config.band_input_dims();
        let backbone = Backbone::load(config, vb, device, backend, &dim_inputs, variant)?;
        let final_norm = RmsNorm::load(&mut vb.pp("final_norm"), config.dim, device)?;
        Ok(Self {
            backbone,
            final_norm,
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

    pub fn num_stems(&self) -> usize {
        self.backbone.num_stems()
    }

    pub fn channels(&self) -> usize {
        self.backbone.channels()
    }

    /// The network: packed spectrogram `[b, t, freqs * channels * 2]` (ordered `[f][ch][re, im]`)
    /// to masks `[b, stems, t, freqs * channels * 2]` in the same packing.
    pub fn masks(&self, x: &Tensor) -> CResult<Tensor> {
        // Each stage consumes the previous activations, so only two chunk-sized copies live.
        let b = &self.backbone;
        let x = b.band_split.forward(x)?; // b t f d
        let x = self.final_norm.forward(&b.layers.forward(x)?)?;
        b.mask_estimators.forward(x)
    }

    /// Separates a batch of equally long chunks.
    ///
    /// `audio` is `[batch][channel][sample]` flattened (`batch * channels * len` values); the result
    /// is `[batch][stem][channel][sample]` flattened, each chunk reconstructed to `len` samples.
    pub fn separate_batch(&self, audio: &[f32], batch: usize, len: usize) -> Result<Vec<f32>> {
        self.backbone
            .separate_batch(audio, batch, len, len, |x| to_cpu_vec(&self.masks(x)?))
    }
}
