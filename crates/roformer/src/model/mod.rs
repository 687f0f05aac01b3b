//! The networks, one concept per file. Each layer reads its weights under the PyTorch names of
//! MSST's modules, so the Rust tree mirrors the checkpoint's key tree.

pub mod attention;
pub mod backbone;
pub mod band_split;
pub mod bs_roformer;
pub mod feed_forward;
pub mod flops;
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

use std::path::Path;

use candle_core::{Device, Tensor};

use backbone::Backbone;

use crate::config::{Architecture, MsstConfig};
use crate::cpu::{Engine, Precision};
use crate::error::{Error, Result};
use crate::separate::Separator;
use crate::weights::{load_state_dict, StateDict};

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
        options: LoadOptions,
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
                options,
            )?)),
            Architecture::MelBandRoformer => Ok(Network::Mel(MelBandRoformer::load(
                &config.model,
                &mut root,
                device,
                options,
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

/// How a model is built for running: the engine and, on the fused CPU engine, the precision of
/// the transformer's matrix products.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    pub engine: Engine,
    pub precision: Precision,
}

/// A network with its config, ready to separate.
#[derive(Debug)]
pub struct LoadedModel {
    pub config: MsstConfig,
    pub network: Network,
    /// Scalars in the checkpoint's tensors.
    pub parameters: usize,
    pub options: LoadOptions,
    on_cpu: bool,
}

impl LoadedModel {
    /// Reads a checkpoint and builds the network its config describes; every tensor must be used.
    /// Without a config file, the config stored in the checkpoint's metadata is used.
    pub fn open(weights: &Path, config: Option<&Path>, device: &Device) -> Result<Self> {
        Self::open_with(weights, config, device, LoadOptions::default())
    }

    /// [`LoadedModel::open`] with a chosen engine and precision.
    pub fn open_with(
        weights: &Path,
        config: Option<&Path>,
        device: &Device,
        options: LoadOptions,
    ) -> Result<Self> {
        let state = load_state_dict(weights)?;
        match config {
            Some(path) => {
                Self::from_state_dict_with(MsstConfig::from_file(path)?, state, device, options)
            }
            None => Self::from_embedded_config(state, device, options),
        }
    }

    /// A model from a state dict that carries its config in its metadata (as `roformer convert`
    /// and `roformer train` write them).
    pub fn from_embedded_config(
        state: StateDict,
        device: &Device,
        options: LoadOptions,
    ) -> Result<Self> {
        let Some(text) = state.metadata.get(CONFIG_METADATA_KEY) else {
            return Err(Error::MissingConfig {
                model: state.source().to_path_buf(),
            });
        };
        let config = MsstConfig::from_yaml(text, state.source())?;
        Self::from_state_dict_with(config, state, device, options)
    }

    /// Which engine runs the network, and at what precision, in words.
    pub fn engine_description(&self) -> String {
        match self.options.engine {
            Engine::Auto if self.on_cpu => format!("fused CPU engine, {}", self.options.precision),
            _ => "reference engine".to_string(),
        }
    }

    pub fn from_state_dict(config: MsstConfig, state: StateDict, device: &Device) -> Result<Self> {
        Self::from_state_dict_with(config, state, device, LoadOptions::default())
    }

    pub fn from_state_dict_with(
        config: MsstConfig,
        mut state: StateDict,
        device: &Device,
        options: LoadOptions,
    ) -> Result<Self> {
        let parameters = state.num_parameters();
        let network = Network::load(&config, &mut state, device, options)?;
        state.finish()?;
        Ok(Self {
            config,
            network,
            parameters,
            options,
            on_cpu: matches!(device, Device::Cpu),
        })
    }
}
