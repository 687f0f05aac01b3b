//! The fused transformer stacks: the same layers as [`crate::model::transformer`], run on `f32`
//! buffers in place, tile by tile.
//!
//! A tile is a run of whole sequences (about [`TILE_ROWS`] tokens), so each layer's attention
//! finds all its keys in the tile and every buffer is sized by the tile, not by the chunk. Per
//! tile and layer: RMSNorm into a scratch row buffer, one matmul for q, k, v and the gate logits
//! together, blocked attention with the gate and softmax denominator applied to its output, the
//! output projection accumulated straight into the residual stream; then RMSNorm (adding the
//! feed-forward's output bias to the residual in the same pass), the up projection, bias + GELU
//! in place, and the down projection accumulated into the residual stream.

use std::sync::Mutex;

use candle_core::{Device, Module, Result as CResult, Tensor};
use rayon::prelude::*;

use super::attention::{attend, prepare, HeadLayout, RopeTables};
use super::kernels::{gelu_bias_rows, rms_norm_rows, swap_token_axes};
use super::precision::Precision;
use super::weight::Weight;
use crate::model::attention::Attention;
use crate::model::backend::RunStack;
use crate::model::feed_forward::FeedForward;
use crate::model::linear::Linear;
use crate::model::rms_norm::RmsNorm;
use crate::model::transformer::{AxialStack, Mixer, Transformer};

/// Tokens per tile (rounded to whole sequences): large enough for full-speed matmuls, small
/// enough that the feed-forward's hidden rows (4 x dim each) stay a few tens of MB.
const TILE_ROWS: usize = 8192;

fn values(t: &Tensor) -> CResult<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// `gamma * sqrt(dim)`: the reference's scale and gain in one vector.
fn scaled_gamma(norm: &RmsNorm) -> CResult<Vec<f32>> {
    let gamma = values(&norm.gamma)?;
    let scale = (gamma.len() as f32).sqrt();
    Ok(gamma.iter().map(|g| g * scale).collect())
}

fn weight(linear: &Linear, precision: Precision) -> CResult<Weight> {
    let (out, inp) = linear.weight.dims2()?;
    Ok(Weight::new(values(&linear.weight)?, out, inp, precision))
}

fn bias(linear: &Linear) -> CResult<Vec<f32>> {
    match &linear.bias {
        Some(b) => values(b),
        None => Ok(vec![0.0; linear.dim_out()]),
    }
}

#[derive(Debug, Clone)]
struct FusedAttention {
    layout: HeadLayout,
    gamma: Vec<f32>,
    /// `to_qkv` and `to_gates` stacked: one matmul gives `[q | k | v | gate logits]`.
    proj: Weight,
    gate_bias: Vec<f32>,
    out: Weight,
    freqs: Vec<f32>,
}

impl FusedAttention {
    fn new(a: &Attention, precision: Precision) -> CResult<Self> {
        let layout = HeadLayout {
            heads: a.heads,
            dim_head: a.dim_head,
        };
        let (_, dim) = a.to_qkv.weight.dims2()?;
        let mut stacked = values(&a.to_qkv.weight)?;
        stacked.extend(values(&a.to_gates.weight)?);
        Ok(Self {
            layout,
            gamma: scaled_gamma(&a.norm)?,
            proj: Weight::new(stacked, layout.row_len(), dim, precision),
            gate_bias: bias(&a.to_gates)?,
            out: weight(&a.to_out, precision)?,
            freqs: a.rope.freqs.clone(),
        })
    }

    fn forward(&self, x: &mut [f32], n: usize, ws: &mut Workspace) {
        let rows = x.len() / self.gamma.len();
        let row = self.layout.row_len();
        let inner = self.layout.inner();
        let normed = ws.normed.take(x.len());
        rms_norm_rows(x, normed, &self.gamma, None);
        let proj = ws.proj.take(rows * row);
        self.proj.matmul(normed, rows, proj, false);
        let (cos, sin) = crate::model::rope::rope_tables(&self.freqs, n);
        prepare(
            proj,
            n,
            self.layout,
            &RopeTables { cos, sin },
            &self.gate_bias,
        );
        let attended = ws.attended.take(rows * inner);
        attend(proj, attended, n, self.layout);
        self.out.matmul(attended, rows, x, true);
    }
}

#[derive(Debug, Clone)]
struct FusedFeedForward {
    gamma: Vec<f32>,
    up: Weight,
    up_bias: Vec<f32>,
    down: Weight,
    down_bias: Vec<f32>,
}

impl FusedFeedForward {
    fn new(ff: &FeedForward, precision: Precision) -> CResult<Self> {
        Ok(Self {
            gamma: scaled_gamma(&ff.norm)?,
            up: weight(&ff.up, precision)?,
            up_bias: bias(&ff.up)?,
            down: weight(&ff.down, precision)?,
            down_bias: bias(&ff.down)?,
        })
    }

    fn forward(&self, x: &mut [f32], ws: &mut Workspace) {
        let rows = x.len() / self.gamma.len();
        let normed = ws.normed.take(x.len());
        // The residual gets the down projection's bias now; its product is accumulated below.
        rms_norm_rows(x, normed, &self.gamma, Some(&self.down_bias));
        let hidden = ws.hidden.take(rows * self.up.out_dim());
        self.up.matmul(normed, rows, hidden, false);
        gelu_bias_rows(hidden, &self.up_bias);
        self.down.matmul(hidden, rows, x, true);
    }
}

