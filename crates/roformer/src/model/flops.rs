//! The arithmetic of one forward pass, counted from the config: floating-point operations per
//! chunk (2 per multiply-add) of the matrix products, split by part of the network, and the
//! number of parameters.
//!
//! Counted: every `Linear` (band split, the attention's `to_qkv`, `to_gates`, `to_out`, the
//! feed-forward's two layers, the linear-attention projections, the mask-estimator MLPs), and the
//! two products of each attention (`q k^T` and `softmax(.) v`). Not counted: norms, softmax,
//! GELU/tanh/GLU, rotary embedding, biases, the STFT and the iSTFT; on the shapes we run they are
//! well under 1% of the total (the softmax, the largest, is about 0.2% on the vocals shape).
//!
//! Shapes, for one chunk of `chunk` samples: `T = chunk / hop + 1` frames (STFT with
//! `center=True`), `F` bands, tokens `N = T * F`.
//! - Time transformer: `F` sequences of `T` tokens; frequency transformer: `T` sequences of `F`.
//! - Softmax attention over `n` tokens: `2 * n^2 * dim_head * heads` for the scores plus as much
//!   for the weighted sum, per sequence.
//! - Linear attention (`linear_transformer_depth > 0`): one sequence of `N` tokens per chunk;
//!   per head a `dim_head x dim_head` covariance `q k^T` over `N` tokens and its product with
//!   `v`: `4 * heads * dim_head^2 * N`.
//! - Mask estimators (per stem, per band): `mask_depth()` Linears for BS-RoFormer,
//!   `mask_depth() + 1` for Mel-Band RoFormer, hidden width `dim * mlp_expansion_factor`, the
//!   last one producing `2 * d_band` for the GLU.

use crate::config::{Architecture, ModelConfig};
use crate::error::{Error, Result};

use super::mel_bands::MelBands;

/// MSST's `FeedForward` is always built with `mult=4`.
const FF_MULT: usize = 4;

/// Floating-point operations of one chunk through the network, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModelFlops {
    /// STFT frames of the chunk.
    pub frames: usize,
    /// Bands (tokens per frame).
    pub bands: usize,
    /// Band split Linears.
    pub band_split: u64,
    /// Attention projections: `to_qkv`, `to_gates`, `to_out` (and the linear attention's).
    pub projections: u64,
    /// Feed-forward Linears (`dim -> 4 dim -> dim`) of every transformer.
    pub feed_forward: u64,
    /// `q k^T` and `p v` of the time transformers (sequences of `frames` tokens).
    pub time_attention: u64,
    /// `q k^T` and `p v` of the frequency transformers (sequences of `bands` tokens).
    pub freq_attention: u64,
    /// `q k^T` and `p v` of the linear-attention transformers (feature-by-feature).
    pub linear_attention: u64,
    /// Mask-estimator MLPs, all stems.
    pub mask_estimators: u64,
}

