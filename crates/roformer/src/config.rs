//! MSST YAML configs (`audio`, `model`, `training`, `inference` sections) as typed values.
//!
//! Field names and defaults follow MSST's `BSRoformer.__init__` keyword arguments and its
//! `inference.py`/`utils/model_utils.py`, so an unmodified community config loads as is.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::train::augment::AugmentationConfig;

/// MSST's `DEFAULT_FREQS_PER_BANDS`: 62 bands over the 1025 bins of a 2048-point FFT.
pub const DEFAULT_FREQS_PER_BANDS: [usize; 62] = [
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, //
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, //
    12, 12, 12, 12, 12, 12, 12, 12, //
    24, 24, 24, 24, 24, 24, 24, 24, //
    48, 48, 48, 48, 48, 48, 48, 48, //
    128, 129,
];

/// A whole MSST config file.
#[derive(Debug, Clone, Deserialize)]
pub struct MsstConfig {
    pub audio: AudioConfig,
    pub model: ModelConfig,
    pub training: TrainingConfig,
    #[serde(default)]
    pub inference: InferenceConfig,
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// Training-time augmentations (off when the section is absent).
    #[serde(default)]
    pub augmentations: AugmentationConfig,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AudioConfig {
    /// Samples per inference chunk (used unless `inference.chunk_size` is set).
    pub chunk_size: usize,
    #[serde(default = "default_sample_rate")]
    pub sample_rate: u32,
    #[serde(default)]
    pub num_channels: Option<usize>,
    #[serde(default)]
    pub min_mean_abs: Option<f64>,
}

fn default_sample_rate() -> u32 {
    44100
}

/// The `model` section: `BSRoformer` keyword arguments with MSST's defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelConfig {
    pub dim: usize,
    pub depth: usize,
    #[serde(default)]
    pub stereo: bool,
    #[serde(default = "one")]
    pub num_stems: usize,
    #[serde(default = "two")]
    pub time_transformer_depth: usize,
    #[serde(default = "two")]
    pub freq_transformer_depth: usize,
    #[serde(default)]
    pub linear_transformer_depth: usize,
    /// BS-RoFormer band widths (MSST's default when absent).
    #[serde(default)]
    pub freqs_per_bands: Option<Vec<usize>>,
    /// Mel-Band RoFormer: the number of mel bands. Present without `freqs_per_bands`, it selects
    /// the Mel-Band architecture.
    #[serde(default)]
    pub num_bands: Option<usize>,
    /// Mel-Band RoFormer: the sample rate its mel filterbank is built for.
    #[serde(default = "default_sample_rate")]
    pub sample_rate: u32,
    /// Mel-Band RoFormer: reconstruct exactly the input length (else `hop * (frames - 1)`).
    #[serde(default)]
    pub match_input_audio_length: bool,
    #[serde(default = "default_dim_head")]
    pub dim_head: usize,
    #[serde(default = "default_heads")]
    pub heads: usize,
    #[serde(default = "default_n_fft")]
    pub stft_n_fft: usize,
    #[serde(default = "default_hop")]
    pub stft_hop_length: usize,
    #[serde(default = "default_n_fft")]
    pub stft_win_length: usize,
    #[serde(default)]
    pub stft_normalized: bool,
    /// MSST zeroes the DC bin before the iSTFT unless told otherwise.
    #[serde(default = "yes")]
    pub zero_dc: bool,
    /// Default 2 for BS-RoFormer, 1 for Mel-Band RoFormer (see [`ModelConfig::mask_depth`]).
    #[serde(default)]
    pub mask_estimator_depth: Option<usize>,
    #[serde(default = "default_mlp_expansion")]
    pub mlp_expansion_factor: usize,
    /// Dropout rates of training (inference ignores them; the trainer does not apply them yet).
    #[serde(default)]
    pub attn_dropout: f64,
    #[serde(default)]
    pub ff_dropout: f64,
    #[serde(default)]
    pub skip_connection: bool,
    #[serde(default)]
    pub use_pope: bool,
    #[serde(default = "default_multi_stft_weight")]
    pub multi_stft_resolution_loss_weight: f64,
    #[serde(default = "default_multi_stft_windows")]
    pub multi_stft_resolutions_window_sizes: Vec<usize>,
    #[serde(default = "default_multi_stft_hop")]
    pub multi_stft_hop_size: usize,
    #[serde(default)]
    pub multi_stft_normalized: bool,
}

