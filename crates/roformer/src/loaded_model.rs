//! [`LoadedModel`]: a checkpoint and its config opened into a network on a chosen engine.

use std::path::Path;

use candle_core::Device;

use crate::config::MsstConfig;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::{Network, CONFIG_METADATA_KEY};
use crate::weights::{load_state_dict, StateDict};

/// A network with its config, ready to separate.
#[derive(Debug)]
pub struct LoadedModel {
    pub config: MsstConfig,
    pub network: Network,
    /// Scalars in the checkpoint's tensors.
    pub parameters: usize,
    pub engine: Engine,
}

impl LoadedModel {
    /// Reads a checkpoint and builds the network its config describes on `engine`; every
    /// tensor must be used. Without a config file, the config stored in the checkpoint's
    /// metadata is used.
    pub fn open(
        weights: &Path,
        config: Option<&Path>,
        device: &Device,
        engine: Engine,
    ) -> Result<Self> {
        let state = load_state_dict(weights)?;
        match config {
            Some(path) => {
                Self::from_state_dict(MsstConfig::from_file(path)?, state, device, engine)
            }
            None => Self::from_embedded_config(state, device, engine),
        }
    }

    /// A model from a state dict that carries its config in its metadata (as `roformer convert`
    /// and `roformer train` write them).
    pub fn from_embedded_config(state: StateDict, device: &Device, engine: Engine) -> Result<Self> {
        let Some(text) = state.metadata.get(CONFIG_METADATA_KEY) else {
            return Err(Error::MissingConfig {
                model: state.source().to_path_buf(),
            });
        };
        let config = MsstConfig::from_yaml(text, state.source())?;
        Self::from_state_dict(config, state, device, engine)
    }

    pub fn from_state_dict(
        config: MsstConfig,
        mut state: StateDict,
        device: &Device,
        engine: Engine,
    ) -> Result<Self> {
        let parameters = state.num_parameters();
        let network = Network::load(&config, &mut state, device, &engine)?;
        state.finish()?;
        Ok(Self {
            config,
            network,
            parameters,
            engine,
        })
    }
}
