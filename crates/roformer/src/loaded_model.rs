//! [`LoadedModel`]: a checkpoint and its config opened into a network on a chosen engine;
//! [`SeparationModel`]: that, or an HT Demucs model ([`LoadedHtDemucs`]), as the separator
//! runs them.

use std::path::Path;

use candle_core::Device;

use crate::config::{read_config_text, MsstConfig};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::htdemucs::config::{HtDemucsInference, HtDemucsTraining, MsstHtDemucsConfig};
use crate::model::htdemucs::HtDemucs;
use crate::model::{Network, CONFIG_METADATA_KEY};
use crate::separate::{ChunkMode, DemixOptions, Separator as ChunkModel};
use crate::weights::{
    load_demucs_package, load_state_dict, DemucsPackage, StateDict, WeightsError,
};

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

/// An HT Demucs checkpoint and its config, opened on an engine (the fused CPU engine at any
/// precision, or the reference).
#[derive(Debug)]
pub struct LoadedHtDemucs {
    pub config: MsstHtDemucsConfig,
    pub network: HtDemucs,
    pub parameters: usize,
}

impl LoadedHtDemucs {
    /// A Facebook demucs `.th` package, with [`config_from_package`].
    pub fn from_package(package: DemucsPackage, device: &Device, engine: Engine) -> Result<Self> {
        let config = config_from_package(&package)?;
        Self::from_state_dict(config, package.state, device, engine)
    }

    pub fn from_state_dict(
        config: MsstHtDemucsConfig,
        mut state: StateDict,
        device: &Device,
        engine: Engine,
    ) -> Result<Self> {
        let parameters = state.num_parameters();
        let network = HtDemucs::load(
            &config.htdemucs,
            config.training.instruments.len(),
            config.training.channels,
            &mut state.root(),
            device,
        )?;
        // Made-up weights (`StateDict::synthetic`) are counted as the model takes them.
        let parameters = parameters + state.fabricated_parameters();
        state.finish()?;
        let network = network.with_engine(engine)?;
        Ok(Self {
            config,
            network,
            parameters,
        })
    }
}

/// What a separator runs: a RoFormer or HT Demucs, told apart by the config (MSST writes
/// `model: htdemucs` and an `htdemucs:` section for the latter).
#[derive(Debug)]
// One per loaded model, never in a collection that its size would matter to.
#[allow(clippy::large_enum_variant)]
pub enum SeparationModel {
    Roformer(LoadedModel),
    HtDemucs(LoadedHtDemucs),
}

impl SeparationModel {
    /// Opens `weights` with the MSST YAML file `config` (a file that carries its own config is
    /// opened by [`Bag::open`](crate::bag::Bag::open), which also knows bags).
    pub fn open_with_config(
        weights: &Path,
        config: &Path,
        device: &Device,
        engine: Engine,
    ) -> Result<Self> {
        let text = read_config_text(config)?;
        Self::from_config_text(&text, config, load_state_dict(weights)?, device, engine)
    }

    /// One model: `weights` with the MSST YAML file `config`, or a file that carries its config
    /// ([`weights_with_config`]). Bags are [`Bag::open`](crate::bag::Bag::open)'s.
    pub fn open(
        weights: &Path,
        config: Option<&Path>,
        device: &Device,
        engine: Engine,
    ) -> Result<Self> {
        match config {
            Some(config) => Self::open_with_config(weights, config, device, engine),
            None => {
                let (state, text) = weights_with_config(weights)?;
                Self::from_config_text(&text, weights, state, device, engine)
            }
        }
    }

    /// A model whose state dict carries its config (`roformer convert`, `roformer train`).
    pub fn from_embedded_config(state: StateDict, device: &Device, engine: Engine) -> Result<Self> {
        match state.metadata.get(CONFIG_METADATA_KEY) {
            Some(text) => {
                let (text, origin) = (text.clone(), state.source().to_path_buf());
                Self::from_config_text(&text, &origin, state, device, engine)
            }
            None => Err(Error::MissingConfig {
                model: state.source().to_path_buf(),
            }),
        }
    }

    /// A model from MSST YAML `text` (read from `origin`) and its weights.
    pub fn from_config_text(
        text: &str,
        origin: &Path,
        state: StateDict,
        device: &Device,
        engine: Engine,
    ) -> Result<Self> {
        if is_htdemucs_config(text) {
            let config = MsstHtDemucsConfig::from_yaml(text, origin)?;
            LoadedHtDemucs::from_state_dict(config, state, device, engine).map(Self::HtDemucs)
        } else {
            let config = MsstConfig::from_yaml(text, origin)?;
            LoadedModel::from_state_dict(config, state, device, engine).map(Self::Roformer)
        }
    }

    /// The family, in words.
    pub fn family(&self) -> String {
        match self {
            Self::Roformer(m) => m.config.model.architecture().to_string(),
            Self::HtDemucs(_) => "HT Demucs".into(),
        }
    }

    /// The layer sizes that tell checkpoints of a family apart.
    pub fn shape(&self) -> String {
        match self {
            Self::Roformer(m) => {
                let c = &m.config.model;
                format!(
                    "dim {}, depth {}, heads {}x{}",
                    c.dim, c.depth, c.heads, c.dim_head
                )
            }
            Self::HtDemucs(m) => format!(
                "{}, segment {} s",
                m.config.htdemucs.shape(),
                m.config.training.segment
            ),
        }
    }

    /// The longest segment (seconds) the model runs in one chunk, where it has one: HT Demucs
    /// never runs longer chunks than it was trained on (demucs' `BagOfModels` keeps it).
    pub fn max_segment(&self) -> Option<f64> {
        match self {
            Self::Roformer(_) => None,
            Self::HtDemucs(m) => Some(m.config.training.segment),
        }
    }