fn one() -> usize {
    1
}
fn two() -> usize {
    2
}
fn yes() -> bool {
    true
}
fn default_dim_head() -> usize {
    64
}
fn default_heads() -> usize {
    8
}
fn default_n_fft() -> usize {
    2048
}
fn default_hop() -> usize {
    512
}
fn default_mlp_expansion() -> usize {
    4
}
fn default_multi_stft_weight() -> f64 {
    1.0
}
fn default_multi_stft_windows() -> Vec<usize> {
    vec![4096, 2048, 1024, 512, 256]
}
fn default_multi_stft_hop() -> usize {
    147
}

/// The `training` section; the defaults are MSST's where it has one, else its configs' usual value.
#[derive(Debug, Clone, Deserialize)]
pub struct TrainingConfig {
    pub instruments: Vec<String>,
    #[serde(default)]
    pub target_instrument: Option<String>,
    #[serde(default = "one")]
    pub batch_size: usize,
    #[serde(default = "one")]
    pub gradient_accumulation_steps: usize,
    /// Max global gradient norm; 0 turns clipping off.
    #[serde(default)]
    pub grad_clip: f64,
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// ReduceLROnPlateau: epochs without improvement before the learning rate drops.
    #[serde(default = "two")]
    pub patience: usize,
    #[serde(default = "default_reduce_factor")]
    pub reduce_factor: f64,
    #[serde(default = "default_num_epochs")]
    pub num_epochs: usize,
    /// Batches per epoch (MSST counts batches, not optimiser steps, under gradient accumulation).
    #[serde(default = "default_num_steps")]
    pub num_steps: usize,
    /// `masked_loss` quantile.
    #[serde(default = "default_q")]
    pub q: f64,
    #[serde(default = "yes")]
    pub coarse_loss_clip: bool,
    /// EMA decay of the weights; 0 turns EMA off.
    #[serde(default)]
    pub ema_momentum: f64,
    #[serde(default = "default_optimizer")]
    pub optimizer: String,
    /// MSST `training.scheduler` (default ReduceLROnPlateau, the only one the trainer has).
    #[serde(default)]
    pub scheduler: Option<String>,
}

/// The optional top-level `optimizer` section: keyword arguments MSST passes to the optimiser.
#[derive(Debug, Clone, Deserialize)]
pub struct OptimizerConfig {
    #[serde(default = "default_betas")]
    pub betas: Vec<f64>,
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// `None`: the optimiser's own default (Adam 0, AdamW 0.01).
    #[serde(default)]
    pub weight_decay: Option<f64>,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            betas: default_betas(),
            eps: default_eps(),
            weight_decay: None,
        }
    }
}

fn default_lr() -> f64 {
    5e-5
}
fn default_reduce_factor() -> f64 {
    0.95
}
fn default_num_epochs() -> usize {
    1000
}
fn default_num_steps() -> usize {
    1000
}
fn default_q() -> f64 {
    0.95
}
fn default_optimizer() -> String {
    "adam".into()
}
fn default_betas() -> Vec<f64> {
    vec![0.9, 0.999]
}
fn default_eps() -> f64 {
    1e-8
}

#[derive(Debug, Clone, Deserialize)]
pub struct InferenceConfig {
    #[serde(default = "one")]
    pub batch_size: usize,
    #[serde(default = "two")]
    pub num_overlap: usize,
    #[serde(default)]
    pub chunk_size: Option<usize>,
    /// Mono-mix mean/std normalisation around the model (MSST `inference.normalize`).
    #[serde(default)]
    pub normalize: bool,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            batch_size: 1,
            num_overlap: 2,
            chunk_size: None,
            normalize: false,
        }
    }
}

