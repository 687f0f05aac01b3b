//! The library's front door: [`Separator`] loads a model (or an ensemble of models) once and
//! separates audio with it, in memory ([`Separator::separate`]) or file to files with flat memory
//! ([`Separator::separate_file`]). The CLI, `eval`, the Python package and the server all go
//! through it, so its behaviour is MSST's inference, whoever calls it.

mod builder;
#[cfg(feature = "audio")]
mod file;
mod hooks;
mod stems;

use std::path::PathBuf;

pub use builder::SeparatorBuilder;
#[cfg(feature = "audio")]
pub use file::{FileOptions, FileOutcome};
pub use hooks::{CancelToken, Hooks, Notice, Progress};
pub use stems::Stems;

use crate::audio::{to_channels, Audio};
use crate::bag::{Bag, BagModel};
use crate::error::{Error, Result};
use crate::separate::{
    self, ensemble, separate_track_with_tta, EnsembleAlgorithm, Separator as ChunkModel,
};

/// One input of a separator's ensemble: a model, or a bag of models (each with its chunking:
/// its config's, the bag's segment, overridden by the builder), and its ensemble weight.
#[derive(Debug)]
struct Member {
    bag: Bag,
    weight: f64,
}

impl Member {
    /// The model, when the member is one model and not a bag of several.
    fn single(&self) -> Option<&BagModel> {
        match self.bag.models.as_slice() {
            [model] => Some(model),
            _ => None,
        }
    }
}

/// A loaded model (or ensemble) ready to separate; see the [crate documentation](crate).
///
/// `Separator` is `Send + Sync`: one instance, shared by reference or in an `Arc`, serves
/// separations from several threads at once.
///
/// ```
/// # fn main() -> roformer::Result<()> {
/// use roformer::{Audio, Separator};
/// let separator = Separator::builtin().open()?;
/// // Half a second of a 440 Hz tone, at the model's rate, in stereo.
/// let rate = separator.sample_rate();
/// let tone: Vec<f32> = (0..rate / 2)
///     .map(|i| 0.1 * (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin())
///     .collect();
/// let audio = Audio::new(rate, vec![tone.clone(), tone])?;
/// let stems = separator.separate(&audio)?;
/// assert_eq!(stems.names().collect::<Vec<_>>(), ["vocals", "drums", "bass", "other"]);
/// assert_eq!(stems.get("vocals").unwrap().frames(), audio.frames());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Separator {
    members: Vec<Member>,
    algorithm: EnsembleAlgorithm,
    tta: bool,
    /// Every stem some model writes, in order of first appearance.
    model_stems: Vec<String>,
    /// `model_stems`, then `instrumental` when it was asked for and no model writes it.
    outputs: Vec<String>,
    /// The stem the instrumental is the mixture minus (MSST: vocals, else the first stem).
    instrumental_of: Option<usize>,
    sample_rate: u32,
    channels: usize,
    device: String,
}

/// What one model (or bag of models) of a separator is, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModelInfo {
    /// The weights file, the bag's file, or the built-in model's name.
    pub name: PathBuf,
    /// How many models it averages: 1, or a bag's count.
    pub models: usize,
    /// Scalars in the checkpoint's tensors.
    pub parameters: usize,
    /// The stems this model writes.
    pub stems: Vec<String>,
    /// The device and the engine that run it, in words.
    pub engine: String,
}

impl Separator {
    /// Starts describing a separator for the checkpoint at `weights` (`.ckpt`/`.pth` with an
    /// MSST YAML config, a `.safetensors` that carries its config, a Facebook demucs `.th`), or
    /// for a bag of models (a bag `.yaml` or a converted bag; see `roformer::bag` with the
    /// `internals` feature), whose models' stems are averaged with the bag's weights.
    pub fn builder(weights: impl Into<PathBuf>) -> SeparatorBuilder {
        SeparatorBuilder::new(weights.into())
    }

    /// Starts describing a separator for the small 4-stem model built into the library
    /// (`models/default`: vocals, drums, bass, other).
    #[cfg(feature = "default-model")]
    pub fn builtin() -> SeparatorBuilder {
        SeparatorBuilder::builtin()
    }

    /// The sample rate the models run at; outputs are at this rate.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The channels the models take (2 for stereo models); outputs have this many.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The names of the stems a separation returns, in order.
    pub fn stems(&self) -> &[String] {
        &self.outputs
    }

    /// The models, in order.
    pub fn models(&self) -> Vec<ModelInfo> {
        self.members
            .iter()
            .map(|m| ModelInfo {
                name: m.bag.source.clone(),
                models: m.bag.models.len(),
                parameters: m.bag.parameters(),
                stems: m.bag.stems(),
                engine: format!("{} ({})", self.device, m.bag.models[0].model.engine()),
            })
            .collect()
    }

