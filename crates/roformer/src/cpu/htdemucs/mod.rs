//! HT Demucs on the fused CPU engine: both U-Nets on channels-last planes with every
//! convolution one or a few matrix products over overlapping windows ([`conv`]), the bias,
//! GroupNorm and GELU/GLU of each in one pass ([`epilogue`]), and the cross-domain transformer
//! on token rows with our attention kernel. Built from the reference network's weights, which
//! it then drops; tested against it and against MSST.

mod conv;
mod cross_transformer;
mod epilogue;
mod layers;

use candle_core::Result as CResult;
use rayon::prelude::*;

use cross_transformer::CrossTransformer;
use layers::{values, DecoderLayer, EncoderLayer, Planes, Pointwise};

use crate::cpu::Precision;
use crate::error::Result;
use crate::model::htdemucs::network::ReferenceNet;

/// `1x1` convolutions around the transformer (`bottom_channels`).
#[derive(Debug, Clone)]
struct Bottom {
    up: Pointwise,
    down: Pointwise,
    up_t: Pointwise,
    down_t: Pointwise,
}

#[derive(Debug)]
pub struct FusedHtDemucs {
    precision: Precision,
    stems: usize,
    audio_channels: usize,
    encoder: Vec<EncoderLayer>,
    /// In execution order (the innermost layer first).
    decoder: Vec<DecoderLayer>,
    tencoder: Vec<EncoderLayer>,
    tdecoder: Vec<DecoderLayer>,
    /// The scaled frequency embedding `[rows][c]`.
    freq_emb: Option<Vec<f32>>,
    bottom: Option<Bottom>,
    transformer: Option<CrossTransformer>,
}

impl FusedHtDemucs {
    /// Takes the reference network's weights over (its copy is dropped on return).
    pub(crate) fn new(r: ReferenceNet, precision: Precision) -> Result<Self> {
        Ok(Self::convert(&r, precision)?)
    }