    pub fn sample_rate(&self) -> u32 {
        match self {
            Self::Roformer(m) => m.config.audio.sample_rate,
            Self::HtDemucs(m) => m.config.training.samplerate,
        }
    }

    pub fn audio_channels(&self) -> usize {
        match self {
            Self::Roformer(m) => m.config.model.audio_channels(),
            Self::HtDemucs(m) => m.config.training.channels,
        }
    }

    /// The stems in output order.
    pub fn stem_names(&self) -> Vec<String> {
        match self {
            Self::Roformer(m) => m.config.stem_names(),
            Self::HtDemucs(m) => m.config.training.instruments.clone(),
        }
    }

    /// MSST `inference.normalize`.
    pub fn normalize(&self) -> bool {
        match self {
            Self::Roformer(m) => m.config.inference.normalize,
            Self::HtDemucs(m) => m.config.inference.normalize,
        }
    }

    pub fn parameters(&self) -> usize {
        match self {
            Self::Roformer(m) => m.parameters,
            Self::HtDemucs(m) => m.parameters,
        }
    }

    /// The engine that runs it, as a description.
    pub fn engine(&self) -> String {
        match self {
            Self::Roformer(m) => m.engine.to_string(),
            Self::HtDemucs(m) => m.network.engine().to_string(),
        }
    }

    /// The config's chunking (chunk, overlap, batch) and MSST's demix mode for the family.
    pub fn demix_options(&self) -> DemixOptions {
        match self {
            Self::Roformer(m) => DemixOptions {
                chunk_size: m.config.chunk_size(),
                num_overlap: m.config.inference.num_overlap,
                batch_size: m.config.inference.batch_size,
                mode: ChunkMode::Generic,
            },
            Self::HtDemucs(m) => DemixOptions {
                chunk_size: m.config.chunk_size(),
                num_overlap: m.config.inference.num_overlap,
                batch_size: m.config.inference.batch_size,
                mode: ChunkMode::Demucs,
            },
        }
    }

    /// The shortest chunk the network accepts.
    pub fn min_chunk(&self) -> usize {
        match self {
            Self::Roformer(m) => m.config.model.stft_n_fft,
            Self::HtDemucs(m) => m.config.htdemucs.nfft,
        }
    }

    pub fn network(&self) -> &dyn ChunkModel {
        match self {
            Self::Roformer(m) => &m.network,
            Self::HtDemucs(m) => &m.network,
        }
    }
}

/// The config of a Facebook demucs package: from the class's keyword arguments (sources,
/// sample rate, segment, layers), with MSST's inference defaults (4 overlapping chunks per
/// segment).
pub fn config_from_package(package: &DemucsPackage) -> Result<MsstHtDemucsConfig> {
    const HTDEMUCS: &str = "demucs.htdemucs.HTDemucs";
    if package.class_name != HTDEMUCS {
        return Err(Error::Unsupported(format!(
            "{} holds a {} model; only HT Demucs ({HTDEMUCS}) is supported",
            package.source().display(),
            package.class_name
        )));
    }
    let config = MsstHtDemucsConfig {
        training: HtDemucsTraining {
            instruments: package.sources()?,
            segment: package.segment()?,
            samplerate: package.samplerate()?,
            channels: package.audio_channels()?,
        },
        inference: HtDemucsInference::default(),
        htdemucs: package.deserialize_kwargs()?,
    };
    config.validate().map_err(|message| Error::ConfigInvalid {
        path: package.source().to_path_buf(),
        message,
    })?;
    Ok(config)
}

/// The weights of a file that carries its config, and that config as MSST YAML text: a
/// Facebook demucs package (the config written from its keyword arguments), or a state dict
/// with the config in its metadata (`roformer convert`, `roformer train`).
pub fn weights_with_config(path: &Path) -> Result<(StateDict, String)> {
    if let Some(package) = demucs_package(path)? {
        let yaml = config_from_package(&package)?.to_yaml()?;
        return Ok((package.state, yaml));
    }
    let state = load_state_dict(path)?;
    match state.metadata.get(CONFIG_METADATA_KEY) {
        Some(text) => {
            let text = text.clone();
            Ok((state, text))
        }
        None => Err(Error::MissingConfig {
            model: path.to_path_buf(),
        }),
    }
}

/// The Facebook demucs package in `path`, or `None` when the file is something else (a plain
/// state dict, a safetensors file).
pub fn demucs_package(path: &Path) -> Result<Option<DemucsPackage>> {
    if !is_torch_zip(path) {
        return Ok(None);
    }
    match load_demucs_package(path) {
        Ok(package) => Ok(Some(package)),
        Err(WeightsError::NotDemucsPackage { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether `path` starts like a zip archive (`torch.save`'s format), where a demucs package
/// may be.
fn is_torch_zip(path: &Path) -> bool {
    let mut head = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok_and(|()| &head == b"PK\x03\x04")
}

/// Whether MSST YAML text describes HT Demucs: `model: htdemucs` (MSST's own key for it), a
/// `training.model_type: htdemucs`, or an `htdemucs:` section.
pub fn is_htdemucs_config(text: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(default)]
        model: Option<ModelField>,
        #[serde(default)]
        htdemucs: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        training: Option<Training>,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum ModelField {
        Name(String),
        Section(serde::de::IgnoredAny),
    }
    #[derive(serde::Deserialize)]
    struct Training {
        #[serde(default)]
        model_type: Option<String>,
    }
    let Ok(probe) = serde_saphyr::from_str::<Probe>(text) else {
        return false;
    };
    matches!(&probe.model, Some(ModelField::Name(n)) if n == "htdemucs")
        || probe.htdemucs.is_some()
        || probe
            .training
            .and_then(|t| t.model_type)
            .is_some_and(|t| t == "htdemucs")
}
