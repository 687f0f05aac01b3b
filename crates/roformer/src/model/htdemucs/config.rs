//! HT Demucs hyper-parameters: the keyword arguments of `HTDemucs.__init__` (MSST's
//! `models/demucs4ht.py`, Facebook's `demucs/htdemucs.py`) with their defaults, and the layer
//! plan that `__init__` derives from them.

use serde::{Deserialize, Serialize};

/// The `htdemucs:` section of an MSST config, or the `kwargs` of a Facebook `.th` file.
/// Unknown keys are ignored, as both accept options that inference does not use
/// (learning rates, weight decay, init scales).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct HtDemucsConfig {
    pub channels: usize,
    pub channels_time: Option<usize>,
    pub growth: f64,
    pub nfft: usize,
    pub num_subbands: usize,
    pub wiener_iters: i64,
    pub cac: bool,
    pub depth: usize,
    pub rewrite: bool,
    pub multi_freqs: Vec<f64>,
    pub freq_emb: f64,
    pub emb_scale: f64,
    pub kernel_size: usize,
    pub time_stride: usize,
    pub stride: usize,
    pub context: usize,
    pub context_enc: usize,
    pub norm_starts: usize,
    pub norm_groups: usize,
    pub dconv_mode: u8,
    pub dconv_depth: i64,
    pub dconv_comp: f64,
    pub bottom_channels: usize,
    pub t_layers: usize,
    pub t_emb: String,
    pub t_hidden_scale: f64,
    pub t_heads: usize,
    pub t_norm_in: bool,
    pub t_norm_in_group: bool,
    pub t_group_norm: bool,
    pub t_norm_first: bool,
    pub t_norm_out: bool,
    pub t_max_period: f64,
    pub t_layer_scale: bool,
    pub t_gelu: bool,
    pub t_weight_pos_embed: f64,
    pub t_sin_random_shift: usize,
    pub t_sparse_self_attn: bool,
    pub t_sparse_cross_attn: bool,
    pub t_cross_first: bool,
}

impl Default for HtDemucsConfig {
    /// `HTDemucs.__init__`'s defaults.
    fn default() -> Self {
        Self {
            channels: 48,
            channels_time: None,
            growth: 2.0,
            nfft: 4096,
            num_subbands: 1,
            wiener_iters: 0,
            cac: true,
            depth: 4,
            rewrite: true,
            multi_freqs: Vec::new(),
            freq_emb: 0.2,
            emb_scale: 10.0,
            kernel_size: 8,
            time_stride: 2,
            stride: 4,
            context: 1,
            context_enc: 0,
            norm_starts: 4,
            norm_groups: 4,
            dconv_mode: 1,
            dconv_depth: 2,
            dconv_comp: 8.0,
            bottom_channels: 0,
            t_layers: 5,
            t_emb: "sin".into(),
            t_hidden_scale: 4.0,
            t_heads: 8,
            t_norm_in: true,
            t_norm_in_group: false,
            t_group_norm: false,
            t_norm_first: true,
            t_norm_out: true,
            t_max_period: 10000.0,
            t_layer_scale: true,
            t_gelu: true,
            t_weight_pos_embed: 1.0,
            t_sin_random_shift: 0,
            t_sparse_self_attn: false,
            t_sparse_cross_attn: false,
            t_cross_first: false,
        }
    }
}

/// One encoder index of the plan: the frequency layer and, before the branches merge, its
/// time twin (the decoder mirrors both).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPlan {
    /// Whether the frequency branch still has a frequency axis here (else the layer is a time
    /// convolution on the merged branch).
    pub freq: bool,
    /// This layer uses up the frequency axis: kernel = the frequencies left, no padding; the
    /// time twin is `empty` (just its convolution, injected into the frequency branch).
    pub last_freq: bool,
    pub kernel: usize,
    pub stride: usize,
    /// Padding of the main convolution (`kernel / 4`, or 0 for `last_freq`).
    pub pad: usize,
    pub norm: bool,
    /// Frequency-branch channels in and out of the encoder layer.
    pub chin_z: usize,
    pub chout_z: usize,
    /// Time-branch channels (when `freq`).
    pub chin_t: usize,
    pub chout_t: usize,
    /// Decoder output channels (the encoder's input, except at index 0: every stem's).
    pub dec_out_z: usize,
    pub dec_out_t: usize,
}

