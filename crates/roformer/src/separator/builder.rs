//! [`SeparatorBuilder`]: which model(s), on which device and engine, with which chunking.

use std::path::{Path, PathBuf};

use super::{Member, Separator};
use crate::bag::Bag;
#[cfg(feature = "default-model")]
use crate::config::MsstConfig;
use crate::cpu::Precision;
use crate::device::open_device;
use crate::engine::Engine;
use crate::error::{Error, Result};
#[cfg(feature = "default-model")]
use crate::loaded_model::{LoadedModel, SeparationModel};
use crate::separate::{DemixOptions, EnsembleAlgorithm};

/// Where a model's weights come from.
#[derive(Debug, Clone)]
enum Weights {
    File(PathBuf),
    #[cfg(feature = "default-model")]
    Builtin,
}

/// The model `Separator::builtin` opens: a small 4-stem BS-RoFormer trained with
/// `roformer train` on the rendered dataset (models/default/README.md).
#[cfg(feature = "default-model")]
const BUILTIN_MODEL: &[u8] = include_bytes!("../../../../models/default/model.safetensors");
#[cfg(feature = "default-model")]
const BUILTIN_NAME: &str = "built-in default model (models/default)";

#[derive(Debug, Clone)]
struct ModelSource {
    weights: Weights,
    config: Option<PathBuf>,
}

/// Describes a [`Separator`] before it is opened; every setting has the CLI's default.
///
/// ```no_run
/// # fn main() -> roformer::Result<()> {
/// use roformer::{Precision, Separator};
/// let separator = Separator::builder("model_bs_roformer_ep_317_sdr_12.9755.ckpt")
///     .config("model_bs_roformer_ep_317_sdr_12.9755.yaml")
///     .precision(Precision::Int8)
///     .overlap(Some(4))
///     .instrumental(true)
///     .open()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct SeparatorBuilder {
    models: Vec<ModelSource>,
    device: String,
    precision: Precision,
    reference_engine: bool,
    tta: bool,
    overlap: Option<usize>,
    chunk_size: Option<usize>,
    batch_size: Option<usize>,
    instrumental: bool,
    algorithm: EnsembleAlgorithm,
    weights: Option<Vec<f64>>,
}

impl SeparatorBuilder {
    fn with(weights: Weights) -> Self {
        Self {
            models: vec![ModelSource {
                weights,
                config: None,
            }],
            device: "cpu".into(),
            precision: Precision::F32,
            reference_engine: false,
            tta: false,
            overlap: None,
            chunk_size: None,
            batch_size: None,
            instrumental: false,
            algorithm: EnsembleAlgorithm::AvgWave,
            weights: None,
        }
    }

    pub(super) fn new(weights: PathBuf) -> Self {
        Self::with(Weights::File(weights))
    }

    #[cfg(feature = "default-model")]
    pub(super) fn builtin() -> Self {
        Self::with(Weights::Builtin)
    }

    /// The MSST YAML config of the model added last (not needed for a `.safetensors` written by
    /// `roformer convert` or `roformer train`, which carries its config).
    pub fn config(mut self, config: impl Into<PathBuf>) -> Self {
        if let Some(last) = self.models.last_mut() {
            last.config = Some(config.into());
        }
        self
    }

    /// Adds a model (or bag of models) to an ensemble: stems with the same name are combined
    /// with the [`ensemble`](Self::ensemble) algorithm; a bag counts as one model, its stems
    /// already averaged with its own weights. Every setting applies to every model.
    pub fn add_model(mut self, weights: impl Into<PathBuf>, config: Option<&Path>) -> Self {
        self.models.push(ModelSource {
            weights: Weights::File(weights.into()),
            config: config.map(Path::to_path_buf),
        });
        self
    }

    /// The compute device: `cpu` (default), `cuda`, `cuda:N`, `metal`, `metal:N`.
    pub fn device(mut self, device: impl Into<String>) -> Self {
        self.device = device.into();
        self
    }