/// The network family a config describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// MSST `BSRoformer`: contiguous bands (`freqs_per_bands`).
    BsRoformer,
    /// MSST `MelBandRoformer`: overlapping mel bands (`num_bands`).
    MelBandRoformer,
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Architecture::BsRoformer => "BS-RoFormer",
            Architecture::MelBandRoformer => "Mel-Band RoFormer",
        })
    }
}

impl ModelConfig {
    pub fn architecture(&self) -> Architecture {
        if self.num_bands.is_some() && self.freqs_per_bands.is_none() {
            Architecture::MelBandRoformer
        } else {
            Architecture::BsRoformer
        }
    }

    /// BS-RoFormer band widths in frequency bins.
    pub fn freqs_per_bands(&self) -> Vec<usize> {
        self.freqs_per_bands
            .clone()
            .unwrap_or_else(|| DEFAULT_FREQS_PER_BANDS.to_vec())
    }

    /// `mask_estimator_depth` with the default of the architecture.
    pub fn mask_depth(&self) -> usize {
        self.mask_estimator_depth
            .unwrap_or(match self.architecture() {
                Architecture::BsRoformer => 2,
                Architecture::MelBandRoformer => 1,
            })
    }

    pub fn audio_channels(&self) -> usize {
        if self.stereo {
            2
        } else {
            1
        }
    }

    /// Frequency bins of the one-sided spectrum.
    pub fn num_freqs(&self) -> usize {
        self.stft_n_fft / 2 + 1
    }

    /// Width of each BS band's input vector: `[freq][channel][re, im]`.
    pub fn band_input_dims(&self) -> Vec<usize> {
        let c = self.audio_channels();
        self.freqs_per_bands().iter().map(|f| 2 * f * c).collect()
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let positive = [
            ("dim", self.dim),
            ("depth", self.depth),
            ("num_stems", self.num_stems),
            ("heads", self.heads),
            ("dim_head", self.dim_head),
            ("stft_n_fft", self.stft_n_fft),
            ("stft_hop_length", self.stft_hop_length),
            ("stft_win_length", self.stft_win_length),
            ("mask_estimator_depth", self.mask_depth()),
            ("mlp_expansion_factor", self.mlp_expansion_factor),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("model.{name} must be positive"));
            }
        }
        if !self.dim_head.is_multiple_of(2) {
            return Err(format!(
                "model.dim_head must be even for rotary embeddings, got {}",
                self.dim_head
            ));
        }
        if self.stft_win_length > self.stft_n_fft {
            return Err(format!(
                "model.stft_win_length ({}) must not exceed model.stft_n_fft ({})",
                self.stft_win_length, self.stft_n_fft
            ));
        }
        if self.stft_normalized {
            return Err("model.stft_normalized: true is not supported".into());
        }
        if self.use_pope {
            return Err("model.use_pope: true (PoPE positions) is not supported yet".into());
        }
        if self.architecture() == Architecture::MelBandRoformer {
            return match self.num_bands {
                Some(n) if n >= 2 => Ok(()),
                _ => Err("model.num_bands must be at least 2".into()),
            };
        }
        let bands = self.freqs_per_bands();
        if bands.len() < 2 || bands.contains(&0) {
            return Err("model.freqs_per_bands needs at least two bands, none empty".into());
        }
        let total: usize = bands.iter().sum();
        if total != self.num_freqs() {
            return Err(format!(
                "model.freqs_per_bands sums to {total}, but stft_n_fft {} gives {} frequency bins",
                self.stft_n_fft,
                self.num_freqs()
            ));
        }
        Ok(())
    }
}

/// The text of a config file; the error names it.
pub fn read_config_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::ConfigIo {
        path: path.to_path_buf(),
        source,
    })
}

