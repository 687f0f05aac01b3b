//! The networks, one concept per file. Each layer reads its weights under the PyTorch names of
//! MSST's modules, so the Rust tree mirrors the checkpoint's key tree.

pub mod attention;
pub mod band_split;
pub mod bs_roformer;
pub mod feed_forward;
pub mod linear;
pub mod linear_attention;
pub mod mask_estimator;
pub mod rms_norm;
pub mod rope;
pub mod transformer;

pub use bs_roformer::BsRoformer;

use std::path::Path;

use candle_core::Device;

use crate::config::MsstConfig;
use crate::error::Result;
use crate::weights::{load_state_dict, StateDict};

/// A network with its config, ready to separate.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    pub config: MsstConfig,
    pub network: BsRoformer,
    /// Scalars in the checkpoint's tensors.
    pub parameters: usize,
}

impl LoadedModel {
    /// Reads a checkpoint and builds the network its config describes; every tensor must be used.
    pub fn load(config: MsstConfig, weights: &Path, device: &Device) -> Result<Self> {
        let state = load_state_dict(weights)?;
        Self::from_state_dict(config, state, device)
    }

    pub fn from_state_dict(
        config: MsstConfig,
        mut state: StateDict,
        device: &Device,
    ) -> Result<Self> {
        let parameters = state.num_parameters();
        let network = BsRoformer::load(&config.model, &mut state.root(), device)?;
        state.finish()?;
        Ok(Self {
            config,
            network,
            parameters,
        })
    }
}