/// A growable scratch buffer that keeps its allocation between tiles and calls.
#[derive(Debug, Default)]
struct Buffer(Vec<f32>);

impl Buffer {
    fn take(&mut self, len: usize) -> &mut [f32] {
        if self.0.len() < len {
            self.0.resize(len, 0.0);
        }
        &mut self.0[..len]
    }
}

#[derive(Debug, Default)]
struct Workspace {
    normed: Buffer,
    proj: Buffer,
    attended: Buffer,
    hidden: Buffer,
}

/// A rotary transformer (`depth` layers of attention + feed-forward, optional output norm).
#[derive(Debug, Clone)]
pub struct FusedTransformer {
    dim: usize,
    layers: Vec<(FusedAttention, FusedFeedForward)>,
    norm: Option<Vec<f32>>,
}

impl FusedTransformer {
    /// The fused form of a rotary reference transformer; `None` for linear attention, which the
    /// fused engine leaves to the reference layers.
    pub fn new(t: &Transformer, precision: Precision) -> CResult<Option<Self>> {
        let mut layers = Vec::with_capacity(t.layers.len());
        let mut dim = 0;
        for (mixer, ff) in &t.layers {
            let Mixer::Rotary(a) = mixer else {
                return Ok(None);
            };
            let attn = FusedAttention::new(a, precision)?;
            dim = attn.gamma.len();
            layers.push((attn, FusedFeedForward::new(ff, precision)?));
        }
        let norm = t.norm.as_ref().map(scaled_gamma).transpose()?;
        Ok(Some(Self { dim, layers, norm }))
    }

    /// Runs `x: [seqs, n, dim]` (each sequence attends within itself) in place.
    fn forward(&self, x: &mut [f32], n: usize, ws: &mut Workspace) {
        let seq_len = n * self.dim;
        let seqs = x.len() / seq_len.max(1);
        if seqs == 0 {
            return;
        }
        let tile_seqs = (TILE_ROWS / n.max(1)).clamp(1, seqs);
        for tile in x.chunks_mut(tile_seqs * seq_len) {
            for (attn, ff) in &self.layers {
                attn.forward(tile, n, ws);
                ff.forward(tile, ws);
            }
            if let Some(gamma) = &self.norm {
                let normed = ws.normed.take(tile.len());
                rms_norm_rows(tile, normed, gamma, None);
                tile.copy_from_slice(normed);
            }
        }
    }
}

#[derive(Debug)]
struct FusedBlock {
    /// Linear-attention transformers run on the reference layers (a small share of the work).
    linear: Option<Transformer>,
    time: FusedTransformer,
    freq: FusedTransformer,
}

/// The fused [`AxialStack`]: `[b, t, bands, dim]` in and out.
#[derive(Debug)]
pub struct FusedAxialStack {
    blocks: Vec<FusedBlock>,
    skip_connection: bool,
    /// Scratch buffers, one set per forward pass running now: a pass takes one (or makes
    /// one) and puts it back, so concurrent separations neither wait for each other nor
    /// allocate anew every chunk.
    workspaces: Mutex<Vec<Workspace>>,
}

impl FusedAxialStack {
    /// Converts the reference stack block by block (each block's reference weights are freed
    /// as soon as its fused copy exists).
    pub fn new(stack: AxialStack, precision: Precision) -> CResult<Self> {
        let skip_connection = stack.skip_connection;
        let mut blocks = Vec::with_capacity(stack.blocks.len());
        for block in stack.blocks {
            let fused = |t: &Transformer| -> CResult<FusedTransformer> {
                FusedTransformer::new(t, precision)?.ok_or_else(|| {
                    candle_core::Error::Msg(
                        "time/frequency transformers use rotary attention".into(),
                    )
                })
            };
            blocks.push(FusedBlock {
                time: fused(&block.time)?,
                freq: fused(&block.freq)?,
                linear: block.linear,
            });
        }
        Ok(Self {
            blocks,
            skip_connection,
            workspaces: Mutex::new(Vec::new()),
        })
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Vec<Workspace>> {
        // A pass that panicked left no half-used workspace behind (it owned its own), so the
        // pool is still sound.
        self.workspaces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl RunStack for FusedAxialStack {
    /// `x: [b, t, f, dim]` -> same shape.
    fn forward(&self, x: Tensor) -> CResult<Tensor> {
        let (b, t, f, d) = x.dims4()?;
        let mut x = values(&x)?;
        let mut swapped = vec![0.0f32; x.len()];
        let mut store: Vec<Vec<f32>> = Vec::new();
        let mut ws = self.pool().pop().unwrap_or_default();
        for block in &self.blocks {
            if let Some(linear) = &block.linear {
                let xt = Tensor::from_slice(&x, (b, t * f, d), &Device::Cpu)?;
                x = values(&linear.forward(&xt)?)?;
            }
            if self.skip_connection {
                for earlier in &store {
                    x.par_iter_mut().zip(earlier).for_each(|(v, e)| *v += e);
                }
            }
            // Time attention runs over [b, f, t, d], frequency attention over [b, t, f, d].
            swap_token_axes(&x, &mut swapped, b, t, f, d);
            block.time.forward(&mut swapped, t, &mut ws);
            swap_token_axes(&swapped, &mut x, b, f, t, d);
            block.freq.forward(&mut x, f, &mut ws);
            if self.skip_connection {
                store.push(x.clone());
            }
        }
        self.pool().push(ws);
        Tensor::from_vec(x, (b, t, f, d), &Device::Cpu)
    }
}