impl HtDemucsConfig {
    /// Checks what this port runs; the message names the option.
    pub fn validate(&self, stems: usize, audio_channels: usize) -> Result<(), String> {
        let unsupported = |what: &str| Err(format!("htdemucs: {what} is not supported"));
        if !self.cac {
            return unsupported("cac: false (magnitude masking with Wiener filtering)");
        }
        if self.num_subbands != 1 {
            return unsupported("num_subbands other than 1");
        }
        if !self.multi_freqs.is_empty() {
            return unsupported("multi_freqs (MultiWrap)");
        }
        if self.t_layers > 0 && self.t_emb != "sin" {
            return Err(format!(
                "htdemucs: t_emb: {} is not supported (only sin)",
                self.t_emb
            ));
        }
        if self.t_sparse_self_attn || self.t_sparse_cross_attn {
            return unsupported("sparse attention");
        }
        if self.t_norm_in_group || self.t_group_norm {
            return unsupported(
                "group norms inside the transformer (t_norm_in_group, t_group_norm)",
            );
        }
        if self.dconv_depth <= 0 {
            return unsupported("dconv_depth <= 0");
        }
        let positive = [
            ("channels", self.channels),
            ("nfft", self.nfft),
            ("depth", self.depth),
            ("kernel_size", self.kernel_size),
            ("stride", self.stride),
            ("time_stride", self.time_stride),
            ("norm_groups", self.norm_groups),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("htdemucs: {name} must be positive"));
        }
        if stems == 0 || audio_channels == 0 {
            return Err("htdemucs: needs at least one source and one audio channel".into());
        }
        if !self.nfft.is_power_of_two() || self.nfft < 16 {
            return Err(format!(
                "htdemucs: nfft must be a power of two >= 16, got {}",
                self.nfft
            ));
        }
        let plan = self.plan(stems, audio_channels);
        if plan.iter().any(|l| !l.freq) {
            return Err(
                "htdemucs: the frequency axis is used up before the last layer (time-only layers \
                 before the transformer are not supported by HTDemucs)"
                    .into(),
            );
        }
        for l in &plan {
            let groups_ok = |c: usize| !l.norm || c.is_multiple_of(self.norm_groups);
            if !groups_ok(l.chout_z) || !groups_ok(2 * l.chout_z) || !groups_ok(l.dec_out_z) {
                return Err(format!(
                    "htdemucs: norm_groups {} does not divide the layer channels",
                    self.norm_groups
                ));
            }
            if self.dconv_mode != 0 && self.dconv_hidden(l.chout_z) == 0 {
                return Err(format!(
                    "htdemucs: dconv_comp {} leaves no channels in the DConv branch of a layer \
                     with {} channels",
                    self.dconv_comp, l.chout_z
                ));
            }
        }
        let dim = self.transformer_channels();
        if self.t_layers > 0 && (self.t_heads == 0 || !dim.is_multiple_of(self.t_heads)) {
            return Err(format!(
                "htdemucs: t_heads {} must divide the transformer width {dim}",
                self.t_heads
            ));
        }
        if self.t_layers > 0 && !dim.is_multiple_of(4) {
            return Err(format!(
                "htdemucs: the transformer width {dim} must be a multiple of 4 (2-D sin embedding)"
            ));
        }
        Ok(())
    }

    pub fn hop_length(&self) -> usize {
        self.nfft / 4
    }

    /// Channels inside a DConv branch of a layer with `channels`: `int(channels / compress)`.
    pub fn dconv_hidden(&self, channels: usize) -> usize {
        (channels as f64 / self.dconv_comp) as usize
    }

    /// Width of the encoder's last layer, `channels * growth ** (depth - 1)` as `HTDemucs`
    /// computes it; the transformer's unless `bottom_channels` projects it.
    pub fn encoder_channels(&self) -> usize {
        (self.channels as f64 * self.growth.powi(self.depth as i32 - 1)) as usize
    }

    pub fn transformer_channels(&self) -> usize {
        if self.bottom_channels > 0 {
            self.bottom_channels
        } else {
            self.encoder_channels()
        }
    }

    /// The layers `HTDemucs.__init__` builds, index by index.
    pub fn plan(&self, stems: usize, audio_channels: usize) -> Vec<LayerPlan> {
        let mut out = Vec::new();
        let (mut chin, mut chin_z) = (audio_channels, audio_channels * 2);
        let mut chout = self.channels_time.unwrap_or(self.channels);
        let mut chout_z = self.channels;
        let mut freqs = self.nfft / 2;
        for index in 0..self.depth {
            let freq = freqs > 1;
            let (mut kernel, mut stride) = (self.kernel_size, self.stride);
            if !freq {
                kernel = self.time_stride * 2;
                stride = self.time_stride;
            }
            let mut pad = true;
            let mut last_freq = false;
            if freq && freqs <= self.kernel_size {
                kernel = freqs;
                pad = false;
                last_freq = true;
            }
            if last_freq {
                chout_z = chout.max(chout_z);
                chout = chout_z;
            }
            let (enc_in_z, enc_in_t) = (chin_z, chin);
            if index == 0 {
                chin = audio_channels * stems;
                chin_z = chin * 2;
            }
            out.push(LayerPlan {
                freq,
                last_freq,
                kernel,
                stride,
                pad: if pad { kernel / 4 } else { 0 },
                norm: index >= self.norm_starts,
                chin_z: enc_in_z,
                chout_z,
                chin_t: enc_in_t,
                chout_t: chout,
                dec_out_z: chin_z,
                dec_out_t: chin,
            });
            chin = chout;
            chin_z = chout_z;
            chout = (self.growth * chout as f64) as usize;
            chout_z = (self.growth * chout_z as f64) as usize;
            if freq {
                freqs = if freqs <= self.kernel_size {
                    1
                } else {
                    freqs / self.stride
                };
            }
        }
        out
    }

    /// The shape in one line, as `inspect` and `bench` name it: "channels 48 (growth 2),
    /// depth 4, nfft 4096, DConv in encoder and decoder, transformer 5 layers x 8 heads at 512".
    pub fn shape(&self) -> String {
        let dconv = match self.dconv_mode {
            0 => "no DConv",
            1 => "DConv in the encoder",
            2 => "DConv in the decoder",
            _ => "DConv in encoder and decoder",
        };
        let transformer = if self.t_layers == 0 {
            "no transformer".to_string()
        } else {
            format!(
                "transformer {} layers x {} heads at {} channels",
                self.t_layers,
                self.t_heads,
                self.transformer_channels()
            )
        };
        format!(
            "channels {} (growth {}), depth {}, nfft {}, {dconv}, {transformer}",
            self.channels, self.growth, self.depth, self.nfft
        )
    }

    /// Frequencies after the first encoder layer: the rows of the frequency embedding.
    pub fn freq_emb_rows(&self) -> usize {
        let freqs = self.nfft / 2;
        if freqs <= self.kernel_size {
            1
        } else {
            freqs / self.stride
        }
    }
}

