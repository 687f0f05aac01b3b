//! Hybrid Transformer Demucs (HT Demucs v4) as MSST runs it (`models/demucs4ht.py`, layers from
//! the `demucs` 4.x package): a spectrogram U-Net (complex as channels, convolutions along
//! frequency) and a waveform U-Net side by side, joined at the bottom by a cross-domain
//! transformer; the output is the sum of both branches' estimates.

pub mod config;
pub(crate) mod conv;
pub(crate) mod cross_transformer;
pub(crate) mod dconv;
pub(crate) mod decoder_layer;
pub(crate) mod encoder_layer;
mod glu;
pub(crate) mod group_norm;
pub(crate) mod network;
pub(crate) mod rewrite;
pub(crate) mod sin_embedding;
mod spectrogram;

pub use config::{HtDemucsConfig, LayerPlan};

use candle_core::Device;

use network::ReferenceNet;
use spectrogram::Spectro;

use crate::cpu::htdemucs::FusedHtDemucs;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::weights::WeightsView;

/// The network between the spectrogram and its inverse, on the engine chosen at load (boxed:
/// both are large, and models are moved around by value).
#[derive(Debug)]
enum Net {
    Reference(Box<ReferenceNet>),
    Fused(Box<FusedHtDemucs>),
}

#[derive(Debug)]
pub struct HtDemucs {
    config: HtDemucsConfig,
    stems: usize,
    audio_channels: usize,
    spectro: Spectro,
    net: Net,
}

impl HtDemucs {
    /// Builds the model from weights under `HTDemucs`' key names (the view's root), on the
    /// reference engine.
    pub fn load(
        config: &HtDemucsConfig,
        stems: usize,
        audio_channels: usize,
        vb: &mut WeightsView<'_>,
        device: &Device,
    ) -> Result<Self> {
        config
            .validate(stems, audio_channels)
            .map_err(Error::Unsupported)?;
        let net = ReferenceNet::load(config, stems, audio_channels, vb, device)?;
        Ok(Self {
            config: config.clone(),
            stems,
            audio_channels,
            spectro: Spectro::new(config.nfft)?,
            net: Net::Reference(Box::new(net)),
        })
    }

    /// The same model on `engine`: the fused CPU engine takes the weights over (and drops the
    /// reference's copy).
    pub fn with_engine(self, engine: Engine) -> Result<Self> {
        let net = match (self.net, engine) {
            (Net::Reference(r), Engine::FusedCpu(precision)) => {
                Net::Fused(Box::new(FusedHtDemucs::new(*r, precision)?))
            }
            (net, _) => net,
        };
        Ok(Self { net, ..self })
    }

    /// The engine the network runs on.
    pub fn engine(&self) -> Engine {
        match &self.net {
            Net::Reference(_) => Engine::Reference,
            Net::Fused(f) => Engine::FusedCpu(f.precision()),
        }
    }

    pub fn config(&self) -> &HtDemucsConfig {
        &self.config
    }

    pub fn num_stems(&self) -> usize {
        self.stems
    }

    pub fn channels(&self) -> usize {
        self.audio_channels
    }

    /// Separates a batch of equally long chunks: `audio` is `[batch][channel][sample]`
    /// flattened, the result `[batch][stem][channel][sample]` flattened.
    pub fn separate_batch(&self, audio: &[f32], batch: usize, len: usize) -> Result<Vec<f32>> {
        let c = self.audio_channels;
        if audio.len() != batch * c * len || len == 0 {
            return Err(Error::InvalidChunking(format!(
                "HT Demucs got {} samples for {batch} chunk(s) of {c} x {len}",
                audio.len()
            )));
        }
        let (fr, frames) = (self.spectro.freqs(), self.spectro.frames(len));
        let mut spec = Vec::with_capacity(batch * c * 2 * fr * frames);
        for item in audio.chunks_exact(c * len) {
            let channels: Vec<&[f32]> = item.chunks_exact(len).collect();
            self.spectro.forward(&channels, &mut spec)?;
        }
        let dims = (batch, fr, frames, len);
        let (x, xt) = match &self.net {
            Net::Reference(net) => net.run(spec, audio.to_vec(), dims)?,
            Net::Fused(net) => net.run(&spec, audio, dims)?,
        };
        // The spectrogram branch back to waveforms, plus the waveform branch.
        let per_stem = c * 2 * fr * frames;
        let mut out = Vec::with_capacity(batch * self.stems * c * len);
        for stem in x.chunks_exact(per_stem) {
            self.spectro.inverse(stem, c, len, &mut out)?;
        }
        for (o, t) in out.iter_mut().zip(&xt) {
            *o += t;
        }
        Ok(out)
    }
}

impl crate::separate::Separator for HtDemucs {
    fn channels(&self) -> usize {
        self.audio_channels
    }
    fn num_stems(&self) -> usize {
        self.stems
    }
    fn separate_batch(&self, audio: &[f32], batch: usize, len: usize) -> Result<Vec<f32>> {
        HtDemucs::separate_batch(self, audio, batch, len)
    }
}