    fn convert(r: &ReferenceNet, precision: Precision) -> CResult<Self> {
        let enc = |ls: &[crate::model::htdemucs::encoder_layer::EncoderLayer]| {
            ls.iter()
                .map(|l| EncoderLayer::new(l, precision))
                .collect::<CResult<Vec<_>>>()
        };
        let dec = |ls: &[crate::model::htdemucs::decoder_layer::DecoderLayer]| {
            ls.iter()
                .map(|l| DecoderLayer::new(l, precision))
                .collect::<CResult<Vec<_>>>()
        };
        let freq_emb = match &r.freq_emb {
            // Stored as `[1, c, rows, 1]` for the reference's broadcast.
            Some(e) => Some(values(&e.squeeze(0)?.squeeze(2)?.t()?.contiguous()?)?),
            None => None,
        };
        let bottom = r
            .bottom
            .as_ref()
            .map(|b| -> CResult<_> {
                Ok(Bottom {
                    up: Pointwise::new(&b.up, precision)?,
                    down: Pointwise::new(&b.down, precision)?,
                    up_t: Pointwise::new(&b.up_t, precision)?,
                    down_t: Pointwise::new(&b.down_t, precision)?,
                })
            })
            .transpose()?;
        Ok(Self {
            precision,
            stems: r.stems,
            audio_channels: r.audio_channels,
            encoder: enc(&r.encoder)?,
            decoder: dec(&r.decoder)?,
            tencoder: enc(&r.tencoder)?,
            tdecoder: dec(&r.tdecoder)?,
            freq_emb,
            bottom,
            transformer: r
                .transformer
                .as_ref()
                .map(|t| CrossTransformer::new(t, precision))
                .transpose()?,
        })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The network on flat buffers, as [`ReferenceNet::run`]: `spec` `[b][c * 2][f][t]`, `mix`
    /// `[b][c][len]` to `[b][stems][c * 2][f][t]` and `[b][stems][c][len]`.
    pub fn run(
        &self,
        spec: &[f32],
        mix: &[f32],
        dims: (usize, usize, usize, usize),
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let (b, fr, frames, len) = dims;
        let c = self.audio_channels;
        let (per_spec, per_mix) = (c * 2 * fr * frames, c * len);
        let mut x_out = Vec::with_capacity(b * self.stems * per_spec);
        let mut xt_out = Vec::with_capacity(b * self.stems * per_mix);
        for (z, m) in spec.chunks_exact(per_spec).zip(mix.chunks_exact(per_mix)) {
            let (x, xt) = self.item(z, m, fr, frames, len);
            x_out.extend(x);
            xt_out.extend(xt);
        }
        Ok((x_out, xt_out))
    }

    /// One item: `z` `[c2][f][t]`, `mix` `[c][len]`.
    fn item(
        &self,
        z: &[f32],
        mix: &[f32],
        fr: usize,
        frames: usize,
        len: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let c = self.audio_channels;
        let (mean, std) = mean_std(z);
        let (meant, stdt) = mean_std(mix);
        let mut x = Planes {
            data: channels_last(z, 2 * c, fr * frames, mean, std),
            t: frames,
            f: fr,
            c: 2 * c,
        };
        // `[c][f][t]` read as `[c][f * t]` and transposed gives `[f][t][c]`: swap to `[t][f][c]`.
        x.data = swap_tf(&x.data, fr, frames, 2 * c);
        let mut xt = Planes {
            data: channels_last(mix, c, len, meant, stdt),
            t: len,
            f: 1,
            c,
        };

        let mut saved = Vec::new();
        let mut saved_t = Vec::new();
        let mut lengths_t = Vec::new();
        for (idx, encode) in self.encoder.iter().enumerate() {
            let mut inject = None;
            if let Some(tenc) = self.tencoder.get(idx) {
                lengths_t.push(xt.t);
                xt = tenc.forward(&xt, None);
                if tenc.is_empty() {
                    inject = Some(xt.clone());
                } else {
                    saved_t.push(xt.clone());
                }
            }
            x = encode.forward(&x, inject.as_ref());
            if idx == 0 {
                if let Some(emb) = &self.freq_emb {
                    let per_f = x.f * x.c;
                    x.data.par_chunks_mut(per_f).for_each(|frame| {
                        frame.iter_mut().zip(emb).for_each(|(v, e)| *v += e);
                    });
                }
            }
            saved.push(x.clone());
        }
        if let Some(transformer) = &self.transformer {
            if let Some(bt) = &self.bottom {
                x = bottom(&bt.up, &x);
                xt = bottom(&bt.up_t, &xt);
            }
            transformer.forward(&mut x.data, x.t, x.f, &mut xt.data);
            if let Some(bt) = &self.bottom {
                x = bottom(&bt.down, &x);
                xt = bottom(&bt.down_t, &xt);
            }
        }
        let offset = self.decoder.len() - self.tdecoder.len();
        for (idx, decode) in self.decoder.iter().enumerate() {
            let skip = saved.pop();
            let (out, pre) = decode.forward(x, skip.as_ref(), 0);
            x = out;
            if idx >= offset {
                let tdec = &self.tdecoder[idx - offset];
                let length_t = lengths_t.pop().unwrap_or(0);
                if tdec.is_empty() {
                    // `pre` has one frequency left: the waveform branch starts again from it.
                    let pre = Planes {
                        t: pre.t * pre.f,
                        f: 1,
                        ..pre
                    };
                    xt = tdec.forward(pre, None, length_t).0;
                } else {
                    let skip = saved_t.pop();
                    xt = tdec.forward(xt, skip.as_ref(), length_t).0;
                }
            }
        }
        // `[t][f][stems * c2]` back to `[stems * c2][f][t]`, de-normalised.
        let s = self.stems;
        let x = swap_tf(&x.data, frames, fr, s * 2 * c);
        let x = channels_first(&x, s * 2 * c, fr * frames, mean, std);
        let xt = channels_first(&xt.data, s * c, len, meant, stdt);
        (x, xt)
    }
}

/// A bottom `1x1` convolution on every row of `x`.
fn bottom(conv: &Pointwise, x: &Planes) -> Planes {
    let rows = x.t * x.f;
    let mut data = conv.forward(&x.data, rows);
    let c = conv.bias.len();
    data.par_chunks_mut(c * 64).for_each(|block| {
        for row in block.chunks_exact_mut(c) {
            row.iter_mut().zip(&conv.bias).for_each(|(v, b)| *v += b);
        }
    });
    Planes { data, c, ..*x }
}

/// Mean and unbiased standard deviation (`torch.std`) of all values, accumulated in f64.
fn mean_std(x: &[f32]) -> (f32, f32) {
    let n = x.len() as f64;
    let mean = x.par_iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = x
        .par_iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / (n - 1.0).max(1.0);
    (mean as f32, var.sqrt() as f32)
}

/// `[c][n]` to `[n][c]`, normalised: `(x - mean) / (std + 1e-5)`.
fn channels_last(x: &[f32], c: usize, n: usize, mean: f32, std: f32) -> Vec<f32> {
    let denom = std + 1e-5;
    let mut out = vec![0.0f32; c * n];
    out.par_chunks_mut(c * 1024)
        .enumerate()
        .for_each(|(b, block)| {
            for (i, row) in block.chunks_exact_mut(c).enumerate() {
                let j = b * 1024 + i;
                for (ch, v) in row.iter_mut().enumerate() {
                    *v = (x[ch * n + j] - mean) / denom;
                }
            }
        });
    out
}

/// `[n][c]` to `[c][n]`, de-normalised: `x * std + mean`.
fn channels_first(x: &[f32], c: usize, n: usize, mean: f32, std: f32) -> Vec<f32> {
    let mut out = vec![0.0f32; c * n];
    out.par_chunks_mut(n).enumerate().for_each(|(ch, row)| {
        for (j, v) in row.iter_mut().enumerate() {
            *v = x[j * c + ch] * std + mean;
        }
    });
    out
}

/// `[a][b][c]` to `[b][a][c]`.
fn swap_tf(x: &[f32], a: usize, b: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    crate::cpu::kernels::swap_token_axes(x, &mut out, 1, a, b, c);
    out
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use crate::cpu::Precision;
    use crate::engine::Engine;
    use crate::model::htdemucs::{HtDemucs, HtDemucsConfig};
    use crate::weights::StateDict;

    fn snr_db(reference: &[f32], estimate: &[f32]) -> f64 {
        let signal: f64 = reference.iter().map(|&v| f64::from(v).powi(2)).sum();
        let noise: f64 = reference
            .iter()
            .zip(estimate)
            .map(|(&r, &e)| (f64::from(r) - f64::from(e)).powi(2))
            .sum();
        10.0 * (signal / noise.max(1e-300)).log10()
    }

    /// The fused engine against the reference engine on made-up weights, for the variants of
    /// the layer plan the fused code handles separately.
    #[test]
    fn fused_engine_matches_the_reference_across_layer_plans() {
        let base = HtDemucsConfig {
            channels: 8,
            nfft: 256,
            depth: 3,
            norm_starts: 2,
            bottom_channels: 0,
            t_layers: 2,
            t_heads: 4,
            t_hidden_scale: 2.0,
            t_cross_first: true,
            ..HtDemucsConfig::default()
        };
        let variants = [
            ("6-stem layout", base.clone()),
            (
                "no norms",
                HtDemucsConfig {
                    norm_starts: 9,
                    ..base.clone()
                },
            ),
            (
                "no merge",
                HtDemucsConfig {
                    depth: 2,
                    ..base.clone()
                },
            ),
            (
                "self first",
                HtDemucsConfig {
                    t_cross_first: false,
                    ..base.clone()
                },
            ),
            (
                "no norms, no merge",
                HtDemucsConfig {
                    norm_starts: 9,
                    depth: 2,
                    ..base.clone()
                },
            ),
            (
                "no norms, no transformer",
                HtDemucsConfig {
                    norm_starts: 9,
                    t_layers: 0,
                    ..base.clone()
                },
            ),
            (
                "no norms, no dconv",
                HtDemucsConfig {
                    norm_starts: 9,
                    dconv_mode: 0,
                    ..base.clone()
                },
            ),
        ];
        let (stems, channels, len) = (2, 2, 9000);
        let audio: Vec<f32> = (0..2 * channels * len)
            .map(|i| ((i as f32 * 0.013).sin() + (i as f32 * 0.0007).cos()) * 0.3)
            .collect();
        for (name, config) in variants {
            let run = |engine: Engine| {
                let mut state = StateDict::synthetic(7);
                let model =
                    HtDemucs::load(&config, stems, channels, &mut state.root(), &Device::Cpu)
                        .unwrap()
                        .with_engine(engine)
                        .unwrap();
                model.separate_batch(&audio, 2, len).unwrap()
            };
            let reference = run(Engine::Reference);
            let fused = run(Engine::FusedCpu(Precision::F32));
            let snr = snr_db(&reference, &fused);
            println!("{name}: {snr:.1} dB");
            assert!(snr > 120.0, "{name}: fused vs reference {snr:.1} dB");
        }
    }
}
