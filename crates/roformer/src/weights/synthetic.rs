//! Fabricated weights: a [`StateDict`](super::StateDict) that makes up each tensor when the model
//! takes it, with the shape the model asks for, so any config can be built (and timed) without a
//! checkpoint.
//!
//! Values follow PyTorch's initialisation closely enough for the activations to have realistic
//! magnitudes:
//! - `*.weight` / `*.bias`: uniform in `±1/sqrt(fan_in)` (`nn.Linear`'s and `nn.Conv*`'s
//!   default range), with `fan_in` the product of the dimensions after the first (a Linear's
//!   inputs, a convolution's inputs times its kernel), or a vector's length;
//! - RMSNorm `*.gamma`: 1;
//! - rotary `*rotary_embed.freqs` (`[dim_head / 2]`): rotary-embedding-torch's
//!   `1 / 10000^(2i / dim_head)`;
//! - linear-attention `*.temperature`: 1 (its `torch.ones` init);
//! - anything else: uniform in `±0.02`.
//!
//! Each tensor's values depend only on the seed and the tensor's name (not on the order the model
//! takes them in), through a splitmix64 stream.

use candle_core::{Device, Tensor};

/// The generator behind [`StateDict::synthetic`](super::StateDict::synthetic).
#[derive(Debug, Clone)]
pub(crate) struct Synthetic {
    seed: u64,
    /// Scalars fabricated so far.
    fabricated: usize,
    /// Every tensor made, kept when asked for (initial weights for training).
    pub(crate) made: Option<std::collections::BTreeMap<String, Tensor>>,
}

impl Synthetic {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            seed,
            fabricated: 0,
            made: None,
        }
    }

    pub(crate) fn fabricated(&self) -> usize {
        self.fabricated
    }

    /// The values of tensor `name` of `shape`, row-major.
    pub(crate) fn values(&self, name: &str, shape: &[usize]) -> Vec<f32> {
        let count: usize = shape.iter().product();
        let fan_in = match shape {
            [] => 1,
            [n] => *n,
            [_, rest @ ..] => rest.iter().product(),
        }
        .max(1);
        if name.ends_with("rotary_embed.freqs") {
            // rotary-embedding-torch: `1. / (theta ** (torch.arange(0, dim, 2)[:dim // 2] / dim))`
            // with theta 10000 and dim = dim_head = 2 * count.
            let dim_head = 2 * count;
            return (0..count)
                .map(|i| (1.0 / 10000f64.powf((2 * i) as f64 / dim_head as f64)) as f32)
                .collect();
        }
        if name.ends_with(".gamma") || name == "gamma" || name.ends_with("temperature") {
            return vec![1.0; count];
        }
        let bound = if name.ends_with("weight") || name.ends_with("bias") {
            1.0 / (fan_in as f64).sqrt()
        } else {
            0.02
        };
        let mut rng = SplitMix64::new(self.seed ^ fnv1a(name.as_bytes()));
        (0..count)
            .map(|_| (bound * (2.0 * rng.next_f64() - 1.0)) as f32)
            .collect()
    }

    /// Fabricates tensor `name` of `shape` on the CPU.
    pub(crate) fn tensor(&mut self, name: &str, shape: &[usize]) -> Tensor {
        let values = self.values(name, shape);
        self.fabricated += values.len();
        let t = Tensor::from_vec(values, shape, &Device::Cpu)
            .expect("a fabricated tensor has as many values as its shape");
        if let Some(made) = &mut self.made {
            made.insert(name.to_string(), t.clone());
        }
        t
    }
}

/// FNV-1a of the tensor name: mixes the name into the seed.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Sebastiano Vigna's splitmix64.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` (53 random bits).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::super::StateDict;
    use super::*;

    #[test]
    fn tensors_have_the_requested_shapes_and_ranges() {
        let mut sd = StateDict::synthetic(7);
        let w = sd.take("layers.0.0.to_qkv.weight", &[48, 16]).unwrap();
        assert_eq!(w.dims(), &[48, 16]);
        let w = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let bound = 1.0 / 4.0; // 1/sqrt(16)
        assert!(w.iter().all(|v| v.abs() <= bound), "outside ±1/sqrt(16)");
        // Not degenerate: spread over most of the range.
        let max = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(max > 0.9 * bound, "max {max}");

        let b = sd.take("band_split.to_features.0.1.bias", &[16]).unwrap();
        assert_eq!(b.dims(), &[16]);
        let g = sd.take("final_norm.gamma", &[16]).unwrap();
        assert_eq!(g.to_vec1::<f32>().unwrap(), vec![1.0; 16]);
        let t = sd
            .take("layers.0.0.layers.0.0.temperature", &[2, 1, 1])
            .unwrap();
        assert_eq!(t.dims(), &[2, 1, 1]);
        assert_eq!(
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![1.0; 2]
        );
        let other = sd.take("something.else", &[3, 5]).unwrap();
        let other = other.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(other.iter().all(|v| v.abs() <= 0.02));
        assert_eq!(sd.fabricated_parameters(), 48 * 16 + 16 + 16 + 2 + 15);
        sd.finish().unwrap();
    }

    #[test]
    fn rotary_freqs_match_rotary_embedding_torch() {
        let mut sd = StateDict::synthetic(0);
        let dim_head = 64;
        let f = sd
            .take("layers.0.1.layers.0.0.rotary_embed.freqs", &[dim_head / 2])
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(f.len(), 32);
        for (i, &v) in f.iter().enumerate() {
            let expected = (1.0 / 10000f64.powf((2 * i) as f64 / dim_head as f64)) as f32;
            assert_eq!(v, expected, "freqs[{i}]");
        }
        assert_eq!(f[0], 1.0);
        // The last one: 10000^(-62/64).
        assert!((f[31] as f64 - 10000f64.powf(-62.0 / 64.0)).abs() < 1e-9);
    }

    #[test]
    fn deterministic_per_seed_and_name_whatever_the_order() {
        let take = |sd: &mut StateDict, name: &str| {
            sd.take(name, &[4, 8])
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let mut a = StateDict::synthetic(42);
        let a1 = take(&mut a, "x.weight");
        let a2 = take(&mut a, "y.weight");
        let mut b = StateDict::synthetic(42);
        let b2 = take(&mut b, "y.weight");
        let b1 = take(&mut b, "x.weight");
        assert_eq!(a1, b1);
        assert_eq!(a2, b2);
        assert_ne!(a1, a2, "different names, different values");
        let mut c = StateDict::synthetic(43);
        assert_ne!(
            take(&mut c, "x.weight"),
            a1,
            "different seeds, different values"
        );
    }

    #[test]
    fn optional_tensors_are_absent_and_stored_ones_win() {
        let mut sd = StateDict::synthetic(1);
        assert!(sd.take_opt("maybe.bias", &[3]).unwrap().is_none());
        assert!(!sd.contains("final_norm.gamma"));
        // A tensor put in the dict is taken as stored (with its shape checked).
        sd.tensors.insert(
            "w".into(),
            Tensor::from_vec(vec![5f32; 6], (2, 3), &Device::Cpu).unwrap(),
        );
        assert!(sd.take("w", &[3, 2]).is_err());
        let w = sd.take("w", &[2, 3]).unwrap();
        assert_eq!(w.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [5.0; 6]);
        sd.finish().unwrap();
    }

    #[test]
    fn splitmix64_reference_values() {
        // First outputs of splitmix64 seeded with 0 (Vigna's reference implementation).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }
}