/// An MSST config file for HT Demucs (`model: htdemucs`): what inference reads of its
/// `training`, `inference` and `htdemucs` sections.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct MsstHtDemucsConfig {
    pub training: HtDemucsTraining,
    #[serde(default)]
    pub inference: HtDemucsInference,
    pub htdemucs: HtDemucsConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HtDemucsTraining {
    pub instruments: Vec<String>,
    /// Seconds per inference chunk (MSST's "demucs" demix: `samplerate * segment` samples).
    pub segment: f64,
    #[serde(default = "default_samplerate")]
    pub samplerate: u32,
    #[serde(default = "default_channels")]
    pub channels: usize,
}

fn default_samplerate() -> u32 {
    44100
}
fn default_channels() -> usize {
    2
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct HtDemucsInference {
    pub num_overlap: usize,
    pub batch_size: usize,
    /// Mono-mix mean/std normalisation around the model (MSST `inference.normalize`).
    pub normalize: bool,
}

impl Default for HtDemucsInference {
    fn default() -> Self {
        Self {
            num_overlap: 4,
            batch_size: 1,
            normalize: false,
        }
    }
}

impl MsstHtDemucsConfig {
    /// Parses and validates YAML text; `origin` names the source in error messages.
    pub fn from_yaml(text: &str, origin: &std::path::Path) -> crate::error::Result<Self> {
        use crate::error::Error;
        let config: Self = serde_saphyr::from_str(text).map_err(|e| Error::ConfigParse {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        config.validate().map_err(|message| Error::ConfigInvalid {
            path: origin.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    /// What inference needs to hold; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        let t = &self.training;
        if t.instruments.is_empty() {
            return Err("training.instruments is empty".into());
        }
        if !t.segment.is_finite() || t.segment <= 0.0 || t.samplerate == 0 {
            return Err("training.segment and training.samplerate must be positive".into());
        }
        if self.inference.num_overlap == 0 || self.inference.batch_size == 0 {
            return Err("inference.num_overlap and inference.batch_size must be positive".into());
        }
        self.htdemucs.validate(t.instruments.len(), t.channels)
    }

    /// The config as MSST YAML (with `model: htdemucs`), as `roformer convert` embeds it.
    pub fn to_yaml(&self) -> crate::error::Result<String> {
        let body = serde_saphyr::to_string(self).map_err(|e| {
            crate::error::Error::Unsupported(format!("cannot write the config: {e}"))
        })?;
        Ok(format!("model: htdemucs\n{body}"))
    }

    /// Samples per chunk: `samplerate * segment` (MSST's "demucs" mode).
    pub fn chunk_size(&self) -> usize {
        (self.training.samplerate as f64 * self.training.segment) as usize
    }
}