impl ModelFlops {
    /// The count for one chunk of `chunk_size` samples of the model `cfg` describes.
    ///
    /// Errors only for a Mel-Band config whose mel bands cannot be built.
    pub fn for_config(cfg: &ModelConfig, chunk_size: usize) -> Result<Self> {
        let dims = band_input_dims(cfg)?;
        let frames = chunk_size / cfg.stft_hop_length + 1;
        let bands = dims.len();
        let (t, f) = (frames as u64, bands as u64);
        let tokens = t * f;
        let dim = cfg.dim as u64;
        let heads = cfg.heads as u64;
        let dim_head = cfg.dim_head as u64;
        let inner = heads * dim_head;
        let depth = cfg.depth as u64;
        let mac = |m: u64, k: u64, n: u64| 2 * m * k * n;

        let band_split: u64 = dims.iter().map(|&d| mac(t, d as u64, dim)).sum();

        // Softmax-attention layers: time and frequency, `depth` blocks each.
        let rotary_layers =
            depth * (cfg.time_transformer_depth + cfg.freq_transformer_depth) as u64;
        let linear_layers = depth * cfg.linear_transformer_depth as u64;
        let rotary_proj = mac(tokens, dim, 3 * inner) // to_qkv
            + mac(tokens, dim, heads) // to_gates
            + mac(tokens, inner, dim); // to_out
        let linear_proj = mac(tokens, dim, 3 * inner) + mac(tokens, inner, dim);
        let projections = rotary_layers * rotary_proj + linear_layers * linear_proj;
        let ff = mac(tokens, dim, FF_MULT as u64 * dim) + mac(tokens, FF_MULT as u64 * dim, dim);
        let feed_forward = (rotary_layers + linear_layers) * ff;

        // One sequence of n tokens: scores n x n over dim_head, then the weighted sum, per head.
        let attend = |n: u64| 2 * mac(n, dim_head, n) * heads;
        let time_attention = depth * cfg.time_transformer_depth as u64 * f * attend(t);
        let freq_attention = depth * cfg.freq_transformer_depth as u64 * t * attend(f);
        // Linear attention: per head q k^T (d x N . N x d) and probs . v (d x d . d x N).
        let linear_attention = linear_layers * 2 * mac(dim_head, tokens, dim_head) * heads;

        let mask_estimators = cfg.num_stems as u64
            * mlp_shapes(cfg, &dims)
                .iter()
                .map(|&(k, n)| mac(t, k as u64, n as u64))
                .sum::<u64>();

        Ok(Self {
            frames,
            bands,
            band_split,
            projections,
            feed_forward,
            time_attention,
            freq_attention,
            linear_attention,
            mask_estimators,
        })
    }

    /// Everything counted.
    pub fn total(&self) -> u64 {
        self.matmul() + self.attention()
    }

    /// The products with weight matrices (every `Linear`).
    pub fn matmul(&self) -> u64 {
        self.band_split + self.transformer_linears() + self.mask_estimators
    }

    /// The transformers' Linears: attention projections and feed-forwards.
    pub fn transformer_linears(&self) -> u64 {
        self.projections + self.feed_forward
    }

    /// The attention products (activation by activation): time, frequency and linear attention.
    pub fn attention(&self) -> u64 {
        self.time_attention + self.freq_attention + self.linear_attention
    }

    pub fn gflop(&self) -> f64 {
        self.total() as f64 / 1e9
    }
}

/// Width of each band's input vector (`2 * channels * bins`), for either architecture.
pub fn band_input_dims(cfg: &ModelConfig) -> Result<Vec<usize>> {
    Ok(match cfg.architecture() {
        Architecture::BsRoformer => cfg.band_input_dims(),
        Architecture::MelBandRoformer => {
            let num_bands = cfg.num_bands.unwrap_or(0);
            MelBands::new(cfg.sample_rate, cfg.stft_n_fft, num_bands)
                .map_err(|e| Error::Unsupported(format!("model.num_bands: {e}")))?
                .band_input_dims(cfg.audio_channels())
        }
    })
}

/// `(in, out)` of every Linear of one stem's mask estimator, all bands.
fn mlp_shapes(cfg: &ModelConfig, dims: &[usize]) -> Vec<(usize, usize)> {
    let linears = match cfg.architecture() {
        Architecture::BsRoformer => cfg.mask_depth(),
        Architecture::MelBandRoformer => cfg.mask_depth() + 1,
    };
    let hidden = cfg.dim * cfg.mlp_expansion_factor;
    let mut shapes = Vec::with_capacity(dims.len() * linears);
    for &d in dims {
        for l in 0..linears {
            let k = if l == 0 { cfg.dim } else { hidden };
            let n = if l + 1 == linears { 2 * d } else { hidden };
            shapes.push((k, n));
        }
    }
    shapes
}

