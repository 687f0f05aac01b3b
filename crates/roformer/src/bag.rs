//! Bags of models, as demucs' `BagOfModels` holds them (`htdemucs_ft`: four HT Demucs, one per
//! stem): every model separates the whole track with its own chunking, and stem k is
//! `Σ_m w[m][k]·out_m[k] / Σ_m w[m][k]` (demucs/apply.py; all weights 1 without a matrix, a
//! plain average). A single model is a bag of one, so the separator runs both alike.
//!
//! A bag comes from
//! - a YAML file: `models:` lists files relative to the YAML's folder, or, as in demucs' own
//!   `remote/*.yaml`, signatures that name the one `<sig>.th` or `<sig>-<checksum>.th` there
//!   (demucs' `LocalRepo` rule; the checksum is not verified); optional `weights:` (one row per
//!   model, one weight per stem) and `segment:` (seconds per chunk);
//! - a `.safetensors` written by `roformer convert`: each model's tensors under `models.N.`,
//!   its MSST config under `models.N.msst_config` and the bag under `roformer_bag` in the
//!   metadata.
//!
//! Every model must write the same stems in the same order, at the same rate and channels. The
//! models must carry their configs (Facebook `.th` packages, converted `.safetensors`).
//! `--model a.th --model b.th`, an `avg_wave` ensemble, separates as the bag of both without
//! weights does.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::Result;
use crate::loaded_model::{demucs_package, weights_with_config, LoadedHtDemucs, SeparationModel};
use crate::model::CONFIG_METADATA_KEY;
use crate::separate::ensemble::WeightedMean;
use crate::separate::DemixOptions;
use crate::weights::{load_state_dict, StateDict};

/// The metadata key of a converted bag: its number of models, weights and segment, as YAML.
pub const BAG_METADATA_KEY: &str = "roformer_bag";

/// Why a bag of models cannot be used; every message names the bag's file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BagError {
    /// The bag's file cannot be read.
    #[error("cannot read bag of models {}: {source}", .path.display())]
    Io {
        /// The bag's file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not a bag of the expected form (not YAML, no `models`, a bad segment).
    #[error("bag of models {}: {message}", .path.display())]
    Parse {
        /// The bag's file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An entry of `models` that is neither a file nor a signature of a `.th` file.
    #[error(
        "bag of models {}: model `{entry}` is neither a file nor the signature of a \
         `{entry}.th` or `{entry}-<checksum>.th` next to it",
        .path.display()
    )]
    ModelNotFound {
        /// The bag's file.
        path: PathBuf,
        /// The entry.
        entry: String,
    },
    /// A signature that several files carry.
    #[error("bag of models {}: signature `{entry}` names several files: {files}", .path.display())]
    AmbiguousModel {
        /// The bag's file.
        path: PathBuf,
        /// The entry.
        entry: String,
        /// The files, comma-separated.
        files: String,
    },
    /// A bag listed as a model of a bag.
    #[error("bag of models {}: {} is itself a bag; bags do not nest", .path.display(), .model.display())]
    Nested {
        /// The bag's file.
        path: PathBuf,
        /// The entry's file.
        model: PathBuf,
    },
    /// A weights matrix that does not fit the models and their stems.
    #[error("bag of models {}: {message}", .path.display())]
    Weights {
        /// The bag's file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A model that writes other stems, or runs at another rate or channel count, than the
    /// first.
    #[error(
        "bag of models {}: {} {what}; all models of a bag must write the same stems at the same \
         rate and channels",
        .path.display(), .model.display()
    )]
    Mismatch {
        /// The bag's file.
        path: PathBuf,
        /// The model that differs.
        model: PathBuf,
        /// How it differs from the first model.
        what: String,
    },
}

/// Whether `path` names a bag YAML (by its extension).
pub fn is_bag_yaml(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

/// A bag as its YAML describes it, its models resolved to files but not read.
#[derive(Debug, Clone)]
pub struct BagYaml {
    /// The YAML file.
    pub source: PathBuf,
    /// The models' files.
    pub models: Vec<PathBuf>,
    /// `[model][stem]`, when given.
    pub weights: Option<Vec<Vec<f64>>>,
    /// Seconds per chunk, when given.
    pub segment: Option<f64>,
}

/// The YAML's fields; demucs' remote files have exactly these.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlFields {
    #[serde(default)]
    models: Option<Vec<Entry>>,
    #[serde(default)]
    weights: Option<Vec<Vec<f64>>>,
    #[serde(default)]
    segment: Option<f64>,
}

/// A `models` entry: a path or a signature (all-digit signatures read as numbers unquoted).
#[derive(Deserialize)]
#[serde(untagged)]
enum Entry {
    Text(String),
    Number(u64),
}

