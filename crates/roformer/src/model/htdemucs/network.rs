//! The network of HT Demucs on the reference engine (candle ops): both U-Nets, the frequency
//! embedding, the bottom convolutions and the cross-domain transformer, from the normalised-in
//! spectrogram and waveform to both branches' de-normalised outputs.

use candle_core::{Device, Result as CResult, Tensor};

use super::conv::Conv;
use super::cross_transformer::CrossTransformer;
use super::decoder_layer::{DecoderLayer, DecoderSpec};
use super::encoder_layer::{EncoderLayer, EncoderSpec};
use super::HtDemucsConfig;
use crate::error::Result;
use crate::weights::WeightsView;

/// `1x1` convolutions around the transformer when `bottom_channels` is set.
#[derive(Debug, Clone)]
pub(crate) struct Bottom {
    pub(crate) up: Conv,
    pub(crate) down: Conv,
    pub(crate) up_t: Conv,
    pub(crate) down_t: Conv,
}

#[derive(Debug)]
pub(crate) struct ReferenceNet {
    pub(crate) stems: usize,
    pub(crate) audio_channels: usize,
    pub(crate) encoder: Vec<EncoderLayer>,
    /// In execution order (the innermost layer first).
    pub(crate) decoder: Vec<DecoderLayer>,
    pub(crate) tencoder: Vec<EncoderLayer>,
    pub(crate) tdecoder: Vec<DecoderLayer>,
    /// `freq_emb_scale * ScaledEmbedding(...)` as `[1, c, rows, 1]`.
    pub(crate) freq_emb: Option<Tensor>,
    pub(crate) bottom: Option<Bottom>,
    pub(crate) transformer: Option<CrossTransformer>,
    device: Device,
}

impl ReferenceNet {
    /// Builds the network from weights under `HTDemucs`' key names (the view's root) of a
    /// validated config.
    pub fn load(
        config: &HtDemucsConfig,
        stems: usize,
        audio_channels: usize,
        vb: &mut WeightsView<'_>,
        device: &Device,
    ) -> Result<Self> {
        let plan = config.plan(stems, audio_channels);
        let depth = plan.len();
        let (k, s) = (config.kernel_size, config.stride);
        let (mut encoder, mut tencoder) = (Vec::new(), Vec::new());
        let (mut decoder, mut tdecoder) = (Vec::new(), Vec::new());
        for (index, l) in plan.iter().enumerate() {
            let enc = EncoderSpec {
                freq: true,
                cin: l.chin_z,
                cout: l.chout_z,
                kernel: l.kernel,
                stride: l.stride,
                pad: l.pad,
                norm: l.norm,
                empty: false,
                dconv: config.dconv_mode & 1 != 0,
            };
            encoder.push(EncoderLayer::load(
                &mut vb.pp("encoder").pp(index),
                enc,
                config,
                device,
            )?);
            let tenc = EncoderSpec {
                freq: false,
                cin: l.chin_t,
                cout: l.chout_t,
                kernel: k,
                stride: s,
                pad: k / 4,
                empty: l.last_freq,
                ..enc
            };
            tencoder.push(EncoderLayer::load(
                &mut vb.pp("tencoder").pp(index),
                tenc,
                config,
                device,
            )?);
            // The decoders are stored innermost first.
            let dec = DecoderSpec {
                freq: true,
                cin: l.chout_z,
                cout: l.dec_out_z,
                kernel: l.kernel,
                stride: l.stride,
                pad: l.pad,
                norm: l.norm,
                empty: false,
                dconv: config.dconv_mode & 2 != 0,
                last: index == 0,
            };
            decoder.push(DecoderLayer::load(
                &mut vb.pp("decoder").pp(depth - 1 - index),
                dec,
                config,
                device,
            )?);
            let tdec = DecoderSpec {
                freq: false,
                cin: l.chout_t,
                cout: l.dec_out_t,
                kernel: k,
                stride: s,
                pad: k / 4,
                empty: l.last_freq,
                ..dec
            };
            tdecoder.push(DecoderLayer::load(
                &mut vb.pp("tdecoder").pp(depth - 1 - index),
                tdec,
                config,
                device,
            )?);
        }
        decoder.reverse();
        tdecoder.reverse();
        let freq_emb = if config.freq_emb != 0.0 {
            let (rows, c) = (config.freq_emb_rows(), plan[0].chout_z);
            let w = vb
                .pp("freq_emb")
                .pp("embedding")
                .take("weight", &[rows, c])?;
            // torch: `x + freq_emb_scale * (embedding(frs) * scale)`, in that order.
            let emb = ((w * config.emb_scale)? * config.freq_emb)?;
            Some(emb.t()?.reshape((1, c, rows, 1))?.to_device(device)?)
        } else {
            None
        };
        let enc_c = config.encoder_channels();
        let bottom = if config.bottom_channels > 0 {
            let bc = config.bottom_channels;
            let mut conv = |name: &str, cin: usize, cout: usize| {
                Conv::time(&mut vb.pp(name), cin, cout, 1, 1, 0, 1, device)
            };
            Some(Bottom {
                up: conv("channel_upsampler", enc_c, bc)?,
                down: conv("channel_downsampler", bc, enc_c)?,
                up_t: conv("channel_upsampler_t", enc_c, bc)?,
                down_t: conv("channel_downsampler_t", bc, enc_c)?,
            })
        } else {
            None
        };
        let transformer = (config.t_layers > 0)
            .then(|| {
                CrossTransformer::load(
                    &mut vb.pp("crosstransformer"),
                    config.transformer_channels(),
                    config,
                    device,
                )
            })
            .transpose()?;
        Ok(Self {
            stems,
            audio_channels,
            encoder,
            decoder,
            tencoder,
            tdecoder,
            freq_emb,
            bottom,
            transformer,
            device: device.clone(),
        })
    }