/// `(k, n)` of the transformer's largest Linear, the feed-forward's `dim -> 4 dim`: the shape
/// that dominates the FLOPs, for timing this machine's matmul rate.
pub fn largest_linear(cfg: &ModelConfig) -> (usize, usize) {
    (cfg.dim, FF_MULT * cfg.dim)
}

/// Scalars in the checkpoint of the model `cfg` describes (every tensor MSST's state dict holds,
/// the stored rotary `freqs` included).
pub fn parameters(cfg: &ModelConfig) -> Result<usize> {
    let dims = band_input_dims(cfg)?;
    let dim = cfg.dim;
    let inner = cfg.heads * cfg.dim_head;
    let heads = cfg.heads;
    let band_split: usize = dims.iter().map(|&d| d + d * dim + dim).sum();
    let ff = dim + (dim * FF_MULT * dim + FF_MULT * dim) + (FF_MULT * dim * dim + dim);
    let rotary = dim + dim * 3 * inner + (dim * heads + heads) + inner * dim + cfg.dim_head / 2;
    let linear = heads + dim + dim * 3 * inner + inner * dim;
    let mel = cfg.architecture() == Architecture::MelBandRoformer;
    // Mel-Band transformers end in their own norm; BS-RoFormer has one final norm.
    let stack_norm = if mel { dim } else { 0 };
    let transformer = |layers: usize, attn: usize| layers * (attn + ff) + stack_norm;
    let mut block = transformer(cfg.time_transformer_depth, rotary)
        + transformer(cfg.freq_transformer_depth, rotary);
    if cfg.linear_transformer_depth > 0 {
        block += transformer(cfg.linear_transformer_depth, linear);
    }
    let final_norm = if mel { 0 } else { dim };
    let mask: usize = mlp_shapes(cfg, &dims).iter().map(|&(k, n)| k * n + n).sum();
    Ok(band_split + cfg.depth * block + final_norm + cfg.num_stems * mask)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::MsstConfig;

    fn config(model: &str, chunk: usize) -> MsstConfig {
        config_with(model, chunk, "[vocals]")
    }

    fn config_with(model: &str, chunk: usize, instruments: &str) -> MsstConfig {
        let text = format!(
            "audio:\n  chunk_size: {chunk}\nmodel:\n{model}\ntraining:\n  instruments: {instruments}\n"
        );
        MsstConfig::from_yaml(&text, Path::new("test.yaml")).unwrap()
    }

    #[test]
    fn tiny_bs_model_by_hand() {
        // Mono, 2 bands of 1 and 2 bins (n_fft 4 -> 3 bins), dim 4, 1 head of 2, one block of
        // one time and one frequency layer, mask MLP of 2 Linears with hidden 4 * 1.
        let c = config(
            "  dim: 4\n  depth: 1\n  stereo: false\n  heads: 1\n  dim_head: 2\n  \
             time_transformer_depth: 1\n  freq_transformer_depth: 1\n  \
             freqs_per_bands: [1, 2]\n  stft_n_fft: 4\n  stft_win_length: 4\n  \
             stft_hop_length: 2\n  mask_estimator_depth: 2\n  mlp_expansion_factor: 1",
            8,
        );
        let f = ModelFlops::for_config(&c.model, 8).unwrap();
        // T = 8 / 2 + 1 = 5 frames, F = 2 bands, N = 10 tokens; band inputs 2*1*1 = 2, 2*2*1 = 4.
        assert_eq!((f.frames, f.bands), (5, 2));
        // Band split: 2 * T * (2*4 + 4*4) = 2 * 5 * 24.
        assert_eq!(f.band_split, 240);
        // Per layer: qkv 2*10*4*6 = 480, gates 2*10*4*1 = 80, out 2*10*2*4 = 160; two layers.
        assert_eq!(f.projections, 2 * (480 + 80 + 160));
        // Per layer: 2*10*(4*16 + 16*4) = 2560; two layers.
        assert_eq!(f.feed_forward, 2 * 2560);
        // Time: 2 sequences of 5 tokens, each 2*5*5*2 (scores) + 2*5*5*2 (sum) = 200.
        assert_eq!(f.time_attention, 2 * 200);
        // Frequency: 5 sequences of 2 tokens, each 2*2*2*2 + 2*2*2*2 = 32.
        assert_eq!(f.freq_attention, 5 * 32);
        assert_eq!(f.linear_attention, 0);
        // Mask MLP per frame: band 0: 4*4 + 4*(2*2) = 32, band 1: 4*4 + 4*(2*4) = 48; 2 * 5 * 80.
        assert_eq!(f.mask_estimators, 800);
        assert_eq!(f.total(), 240 + 1440 + 5120 + 400 + 160 + 800);
        assert_eq!(f.total(), 8160);
        assert_eq!(f.matmul(), 240 + 1440 + 5120 + 800);
        assert_eq!(f.attention(), 560);

        // Parameters: band split (norm, weight, bias) (2 + 2*4 + 4) + (4 + 4*4 + 4) = 38; per
        // attention layer norm 4 + qkv 4*6 + gates (4*1 + 1) + out 2*4 + freqs 1 = 42, per ff
        // 4 + (4*16 + 16) + (16*4 + 4) = 152, two of each: 388; final norm 4; mask MLPs:
        // band 0 (4*4 + 4) + (4*4 + 4) = 40, band 1 (4*4 + 4) + (4*8 + 8) = 60.
        assert_eq!(parameters(&c.model).unwrap(), 38 + 388 + 4 + 100);
    }

    #[test]
    fn tiny_linear_attention_by_hand() {
        // As above with one linear-attention layer first in the block, 2 stems.
        let c = config_with(
            "  dim: 4\n  depth: 1\n  stereo: false\n  heads: 1\n  dim_head: 2\n  \
             num_stems: 2\n  linear_transformer_depth: 1\n  \
             time_transformer_depth: 1\n  freq_transformer_depth: 1\n  \
             freqs_per_bands: [1, 2]\n  stft_n_fft: 4\n  stft_win_length: 4\n  \
             stft_hop_length: 2\n  mask_estimator_depth: 2\n  mlp_expansion_factor: 1",
            8,
            "[a, b]",
        );
        let f = ModelFlops::for_config(&c.model, 8).unwrap();
        // Linear layer: qkv 480 + out 160 (no gates), plus a third feed-forward.
        assert_eq!(f.projections, 2 * (480 + 80 + 160) + 480 + 160);
        assert_eq!(f.feed_forward, 3 * 2560);
        // 1 head: q k^T is 2x10 . 10x2 = 2*2*10*2 = 80, probs . v is 2x2 . 2x10 = 80.
        assert_eq!(f.linear_attention, 160);
        assert_eq!(f.mask_estimators, 2 * 800);
    }

    #[test]
    fn vocals_shape_is_about_8_7_tflop() {
        // The viperx vocals BS-RoFormer shape (/work/rs-d12-8s/config.yaml): dim 512, depth 12,
        // 8 x 64 heads, hop 441, chunk 352800 (801 frames), 62 bands, stereo, mask depth 2,
        // expansion 4.
        let c = config(
            "  dim: 512\n  depth: 12\n  stereo: true\n  heads: 8\n  dim_head: 64\n  \
             time_transformer_depth: 1\n  freq_transformer_depth: 1\n  \
             stft_hop_length: 441\n  mask_estimator_depth: 2\n  mlp_expansion_factor: 4",
            352800,
        );
        let f = ModelFlops::for_config(&c.model, 352800).unwrap();
        assert_eq!((f.frames, f.bands), (801, 62));
        let total = f.total() as f64;
        // 8.697e12: transformer Linears 7.508e12 (24 layers x 49662 tokens x 2 x 3.15 M MACs),
        // time attention 0.978e12, frequency attention 0.076e12, mask estimators 0.131e12,
        // band split 0.003e12.
        assert!((total / 8.7e12 - 1.0).abs() < 0.005, "{total:e}");
        // The "~86% in matrix products" is the transformers' Linears (86.3%) and its
        // "~11% in attention" the time attention (11.2%). Counting every Linear (band split and
        // mask estimators too) gives 87.9%, and all attention (frequency too) 12.1%.
        let share = |x: u64| x as f64 / total;
        assert!((share(f.transformer_linears()) - 0.863).abs() < 0.002);
        assert!((share(f.time_attention) - 0.112).abs() < 0.002);
        assert!((share(f.matmul()) - 0.879).abs() < 0.002);
        assert!((share(f.attention()) - 0.121).abs() < 0.002);
        assert_eq!(f.matmul() + f.attention(), f.total());
        assert_eq!(largest_linear(&c.model), (512, 2048));
    }

    #[test]
    fn mel_counts_overlapping_bands() {
        let c = config(
            "  dim: 8\n  depth: 1\n  stereo: true\n  num_bands: 12\n  heads: 2\n  dim_head: 4\n  \
             stft_hop_length: 441\n  mask_estimator_depth: 2",
            8820,
        );
        let f = ModelFlops::for_config(&c.model, 8820).unwrap();
        let dims = band_input_dims(&c.model).unwrap();
        assert_eq!(f.bands, 12);
        // Overlapping mel bands cover more than the 1025 bins.
        let width: usize = dims.iter().sum();
        assert!(width > 2 * 2 * 1025, "{width}");
        assert_eq!(f.band_split, 2 * 21 * width as u64 * 8);
        // Mel's MLP(depth 2) has 3 Linears: 8 -> 32 -> 32 -> 2 d.
        let per_frame: u64 = dims
            .iter()
            .map(|&d| (8 * 32 + 32 * 32 + 32 * 2 * d) as u64)
            .sum();
        assert_eq!(f.mask_estimators, 2 * 21 * per_frame);
    }

    #[test]
    fn parameters_match_the_fixture_checkpoints() {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models");
        for name in [
            "bs_stereo_2stem_hop512",
            "bs_mono_hop441",
            "bs_4stem_linear_skip",
            "mel_tiny_stereo",
            "mel_tiny_mono",
        ] {
            let dir = models.join(name);
            let c = MsstConfig::from_file(&dir.join("config.yaml")).unwrap();
            let state = crate::weights::load_state_dict(&dir.join("model.ckpt")).unwrap();
            assert_eq!(
                parameters(&c.model).unwrap(),
                state.num_parameters(),
                "{name}"
            );
        }
    }

    #[test]
    fn synthetic_weights_build_every_fixture_model() {
        use crate::model::{backend::Reference, BsRoformer, MelBandRoformer};
        use crate::weights::StateDict;
        use candle_core::Device;

        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models");
        for name in ["bs_4stem_linear_skip", "mel_tiny_stereo", "mel_tiny_mono"] {
            let c = MsstConfig::from_file(&models.join(name).join("config.yaml")).unwrap();
            let mut state = StateDict::synthetic(3);
            {
                let mut root = state.root();
                match c.model.architecture() {
                    Architecture::BsRoformer => {
                        BsRoformer::load(&c.model, &mut root, &Device::Cpu, &Reference).map(|_| ())
                    }
                    Architecture::MelBandRoformer => {
                        MelBandRoformer::load(&c.model, &mut root, &Device::Cpu, &Reference)
                            .map(|_| ())
                    }
                }
                .unwrap();
            }
            // Every tensor the model takes is made up once, with the checkpoint's shapes.
            assert_eq!(
                state.fabricated_parameters(),
                parameters(&c.model).unwrap(),
                "{name}"
            );
            state.finish().unwrap();
        }
    }
}