impl BagYaml {
    /// Reads and checks the YAML at `path` and resolves its models.
    pub fn read(path: &Path) -> Result<Self, BagError> {
        let text = std::fs::read_to_string(path).map_err(|source| BagError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let parse = |message: String| BagError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let fields: YamlFields = serde_saphyr::from_str(&text).map_err(|e| parse(e.to_string()))?;
        let entries = fields
            .models
            .filter(|m| !m.is_empty())
            .ok_or_else(|| parse("no `models`: list the bag's model files or signatures".into()))?;
        if let Some(s) = fields.segment {
            if !s.is_finite() || s <= 0.0 {
                return Err(parse(format!(
                    "segment must be a positive number of seconds, got {s}"
                )));
            }
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let models = entries
            .into_iter()
            .map(|e| {
                let entry = match e {
                    Entry::Text(t) => t,
                    Entry::Number(n) => n.to_string(),
                };
                let file = resolve(path, &dir, &entry)?;
                if is_bag_yaml(&file) {
                    return Err(BagError::Nested {
                        path: path.to_path_buf(),
                        model: file,
                    });
                }
                Ok(file)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            source: path.to_path_buf(),
            models,
            weights: fields.weights,
            segment: fields.segment,
        })
    }

    /// Every model's weights and config.
    pub fn parts(&self) -> Result<Vec<BagPart>> {
        self.models
            .iter()
            .map(|file| {
                let (state, config) = weights_with_config(file)?;
                Ok(BagPart {
                    name: file.clone(),
                    state,
                    config,
                })
            })
            .collect()
    }
}

/// The file `entry` of the bag `yaml` names: a path relative to `dir`, else demucs'
/// `LocalRepo` rule: the `.th` file in `dir` whose stem, less any `-<checksum>`, is `entry`.
fn resolve(yaml: &Path, dir: &Path, entry: &str) -> Result<PathBuf, BagError> {
    let direct = dir.join(entry);
    if direct.is_file() {
        return Ok(direct);
    }
    let listing = std::fs::read_dir(dir).map_err(|source| BagError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut found: Vec<PathBuf> = listing
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "th") && p.is_file())
        .filter(|p| {
            let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            stem.rsplit_once('-').map_or(stem, |(sig, _)| sig) == entry
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(BagError::ModelNotFound {
            path: yaml.to_path_buf(),
            entry: entry.to_string(),
        }),
        _ => Err(BagError::AmbiguousModel {
            path: yaml.to_path_buf(),
            entry: entry.to_string(),
            files: found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// One model of a bag before it is built: its weights and its MSST config text.
#[derive(Debug, Clone)]
pub struct BagPart {
    /// The model's file (or its place in a converted bag), for messages.
    pub name: PathBuf,
    pub state: StateDict,
    pub config: String,
}

/// What a converted bag's `roformer_bag` metadata holds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConvertedBag {
    models: usize,
    weights: Vec<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    segment: Option<f64>,
}

/// Where model `i`'s tensors and config live in a converted bag.
fn model_prefix(i: usize) -> String {
    format!("models.{i}.")
}

/// The tensors and metadata of a converted bag of `parts` (the caller adds its own metadata).
pub fn converted(
    parts: &[BagPart],
    weights: &[Vec<f64>],
    segment: Option<f64>,
) -> Result<(BTreeMap<String, Tensor>, HashMap<String, String>)> {
    let mut tensors = BTreeMap::new();
    let mut metadata = HashMap::new();
    for (i, part) in parts.iter().enumerate() {
        let prefix = model_prefix(i);
        for (key, t) in &part.state.tensors {
            tensors.insert(format!("{prefix}{key}"), t.clone());
        }
        metadata.insert(
            format!("{prefix}{CONFIG_METADATA_KEY}"),
            part.config.clone(),
        );
    }
    let bag = ConvertedBag {
        models: parts.len(),
        weights: weights.to_vec(),
        segment,
    };
    let yaml = serde_saphyr::to_string(&bag).map_err(|e| {
        crate::error::Error::Unsupported(format!("cannot write the bag's metadata: {e}"))
    })?;
    metadata.insert(BAG_METADATA_KEY.to_string(), yaml);
    Ok((tensors, metadata))
}

/// One model of a loaded bag with its chunking (its config's, or the bag's segment).
#[derive(Debug)]
pub struct BagModel {
    /// The model's file (or its place in a converted bag).
    pub name: PathBuf,
    pub model: SeparationModel,
    pub demix: DemixOptions,
}

/// Loaded models whose stems are averaged with per-stem weights: a bag, or one model.
#[derive(Debug)]
pub struct Bag {
    /// The bag's file, or the model's.
    pub source: PathBuf,
    pub models: Vec<BagModel>,
    /// `[model][stem]`: finite, non-negative, no stem's column all zero.
    pub weights: Vec<Vec<f64>>,
    /// Seconds per chunk the bag asked for.
    pub segment: Option<f64>,
}

impl Bag {
    /// A model alone (weights all 1, its own chunking).
    pub fn single(name: PathBuf, model: SeparationModel) -> Self {
        let demix = model.demix_options();
        let weights = vec![vec![1.0; model.stem_names().len()]];
        Self {
            source: name.clone(),
            models: vec![BagModel { name, model, demix }],
            weights,
            segment: None,
        }
    }

    /// Opens `path`: with `config`, a checkpoint of that MSST config; without, a bag YAML, a
    /// converted bag, or a file that carries its config (a demucs package, a converted model).
    pub fn open(
        path: &Path,
        config: Option<&Path>,
        device: &Device,
        engine: Engine,
    ) -> Result<Self> {
        if let Some(config) = config {
            if is_bag_yaml(path) {
                return Err(crate::error::Error::InvalidOption(format!(
                    "{} is a bag of models, whose models carry their configs: give it no config",
                    path.display()
                )));
            }
            let model = SeparationModel::open_with_config(path, config, device, engine)?;
            return Ok(Self::single(path.to_path_buf(), model));
        }
        if is_bag_yaml(path) {
            let yaml = BagYaml::read(path)?;
            let parts = yaml.parts()?;
            return Self::from_parts(
                yaml.source,
                parts,
                yaml.weights,
                yaml.segment,
                device,
                engine,
            );
        }
        if let Some(package) = demucs_package(path)? {
            let model = LoadedHtDemucs::from_package(package, device, engine)?;
            return Ok(Self::single(
                path.to_path_buf(),
                SeparationModel::HtDemucs(model),
            ));
        }
        let state = load_state_dict(path)?;
        if state.metadata.contains_key(BAG_METADATA_KEY) {
            return Self::from_converted(state, device, engine);
        }
        let model = SeparationModel::from_embedded_config(state, device, engine)?;
        Ok(Self::single(path.to_path_buf(), model))
    }

    /// A bag from a state dict written by [`converted`].
    pub fn from_converted(state: StateDict, device: &Device, engine: Engine) -> Result<Self> {
        let source = state.source().to_path_buf();
        let parse = |message: String| BagError::Parse {
            path: source.clone(),
            message,
        };
        let text = state
            .metadata
            .get(BAG_METADATA_KEY)
            .ok_or_else(|| parse(format!("no `{BAG_METADATA_KEY}` metadata")))?;
        let bag: ConvertedBag = serde_saphyr::from_str(text)
            .map_err(|e| parse(format!("`{BAG_METADATA_KEY}` metadata: {e}")))?;
        let mut rest = state.tensors;
        let mut parts = Vec::with_capacity(bag.models);
        for i in 0..bag.models {
            let prefix = model_prefix(i);
            let key = format!("{prefix}{CONFIG_METADATA_KEY}");
            let config = state
                .metadata
                .get(&key)
                .ok_or_else(|| parse(format!("no config for model {i} (`{key}` metadata)")))?
                .clone();
            let (mine, others): (BTreeMap<_, _>, BTreeMap<_, _>) =
                rest.into_iter().partition(|(k, _)| k.starts_with(&prefix));
            rest = others;
            let tensors = mine
                .into_iter()
                .map(|(k, t)| (k[prefix.len()..].to_string(), t))
                .collect();
            let name = PathBuf::from(format!("{} (models.{i})", source.display()));
            let state = StateDict::new(tensors, HashMap::new(), name.clone());
            parts.push(BagPart {
                name,
                state,
                config,
            });
        }
        // Tensors outside every model's prefix mean the file is not what its metadata says.
        StateDict::new(rest, HashMap::new(), source.clone()).finish()?;
        Self::from_parts(
            source,
            parts,
            Some(bag.weights),
            bag.segment,
            device,
            engine,
        )
    }

    /// Builds every part and checks that they form a bag (same stems, rate and channels; a
    /// weight per model and stem). `segment` sets each model's chunk as demucs' `BagOfModels`
    /// does: not for an HT Demucs trained on shorter segments.
    pub fn from_parts(
        source: PathBuf,
        parts: Vec<BagPart>,
        weights: Option<Vec<Vec<f64>>>,
        segment: Option<f64>,
        device: &Device,
        engine: Engine,
    ) -> Result<Self> {
        let models = parts
            .into_iter()
            .map(|part| {
                let model = SeparationModel::from_config_text(
                    &part.config,
                    &part.name,
                    part.state,
                    device,
                    engine,
                )?;
                let mut demix = model.demix_options();
                if let Some(s) = segment.filter(|&s| model.max_segment().is_none_or(|max| s <= max))
                {
                    // MSST's "demucs" demix: `samplerate * segment` samples per chunk.
                    demix.chunk_size = (model.sample_rate() as f64 * s) as usize;
                }
                Ok(BagModel {
                    name: part.name,
                    model,
                    demix,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let Some(first) = models.first() else {
            return Err(BagError::Parse {
                path: source,
                message: "no models".into(),
            }
            .into());
        };
        let stems = first.model.stem_names();
        for m in &models[1..] {
            let what = if m.model.stem_names() != stems {
                format!(
                    "writes stems {} where {} writes {}",
                    m.model.stem_names().join(", "),
                    first.name.display(),
                    stems.join(", ")
                )
            } else if m.model.sample_rate() != first.model.sample_rate() {
                format!(
                    "runs at {} Hz where {} runs at {} Hz",
                    m.model.sample_rate(),
                    first.name.display(),
                    first.model.sample_rate()
                )
            } else if m.model.audio_channels() != first.model.audio_channels() {
                format!(
                    "takes {} channel(s) where {} takes {}",
                    m.model.audio_channels(),
                    first.name.display(),
                    first.model.audio_channels()
                )
            } else {
                continue;
            };
            return Err(BagError::Mismatch {
                path: source,
                model: m.name.clone(),
                what,
            }
            .into());
        }
        let weights = checked_weights(&source, weights, models.len(), &stems)?;
        Ok(Self {
            source,
            models,
            weights,
            segment,
        })
    }

    /// The stems every model writes, in order.
    pub fn stems(&self) -> Vec<String> {
        self.models[0].model.stem_names()
    }

    pub fn sample_rate(&self) -> u32 {
        self.models[0].model.sample_rate()
    }

    pub fn audio_channels(&self) -> usize {
        self.models[0].model.audio_channels()
    }

    /// Scalars in all models' tensors.
    pub fn parameters(&self) -> usize {
        self.models.iter().map(|m| m.model.parameters()).sum()
    }

    /// Runs `separate` (`[stem][channel][sample]` of one model) on every model in turn and
    /// returns the weighted average of their stems, holding one model's output at a time.
    pub fn separate_with(
        &self,
        mut separate: impl FnMut(&BagModel) -> Result<Vec<Vec<Vec<f32>>>>,
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        if let [model] = self.models.as_slice() {
            return separate(model);
        }
        // [stem][channel]
        let mut means: Vec<Vec<WeightedMean<f32>>> = Vec::new();
        for (model, row) in self.models.iter().zip(&self.weights) {
            let stems = separate(model)?;
            if means.is_empty() {
                means = stems
                    .iter()
                    .map(|s| s.iter().map(|c| WeightedMean::new(c.len())).collect())
                    .collect();
            }
            for ((mean, stem), &w) in means.iter_mut().zip(&stems).zip(row) {
                for (m, channel) in mean.iter_mut().zip(stem) {
                    m.add(channel, w);
                }
            }
        }
        Ok(means
            .into_iter()
            .map(|stem| stem.into_iter().map(WeightedMean::finish).collect())
            .collect())
    }
}

/// The weights matrix (all ones when absent), checked against the models and their stems.
fn checked_weights(
    source: &Path,
    weights: Option<Vec<Vec<f64>>>,
    models: usize,
    stems: &[String],
) -> Result<Vec<Vec<f64>>, BagError> {
    let error = |message: String| BagError::Weights {
        path: source.to_path_buf(),
        message,
    };
    let Some(weights) = weights else {
        return Ok(vec![vec![1.0; stems.len()]; models]);
    };
    if weights.len() != models {
        return Err(error(format!(
            "{} weight rows for {models} models: give one row per model",
            weights.len()
        )));
    }
    if let Some((i, row)) = weights
        .iter()
        .enumerate()
        .find(|(_, r)| r.len() != stems.len())
    {
        return Err(error(format!(
            "weight row {} has {} weights, but the models write {} stems ({})",
            i + 1,
            row.len(),
            stems.len(),
            stems.join(", ")
        )));
    }
    for (k, stem) in stems.iter().enumerate() {
        let column: Vec<f64> = weights.iter().map(|r| r[k]).collect();
        if column.iter().any(|w| !w.is_finite() || *w < 0.0) || column.iter().sum::<f64>() <= 0.0 {
            return Err(error(format!(
                "the weights of stem `{stem}` must be non-negative numbers, not all zero, got \
                 {column:?}"
            )));
        }
    }
    Ok(weights)
}
