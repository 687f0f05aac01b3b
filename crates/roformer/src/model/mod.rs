//! The networks, one concept per file. Each layer reads its weights under the PyTorch names of
//! MSST's modules, so the Rust tree mirrors the checkpoint's key tree.

pub mod attention;
pub mod backbone;
pub mod backend;
pub mod band_split;
pub mod bs_roformer;
pub mod feed_forward;
pub mod flops;
pub mod htdemucs;
pub mod linear;
pub mod linear_attention;
pub mod mask_estimator;
pub mod mel_band_roformer;
pub mod mel_bands;
pub mod rms_norm;
pub mod rope;
pub mod spectral;
pub mod transformer;

pub use bs_roformer::BsRoformer;
pub use mel_band_roformer::MelBandRoformer;

use candle_core::{Device, Tensor};

use backbone::Backbone;
use backend::Backend;

use crate::config::{Architecture, MsstConfig};
use crate::error::{Error, Result};
use crate::separate::Separator;
use crate::weights::StateDict;

/// Softmax over the last axis: the fused kernel for inference; plain (differentiable) ops when the
/// scores carry a gradient graph, since the kernel has no backward pass.
pub(crate) fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
    if x.track_op() {
        candle_nn::ops::softmax(x, candle_core::D::Minus1)
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

/// Safetensors metadata key under which `roformer convert` stores the MSST YAML config.
pub const CONFIG_METADATA_KEY: &str = "msst_config";

/// The networks we can run, chosen from the config.
#[derive(Debug)]
pub enum Network {
    Bs(BsRoformer),
    Mel(MelBandRoformer),
}

/// The architecture a checkpoint's key layout shows: BS-RoFormer has one `final_norm`, Mel-Band
/// RoFormer ends every transformer in its own `norm` instead. `None` when neither is present.
pub fn architecture_of(state: &StateDict) -> Option<Architecture> {
    if state.contains("final_norm.gamma") {
        Some(Architecture::BsRoformer)
    } else if state.contains("layers.0.0.norm.gamma") {
        Some(Architecture::MelBandRoformer)
    } else {
        None
    }
}

impl Network {
    pub(crate) fn load(
        config: &MsstConfig,
        state: &mut StateDict,
        device: &Device,
        backend: &dyn Backend,
    ) -> Result<Self> {
        let wanted = config.model.architecture();
        if let Some(found) = architecture_of(state).filter(|&found| found != wanted) {
            return Err(Error::ArchitectureMismatch(format!(
                "{} holds a {found} checkpoint, but the config describes a {wanted} ({})",
                state.source().display(),
                match wanted {
                    Architecture::BsRoformer => "it has no `num_bands`",
                    Architecture::MelBandRoformer => "it has `num_bands` and no `freqs_per_bands`",
                }
            )));
        }
        let mut root = state.root();
        match config.model.architecture() {
            Architecture::BsRoformer => Ok(Network::Bs(BsRoformer::load(
                &config.model,
                &mut root,
                device,
                backend,
            )?)),
            Architecture::MelBandRoformer => Ok(Network::Mel(MelBandRoformer::load(
                &config.model,
                &mut root,
                device,
                backend,
            )?)),
        }
    }
}

/// What training needs from either network.
impl Network {
    pub fn backbone(&self) -> &Backbone {
        match self {
            Network::Bs(m) => m.backbone(),
            Network::Mel(m) => m.backbone(),
        }
    }

    /// The differentiable part: packed spectrogram to the mask heads' output (BS: per bin, in the
    /// spectrogram's packing; Mel-Band: per band, before the overlapping bands are averaged).
    pub fn raw_masks(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Network::Bs(m) => m.masks(x),
            Network::Mel(m) => m.band_masks(x),
        }
    }

    /// [`raw_masks`](Self::raw_masks)' values (flattened) as per-bin masks.
    pub fn bin_masks(&self, raw: Vec<f32>) -> Vec<f32> {
        match self {
            Network::Bs(_) => raw,
            Network::Mel(m) => m.average_band_masks(&raw),
        }
    }

    /// Adjoint of [`bin_masks`](Self::bin_masks).
    pub fn bin_masks_adjoint(&self, grad: Vec<f32>) -> Vec<f32> {
        match self {
            Network::Bs(_) => grad,
            Network::Mel(m) => m.average_band_masks_adjoint(&grad),
        }
    }

    /// Samples the iSTFT returns for a chunk of `len`.
    pub fn istft_len(&self, len: usize) -> usize {
        match self {
            Network::Bs(_) => len,
            Network::Mel(m) => m.istft_len(len),
        }
    }
}

impl Separator for Network {
    fn channels(&self) -> usize {
        match self {
            Network::Bs(m) => m.channels(),
            Network::Mel(m) => m.channels(),
        }
    }
    fn num_stems(&self) -> usize {
        match self {
            Network::Bs(m) => m.num_stems(),
            Network::Mel(m) => m.num_stems(),
        }
    }
    fn separate_batch(&self, audio: &[f32], batch: usize, len: usize) -> Result<Vec<f32>> {
        match self {
            Network::Bs(m) => m.separate_batch(audio, batch, len),
            Network::Mel(m) => m.separate_batch(audio, batch, len),
        }
    }
}