impl MsstConfig {
    /// Reads and validates an MSST YAML config file.
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_yaml(&read_config_text(path)?, path)
    }

    /// Parses YAML text; `origin` names the source in error messages.
    pub fn from_yaml(text: &str, origin: &Path) -> Result<Self> {
        let origin: PathBuf = origin.to_path_buf();
        if crate::loaded_model::is_htdemucs_config(text) {
            return Err(Error::ConfigInvalid {
                path: origin,
                message: "this is an HT Demucs config (model: htdemucs): `separate` and `eval` \
                          run it, the other commands take RoFormers only so far"
                    .into(),
            });
        }
        let config: MsstConfig = serde_saphyr::from_str(text).map_err(|e| Error::ConfigParse {
            path: origin.clone(),
            message: e.to_string(),
        })?;
        config.validate().map_err(|message| Error::ConfigInvalid {
            path: origin,
            message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        self.model.validate()?;
        if self.training.instruments.is_empty() && self.training.target_instrument.is_none() {
            return Err("training.instruments is empty".into());
        }
        let stems = self.stem_names().len();
        if stems != self.model.num_stems {
            return Err(format!(
                "the model predicts {} stem(s) but the config names {} target(s) ({}): set \
                 training.target_instrument for a single-stem model, or list one instrument per stem",
                self.model.num_stems,
                stems,
                self.stem_names().join(", ")
            ));
        }
        if self.chunk_size() < self.model.stft_n_fft {
            return Err(format!(
                "chunk size {} is shorter than one STFT window ({})",
                self.chunk_size(),
                self.model.stft_n_fft
            ));
        }
        if self.inference.num_overlap == 0 || self.inference.batch_size == 0 {
            return Err("inference.num_overlap and inference.batch_size must be positive".into());
        }
        Ok(())
    }

    /// The stems the model writes, in output order (MSST `prefer_target_instrument`).
    pub fn stem_names(&self) -> Vec<String> {
        match &self.training.target_instrument {
            Some(t) if !t.is_empty() => vec![t.clone()],
            _ => self.training.instruments.clone(),
        }
    }

    /// Inference chunk length: `inference.chunk_size`, else `audio.chunk_size`.
    pub fn chunk_size(&self) -> usize {
        self.inference.chunk_size.unwrap_or(self.audio.chunk_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
audio:
  chunk_size: 352800
  sample_rate: 44100
model:
  dim: 512
  depth: 12
  stereo: true
  num_stems: 1
  freqs_per_bands: !!python/tuple
    - 512
    - 513
  stft_hop_length: 441
  multi_stft_normalized: False
training:
  instruments: [vocals, other]
  target_instrument: vocals
  lr: 5.0e-05
inference:
  batch_size: 4
  num_overlap: 2
"#;

    fn parse(text: &str) -> Result<MsstConfig> {
        MsstConfig::from_yaml(text, Path::new("test.yaml"))
    }

    #[test]
    fn reads_python_tuples_and_msst_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.model.freqs_per_bands(), vec![512, 513]);
        assert_eq!(c.model.architecture(), Architecture::BsRoformer);
        assert_eq!(c.model.mask_depth(), 2);
        assert_eq!(c.model.stft_hop_length, 441);
        // BSRoformer defaults from MSST's signature.
        assert_eq!(c.model.dim_head, 64);
        assert_eq!(c.model.heads, 8);
        assert_eq!(c.model.time_transformer_depth, 2);
        assert!(c.model.zero_dc);
        assert_eq!(c.model.mlp_expansion_factor, 4);
        assert_eq!(c.stem_names(), vec!["vocals".to_string()]);
        assert_eq!(c.chunk_size(), 352800);
        assert_eq!(c.inference.batch_size, 4);
    }

    #[test]
    fn default_bands_cover_a_2048_fft() {
        assert_eq!(DEFAULT_FREQS_PER_BANDS.iter().sum::<usize>(), 1025);
    }

    #[test]
    fn missing_required_key_is_named() {
        let text = MINIMAL.replace("  dim: 512\n", "");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("dim"), "{err}");
        assert!(err.contains("test.yaml"), "{err}");
    }

    #[test]
    fn bands_must_cover_the_spectrum() {
        let text = MINIMAL.replace("    - 513\n", "    - 500\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("sums to 1012"), "{err}");
    }

    #[test]
    fn stem_count_must_match_the_targets() {
        let text = MINIMAL.replace("  target_instrument: vocals\n", "");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("1 stem(s)") && err.contains("2 target(s)"),
            "{err}"
        );
    }
}