    /// [`ReferenceNet::forward`] on flat buffers: `z` `[b][c * 2][f][t]`, `mix` `[b][c][len]`.
    pub fn run(
        &self,
        z: Vec<f32>,
        mix: Vec<f32>,
        dims: (usize, usize, usize, usize),
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let (b, fr, frames, len) = dims;
        let c = self.audio_channels;
        let z = Tensor::from_vec(z, (b, c * 2, fr, frames), &self.device)?;
        let mix = Tensor::from_vec(mix, (b, c, len), &self.device)?;
        let (x, xt) = self.forward(&z, &mix)?;
        Ok((x.flatten_all()?.to_vec1()?, xt.flatten_all()?.to_vec1()?))
    }

    /// The network from the normalised inputs to both branches' de-normalised outputs:
    /// `z: [b, c * 2, f, t]` (cac spectrogram), `mix: [b, c, len]` to
    /// (`[b, stems, c * 2, f, t]`, `[b, stems, c, len]`).
    fn forward(&self, z: &Tensor, mix: &Tensor) -> CResult<(Tensor, Tensor)> {
        let (b, _, fq, t) = z.dims4()?;
        let len = mix.dim(2)?;
        let (mean, std) = mean_std(z)?;
        let mut x = z
            .broadcast_sub(&mean)?
            .broadcast_div(&(std.clone() + 1e-5)?)?;
        let (meant, stdt) = mean_std(mix)?;
        let mut xt = mix
            .broadcast_sub(&meant)?
            .broadcast_div(&(stdt.clone() + 1e-5)?)?;

        let mut saved = Vec::new();
        let mut saved_t = Vec::new();
        let mut lengths_t = Vec::new();
        for (idx, encode) in self.encoder.iter().enumerate() {
            let mut inject = None;
            if let Some(tenc) = self.tencoder.get(idx) {
                lengths_t.push(xt.dim(2)?);
                xt = tenc.forward(&xt, None)?;
                if tenc.is_empty() {
                    // The time branch joins the frequency branch here.
                    inject = Some(xt.clone());
                } else {
                    saved_t.push(xt.clone());
                }
            }
            x = encode.forward(&x, inject.as_ref())?;
            if idx == 0 {
                if let Some(emb) = &self.freq_emb {
                    x = x.broadcast_add(emb)?;
                }
            }
            saved.push(x.clone());
        }
        if let Some(transformer) = &self.transformer {
            if let Some(bt) = &self.bottom {
                let (bb, cc, f, tt) = x.dims4()?;
                x = bt.up.forward(&x.reshape((bb, cc, f * tt))?)?;
                x = x.reshape((bb, x.dim(1)?, f, tt))?;
                xt = bt.up_t.forward(&xt)?;
            }
            (x, xt) = transformer.forward(&x, &xt)?;
            if let Some(bt) = &self.bottom {
                let (bb, cc, f, tt) = x.dims4()?;
                x = bt.down.forward(&x.reshape((bb, cc, f * tt))?)?;
                x = x.reshape((bb, x.dim(1)?, f, tt))?;
                xt = bt.down_t.forward(&xt)?;
            }
        }
        let offset = self.decoder.len() - self.tdecoder.len();
        for (idx, decode) in self.decoder.iter().enumerate() {
            let skip = saved.pop();
            let (out, pre) = decode.forward(&x, skip.as_ref(), 0)?;
            x = out;
            if idx >= offset {
                let tdec = &self.tdecoder[idx - offset];
                let length_t = lengths_t.pop().unwrap_or(0);
                if tdec.is_empty() {
                    // `pre` has one frequency left: the time branch starts again from it.
                    xt = tdec.forward(&pre.squeeze(2)?, None, length_t)?.0;
                } else {
                    let skip = saved_t.pop();
                    xt = tdec.forward(&xt, skip.as_ref(), length_t)?.0;
                }
            }
        }
        let (s, c) = (self.stems, self.audio_channels);
        let x = x
            .reshape((b, s, c * 2, fq, t))?
            .broadcast_mul(&std.unsqueeze(1)?)?
            .broadcast_add(&mean.unsqueeze(1)?)?;
        let xt = xt
            .reshape((b, s, c, len))?
            .broadcast_mul(&stdt.unsqueeze(1)?)?
            .broadcast_add(&meant.unsqueeze(1)?)?;
        Ok((x, xt))
    }
}

/// Mean and unbiased standard deviation (`torch.std`) over all but the first axis, shaped
/// to broadcast against `x`.
fn mean_std(x: &Tensor) -> CResult<(Tensor, Tensor)> {
    let b = x.dim(0)?;
    let flat = x.reshape((b, ()))?;
    let n = flat.dim(1)?;
    let mean = flat.mean_keepdim(1)?;
    let var = (flat.broadcast_sub(&mean)?.sqr()?.sum_keepdim(1)? / (n.max(2) - 1) as f64)?;
    let mut shape = vec![b];
    shape.resize(x.rank(), 1);
    Ok((mean.reshape(shape.as_slice())?, var.sqrt()?.reshape(shape)?))
}