    /// Separates `audio` into [`stems`](Self::stems). Audio at another rate is resampled (with
    /// the `audio` feature; without it, that is an error) and adapted to the model's channels.
    pub fn separate(&self, audio: &Audio) -> Result<Stems> {
        self.separate_with(audio, &mut Hooks::new())
    }

    /// [`separate`](Self::separate), reporting progress and notices to `hooks` and stopping
    /// when its token is cancelled.
    pub fn separate_with(&self, audio: &Audio, hooks: &mut Hooks<'_>) -> Result<Stems> {
        let audio = self.adapt(audio, hooks)?;
        let mut stems = self.separate_adapted(audio.channels(), hooks)?;
        if let Some(of) = self.instrumental_of {
            let rest = difference(audio.channels(), &stems[of]);
            stems.push(rest);
        }
        let named = self
            .outputs
            .iter()
            .zip(stems)
            .map(|(name, channels)| Ok((name.clone(), Audio::new(self.sample_rate, channels)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Stems::new(named))
    }

    /// `audio` at the model's rate and channel count, with notices about what was changed.
    fn adapt(&self, audio: &Audio, hooks: &mut Hooks<'_>) -> Result<Audio> {
        if audio.frames() == 0 {
            return Err(Error::EmptyAudio);
        }
        let samples = hooks::count_non_finite(audio.channels());
        if samples > 0 {
            hooks.tell(Notice::NonFinite { samples });
        }
        let audio = if audio.sample_rate() == self.sample_rate {
            audio.clone()
        } else {
            hooks.tell(Notice::Resampling {
                from: audio.sample_rate(),
                to: self.sample_rate,
            });
            resample_to(audio, self.sample_rate)?
        };
        let (audio, note) = to_channels(audio, self.channels);
        if let Some(note) = note {
            hooks.tell(Notice::Channels(note));
        }
        Ok(audio)
    }

    /// Every model separates `mix` (planar, at the model's rate and channels); stems several
    /// models write are combined. One entry per `self.model_stems`.
    fn separate_adapted(
        &self,
        mix: &[Vec<f32>],
        hooks: &mut Hooks<'_>,
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        let models: usize = self.members.iter().map(|m| m.bag.models.len()).sum();
        let mut index = 0;
        let mut outputs = Vec::with_capacity(self.members.len());
        for m in &self.members {
            let separated = m.bag.separate_with(|sub| {
                let model = Watched {
                    model: sub.model.network(),
                    cancel: hooks.token().cloned(),
                };
                let mut progress = |p: separate::Progress| {
                    hooks.report(Progress {
                        model: index,
                        models,
                        chunks_done: p.chunks_done,
                        chunks_total: p.chunks_total,
                    })
                };
                let stems = separate_track_with_tta(
                    &model,
                    mix,
                    &sub.demix,
                    sub.model.normalize(),
                    self.tta,
                    &mut progress,
                );
                index += 1;
                stems
            })?;
            let names = m.bag.stems();
            outputs.push(names.into_iter().zip(separated).collect::<Vec<_>>());
        }
        self.model_stems
            .iter()
            .map(|stem| {
                let mut signals = Vec::new();
                let mut weights = Vec::new();
                for (m, out) in self.members.iter().zip(outputs.iter_mut()) {
                    if let Some((_, s)) = out.iter_mut().find(|(name, _)| name == stem) {
                        signals.push(std::mem::take(s));
                        weights.push(m.weight);
                    }
                }
                match signals.len() {
                    1 => Ok(signals.pop().unwrap_or_default()),
                    _ => ensemble(&signals, Some(&weights), self.algorithm),
                }
            })
            .collect()
    }
}

/// `mix - stem`, channel by channel (MSST `--extract_instrumental`).
fn difference(mix: &[Vec<f32>], stem: &[Vec<f32>]) -> Vec<Vec<f32>> {
    mix.iter()
        .zip(stem)
        .map(|(m, s)| m.iter().zip(s).map(|(m, s)| m - s).collect())
        .collect()
}

#[cfg(feature = "audio")]
fn resample_to(audio: &Audio, rate: u32) -> Result<Audio> {
    Ok(crate::audio::resample(audio, rate)?)
}

#[cfg(not(feature = "audio"))]
fn resample_to(audio: &Audio, rate: u32) -> Result<Audio> {
    Err(Error::SampleRateMismatch {
        expected: rate,
        found: audio.sample_rate(),
    })
}

/// A chunk model that stops before its next call once its token is cancelled.
struct Watched<'a> {
    model: &'a dyn ChunkModel,
    cancel: Option<CancelToken>,
}

impl ChunkModel for Watched<'_> {
    fn channels(&self) -> usize {
        self.model.channels()
    }
    fn num_stems(&self) -> usize {
        self.model.num_stems()
    }
    fn separate_batch(&self, audio: &[f32], batch: usize, len: usize) -> Result<Vec<f32>> {
        if self.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
            return Err(Error::Cancelled);
        }
        self.model.separate_batch(audio, batch, len)
    }
}