    /// Arithmetic of the fused CPU engine's matrix products (default f32).
    pub fn precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }

    /// Runs the plain framework path instead of the fused CPU engine (slower; the reference the
    /// fused engine is tested against).
    pub fn reference_engine(mut self, on: bool) -> Self {
        self.reference_engine = on;
        self
    }

    /// MSST's test-time augmentation: also separates the channel-swapped and the
    /// polarity-inverted track and averages the three (3x slower).
    pub fn tta(mut self, on: bool) -> Self {
        self.tta = on;
        self
    }

    /// Chunks overlapping each sample (default: the config's `inference.num_overlap`).
    pub fn overlap(mut self, overlap: Option<usize>) -> Self {
        self.overlap = overlap;
        self
    }

    /// Samples per chunk (default: the config's `inference.chunk_size` or `audio.chunk_size`).
    pub fn chunk_size(mut self, chunk_size: Option<usize>) -> Self {
        self.chunk_size = chunk_size;
        self
    }

    /// Chunks per model call (default: the config's `inference.batch_size`; results do not
    /// depend on it).
    pub fn batch_size(mut self, batch_size: Option<usize>) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Also returns `instrumental` = mixture - vocals (or - the first stem), MSST's
    /// `--extract_instrumental`, unless a model writes an `instrumental` stem itself.
    pub fn instrumental(mut self, on: bool) -> Self {
        self.instrumental = on;
        self
    }

    /// How an ensemble's stems are combined (default `avg_wave`).
    pub fn ensemble(mut self, algorithm: EnsembleAlgorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// One weight per model for the `avg_*` ensemble algorithms (default all 1).
    pub fn weights(mut self, weights: Vec<f64>) -> Self {
        self.weights = Some(weights);
        self
    }

    /// Loads every model and checks that they can work together.
    pub fn open(self) -> Result<Separator> {
        let n = self.models.len();
        let weights = match self.weights.clone() {
            Some(w) if w.len() != n => {
                return Err(Error::Ensemble(format!(
                    "{} ensemble weights for {n} model(s): give one weight per model",
                    w.len()
                )))
            }
            Some(w)
                if w.iter().any(|w| !w.is_finite() || *w < 0.0) || w.iter().sum::<f64>() <= 0.0 =>
            {
                return Err(Error::Ensemble(
                    "ensemble weights must be non-negative numbers, not all zero".into(),
                ))
            }
            Some(w) => w,
            None => vec![1.0; n],
        };
        let device = open_device(&self.device)?;
        let engine = Engine::select(&device, self.reference_engine, self.precision)?;
        let members = self
            .models
            .iter()
            .zip(weights)
            .map(|(source, weight)| self.load(source, &device, engine, weight))
            .collect::<Result<Vec<_>>>()?;

        let first = &members[0].bag;
        let sample_rate = first.sample_rate();
        let channels = first.audio_channels();
        for m in &members[1..] {
            if m.bag.sample_rate() != sample_rate {
                return Err(Error::Ensemble(format!(
                    "all models of an ensemble must have the same sample rate: {} has {} Hz, {} has {} Hz",
                    first.source.display(),
                    sample_rate,
                    m.bag.source.display(),
                    m.bag.sample_rate()
                )));
            }
            if m.bag.audio_channels() != channels {
                return Err(Error::Ensemble(format!(
                    "all models of an ensemble must take the same number of channels: {} takes {}, {} takes {}",
                    first.source.display(),
                    channels,
                    m.bag.source.display(),
                    m.bag.audio_channels()
                )));
            }
        }
        let mut stems: Vec<String> = Vec::new();
        for m in &members {
            for s in m.bag.stems() {
                if !stems.contains(&s) {
                    stems.push(s);
                }
            }
        }
        let instrumental_of = (self.instrumental && !stems.iter().any(|s| s == "instrumental"))
            .then(|| stems.iter().position(|s| s == "vocals").unwrap_or(0));
        let mut outputs = stems.clone();
        if instrumental_of.is_some() {
            outputs.push("instrumental".into());
        }
        Ok(Separator {
            members,
            algorithm: self.algorithm,
            tta: self.tta,
            model_stems: stems,
            outputs,
            instrumental_of,
            sample_rate,
            channels,
            device: self.device.trim().to_ascii_lowercase(),
        })
    }

    /// Loads one model (or bag of models) and applies the chunking overrides to each model.
    fn load(
        &self,
        source: &ModelSource,
        device: &candle_core::Device,
        engine: Engine,
        weight: f64,
    ) -> Result<Member> {
        let mut bag = match &source.weights {
            Weights::File(path) => Bag::open(path, source.config.as_deref(), device, engine)?,
            #[cfg(feature = "default-model")]
            Weights::Builtin => {
                let name = PathBuf::from(BUILTIN_NAME);
                let state =
                    crate::weights::state_dict_from_safetensors_bytes(BUILTIN_MODEL, &name)?;
                let model = match &source.config {
                    Some(config) => SeparationModel::Roformer(LoadedModel::from_state_dict(
                        MsstConfig::from_file(config)?,
                        state,
                        device,
                        engine,
                    )?),
                    None => SeparationModel::from_embedded_config(state, device, engine)?,
                };
                Bag::single(name, model)
            }
        };
        for m in &mut bag.models {
            if let Some(c) = self.chunk_size {
                m.demix.chunk_size = c;
            }
            if let Some(o) = self.overlap {
                m.demix.num_overlap = o;
            }
            if let Some(b) = self.batch_size {
                m.demix.batch_size = b;
            }
            check_chunking(&m.demix, m.model.min_chunk(), &m.name)?;
        }
        Ok(Member { bag, weight })
    }
}

/// The chunking must give at least one STFT window per chunk and a step of at least a sample.
fn check_chunking(demix: &DemixOptions, min_chunk: usize, model: &Path) -> Result<()> {
    if demix.num_overlap == 0 || demix.batch_size == 0 {
        return Err(Error::InvalidChunking(format!(
            "overlap and batch size must be at least 1 (got {} and {})",
            demix.num_overlap, demix.batch_size
        )));
    }
    if demix.chunk_size < min_chunk || demix.chunk_size < demix.num_overlap {
        return Err(Error::InvalidChunking(format!(
            "chunk size {} is too small for {} (at least one STFT window, {min_chunk} samples)",
            demix.chunk_size,
            model.display()
        )));
    }
    Ok(())
}
