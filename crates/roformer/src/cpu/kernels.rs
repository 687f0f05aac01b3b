//! Fused element-wise kernels of the CPU engine: each one pass over memory, parallel over rows,
//! vectorised through [`simd_dispatch!`].

use rayon::prelude::*;

use super::simd::{simd_dispatch, LANES};

/// Rows handed to one rayon task by the row-parallel kernels.
const ROWS_PER_TASK: usize = 64;

/// `e^x` to about 2 ulp for `x <= 88`; underflows to ~1e-38 below -87 (never to 0 or NaN).
/// Cephes' range reduction `x = n ln2 + r` and its degree-5 polynomial for `e^r`.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that n * LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to the nearest integer without a branch and leaves that integer
    // in the low mantissa bits (read back with integer ops: a float-to-int cast would not
    // vectorise, as Rust's casts saturate).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.7);
    let shifted = x * LOG2E + ROUND;
    let n = shifted - ROUND;
    let n_int = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((n_int + 127) << 23) as u32)
}

/// `gelu(x) = x/2 (1 + erf(x / sqrt 2))`, torch's exact (erf) GELU. `1 + erf` uses Abramowitz &
/// Stegun 7.1.26 (absolute error below 1.5e-7), evaluated so that negative inputs never cancel.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_7,
        -1.453_152,
        1.061_405_4,
    ];
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    // q = 1 - erf(|x|/sqrt 2) = erfc
    let q = poly * exp(-z * z);
    let one_plus_erf = if x >= 0.0 { 2.0 - q } else { q };
    0.5 * x * one_plus_erf
}

#[inline(always)]
fn sum_lanes(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = v.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

#[inline(always)]
fn sum_squares_lanes(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = v.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            acc[i] += c[i] * c[i];
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().map(|x| x * x).sum::<f32>()
}

#[inline(always)]
fn max_lanes(v: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = v.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    acc.iter().copied().fold(tail, f32::max)
}

/// MSST's RMSNorm of rows of `x` into `out`: `x / max(||x||, 1e-12) * gamma_scaled`, where
/// `gamma_scaled = gamma * sqrt(dim)` (F.normalize, then scale and gain). When `then_add` is
/// given it is added to `x` afterwards (a bias that belongs to the residual branch, folded into
/// the same pass).
#[inline(always)]
fn rms_norm_block(x: &mut [f32], out: &mut [f32], gamma_scaled: &[f32], then_add: Option<&[f32]>) {
    let d = gamma_scaled.len();
    for (xr, or) in x.chunks_exact_mut(d).zip(out.chunks_exact_mut(d)) {
        let norm = sum_squares_lanes(xr).sqrt();
        let inv = 1.0 / norm.max(1e-12);
        for ((o, &v), &g) in or.iter_mut().zip(xr.iter()).zip(gamma_scaled) {
            *o = v * inv * g;
        }
        if let Some(bias) = then_add {
            for (v, &b) in xr.iter_mut().zip(bias) {
                *v += b;
            }
        }
    }
}

simd_dispatch!(fn rms_norm_block_simd(
    x: &mut [f32],
    out: &mut [f32],
    gamma_scaled: &[f32],
    then_add: Option<&[f32]>,
) => rms_norm_block);

/// Row-parallel [`rms_norm_block`] over `x: [rows, dim]`.
pub fn rms_norm_rows(
    x: &mut [f32],
    out: &mut [f32],
    gamma_scaled: &[f32],
    then_add: Option<&[f32]>,
) {
    let d = gamma_scaled.len();
    x.par_chunks_mut(d * ROWS_PER_TASK)
        .zip(out.par_chunks_mut(d * ROWS_PER_TASK))
        .for_each(|(xb, ob)| rms_norm_block_simd(xb, ob, gamma_scaled, then_add));
}

#[inline(always)]
fn gelu_bias_block(h: &mut [f32], bias: &[f32]) {
    for row in h.chunks_exact_mut(bias.len()) {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v = gelu(*v + b);
        }
    }
}

simd_dispatch!(fn gelu_bias_block_simd(h: &mut [f32], bias: &[f32]) => gelu_bias_block);

/// `h = gelu(h + bias)` over rows of `h: [rows, bias.len()]`.
pub fn gelu_bias_rows(h: &mut [f32], bias: &[f32]) {
    h.par_chunks_mut(bias.len() * ROWS_PER_TASK)
        .for_each(|b| gelu_bias_block_simd(b, bias));
}

/// Replaces each row of `s: [rows, n]` by `exp(s - max(row))` and returns the row sums in `sums`
/// (the softmax numerators; the caller divides later, on the smaller attention output).
#[inline(always)]
fn exp_rows_block(s: &mut [f32], n: usize, sums: &mut [f32]) {
    for (row, sum) in s.chunks_exact_mut(n).zip(sums.iter_mut()) {
        let max = max_lanes(row);
        for v in row.iter_mut() {
            *v = exp(*v - max);
        }
        *sum = sum_lanes(row);
    }
}

simd_dispatch!(pub fn exp_rows(s: &mut [f32], n: usize, sums: &mut [f32]) => exp_rows_block);

/// `tanh(x)` from [`exp`] as `(1 - e^-2|x|) / (1 + e^-2|x|)` with the sign put back (absolute
/// error about 1e-7).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let t = exp(-2.0 * x.abs());
    ((1.0 - t) / (1.0 + t)).copysign(x)
}

#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

#[inline(always)]
fn tanh_bias_block(h: &mut [f32], bias: &[f32]) {
    for row in h.chunks_exact_mut(bias.len()) {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v = tanh(*v + b);
        }
    }
}

simd_dispatch!(
    /// `h = tanh(h + bias)` over rows of `h: [rows, bias.len()]`, on the calling thread.
    pub fn tanh_bias_rows(h: &mut [f32], bias: &[f32]) => tanh_bias_block
);

#[inline(always)]
fn glu_bias_block(h: &[f32], bias: &[f32], out: &mut [f32]) {
    let half = bias.len() / 2;
    for (row, o) in h.chunks_exact(bias.len()).zip(out.chunks_exact_mut(half)) {
        let (a, g) = row.split_at(half);
        let (ba, bg) = bias.split_at(half);
        for i in 0..half {
            o[i] = (a[i] + ba[i]) * sigmoid(g[i] + bg[i]);
        }
    }
}

simd_dispatch!(
    /// GLU of `h + bias` (rows `[a | g]` of `bias.len()`): `out = a * sigmoid(g)`, half as wide.
    pub fn glu_bias_rows(h: &[f32], bias: &[f32], out: &mut [f32]) => glu_bias_block
);

#[inline(always)]
fn layer_norm_block(x: &[f32], out: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    let d = weight.len();
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mean = sum_lanes(xr) / d as f32;
        for (o, &v) in or.iter_mut().zip(xr) {
            *o = v - mean;
        }
        let var = sum_squares_lanes(or) / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((o, &w), &b) in or.iter_mut().zip(weight).zip(bias) {
            *o = *o * inv * w + b;
        }
    }
}

simd_dispatch!(fn layer_norm_block_simd(
    x: &[f32],
    out: &mut [f32],
    weight: &[f32],
    bias: &[f32],
    eps: f32,
) => layer_norm_block);

/// `nn.LayerNorm` of the rows of `x: [rows, weight.len()]` into `out` (population variance of
/// the centred row, as torch computes it).
pub fn layer_norm_rows(x: &[f32], out: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    let d = weight.len();
    x.par_chunks(d * ROWS_PER_TASK)
        .zip(out.par_chunks_mut(d * ROWS_PER_TASK))
        .for_each(|(xb, ob)| layer_norm_block_simd(xb, ob, weight, bias, eps));
}

#[inline(always)]
fn add_scaled_block(x: &mut [f32], y: &[f32], bias: &[f32], scale: Option<&[f32]>) {
    let d = bias.len();
    for (xr, yr) in x.chunks_exact_mut(d).zip(y.chunks_exact(d)) {
        match scale {
            Some(s) => {
                for (((x, &y), &b), &s) in xr.iter_mut().zip(yr).zip(bias).zip(s) {
                    *x += s * (y + b);
                }
            }
            None => {
                for ((x, &y), &b) in xr.iter_mut().zip(yr).zip(bias) {
                    *x += y + b;
                }
            }
        }
    }
}

simd_dispatch!(fn add_scaled_block_simd(
    x: &mut [f32],
    y: &[f32],
    bias: &[f32],
    scale: Option<&[f32]>,
) => add_scaled_block);

/// `x += scale * (y + bias)` over rows of `bias.len()` (a residual branch with its output bias
/// and `LayerScale`; no scale is 1).
pub fn add_scaled_rows(x: &mut [f32], y: &[f32], bias: &[f32], scale: Option<&[f32]>) {
    let d = bias.len();
    x.par_chunks_mut(d * ROWS_PER_TASK)
        .zip(y.par_chunks(d * ROWS_PER_TASK))
        .for_each(|(xb, yb)| add_scaled_block_simd(xb, yb, bias, scale));
}

/// `[outer, a, b, d] -> [outer, b, a, d]`: swaps the two token axes, keeping feature rows whole.
pub fn swap_token_axes(src: &[f32], dst: &mut [f32], outer: usize, a: usize, b: usize, d: usize) {
    assert_eq!(src.len(), outer * a * b * d);
    assert_eq!(dst.len(), src.len());
    // One task per destination row block `[o, j, :, :]`.
    dst.par_chunks_mut(a * d).enumerate().for_each(|(ob, out)| {
        let (o, j) = (ob / b, ob % b);
        for (i, row) in out.chunks_exact_mut(d).enumerate() {
            let from = ((o * a + i) * b + j) * d;
            row.copy_from_slice(&src[from..from + d]);
        }
    });
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// erf in f64: the Maclaurin series below |x| = 3 (terms stay below e^9, so f64 keeps ~12
    /// digits), the continued fraction of erfc above it (evaluated backwards, 80 terms).
    pub(crate) fn erf_f64(x: f64) -> f64 {
        let z = x.abs();
        let value = if z < 3.0 {
            let mut term = z;
            let mut sum = z;
            for k in 1..200 {
                let k = k as f64;
                term *= -z * z / k;
                sum += term / (2.0 * k + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(z) = e^{-z^2}/sqrt(pi) / (z + (1/2)/(z + 1/(z + (3/2)/(z + 2/(z + ...)))))
            let mut tail = z;
            for k in (1..80).rev() {
                tail = z + (k as f64 / 2.0) / tail;
            }
            1.0 - (-z * z).exp() / std::f64::consts::PI.sqrt() / tail
        };
        value.copysign(x)
    }

    #[test]
    fn exp_matches_std() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = exp(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max((got - want).abs() / want);
            x += 0.0137;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        // Far below the range: tiny and finite, never NaN.
        assert!(exp(-1e4) >= 0.0 && exp(-1e4) < 1e-37);
        assert!(exp(f32::NEG_INFINITY).is_finite());
    }

    #[test]
    fn gelu_matches_erf_definition() {
        let mut worst = 0.0f64;
        let mut x = -12.0f64;
        while x < 12.0 {
            let want = 0.5 * x * (1.0 + erf_f64(x / 2f64.sqrt()));
            let got = gelu(x as f32) as f64;
            // 1.5e-7 absolute in erf, times |x|/2, plus f32 rounding.
            worst = worst.max((got - want).abs() / (1.0 + x.abs()));
            x += 0.00731;
        }
        assert!(worst < 2e-7, "worst error {worst}");
        assert_eq!(gelu(0.0), 0.0);
    }

    #[test]
    fn tanh_sigmoid_and_glu_match_std() {
        let xs: Vec<f32> = (0..4001).map(|i| (i as f32 - 2000.0) * 0.01).collect();
        for &x in &xs {
            let (x64, t) = (x as f64, tanh(x) as f64);
            assert!((t - x64.tanh()).abs() < 2e-7, "tanh({x}) = {t}");
            let s = sigmoid(x) as f64;
            assert!(
                (s - 1.0 / (1.0 + (-x64).exp())).abs() < 2e-7,
                "sigmoid({x}) = {s}"
            );
        }
        assert_eq!(tanh(50.0), 1.0);
        assert_eq!(tanh(-50.0), -1.0);
        let bias = [0.5, -1.0, 2.0, 0.25];
        let h = [1.0, 2.0, -3.0, 4.0];
        let mut out = [0.0; 2];
        glu_bias_rows(&h, &bias, &mut out);
        let want0 = 1.5 * (1.0 / (1.0 + (-(-1.0f64)).exp()));
        let want1 = 1.0 * (1.0 / (1.0 + (-4.25f64).exp()));
        assert!((out[0] as f64 - want0).abs() < 1e-6 && (out[1] as f64 - want1).abs() < 1e-6);
        let mut h = [0.3f32, -0.7];
        tanh_bias_rows(&mut h, &[0.1, 0.2]);
        assert!((h[0] as f64 - 0.4f64.tanh()).abs() < 2e-7);
        assert!((h[1] as f64 - (-0.5f64).tanh()).abs() < 2e-7);
    }

    #[test]
    fn rms_norm_is_l2_normalise_times_sqrt_dim() {
        let d = 37;
        let rows = 130;
        let mut x: Vec<f32> = (0..rows * d)
            .map(|i| ((i * 7919) % 113) as f32 - 56.0)
            .collect();
        // One all-zero row stays zero (F.normalize clamps the norm).
        x[5 * d..6 * d].fill(0.0);
        let gamma: Vec<f32> = (0..d).map(|i| 0.5 + i as f32 / d as f32).collect();
        let scaled: Vec<f32> = gamma.iter().map(|g| g * (d as f32).sqrt()).collect();
        let bias: Vec<f32> = (0..d).map(|i| i as f32).collect();
        let before = x.clone();
        let mut out = vec![0.0; rows * d];
        rms_norm_rows(&mut x, &mut out, &scaled, Some(&bias));
        for r in 0..rows {
            let row = &before[r * d..(r + 1) * d];
            let norm = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
            for i in 0..d {
                let want = row[i] as f64 / norm.max(1e-12) * (d as f64).sqrt() * gamma[i] as f64;
                assert!((out[r * d + i] as f64 - want).abs() < 1e-5 * (1.0 + want.abs()));
                assert_eq!(x[r * d + i], row[i] + bias[i]);
            }
        }
    }

    #[test]
    fn layer_norm_and_residual_rows_follow_their_formulas() {
        let (rows, d) = (70, 19);
        let x: Vec<f32> = (0..rows * d)
            .map(|i| ((i * 31) % 17) as f32 * 0.3 - 2.0)
            .collect();
        let w: Vec<f32> = (0..d).map(|i| 0.5 + 0.1 * i as f32).collect();
        let b: Vec<f32> = (0..d).map(|i| 0.05 * i as f32 - 0.4).collect();
        let mut out = vec![0.0; rows * d];
        layer_norm_rows(&x, &mut out, &w, &b, 1e-5);
        for r in 0..rows {
            let row: Vec<f64> = x[r * d..(r + 1) * d].iter().map(|&v| v as f64).collect();
            let mean = row.iter().sum::<f64>() / d as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
            for i in 0..d {
                let want = (row[i] - mean) / (var + 1e-5).sqrt() * w[i] as f64 + b[i] as f64;
                assert!((out[r * d + i] as f64 - want).abs() < 1e-5, "{r} {i}");
            }
        }
        let mut acc = x.clone();
        add_scaled_rows(&mut acc, &out, &b, Some(&w));
        for i in 0..rows * d {
            let want = x[i] + w[i % d] * (out[i] + b[i % d]);
            assert!((acc[i] - want).abs() <= 1e-6 * (1.0 + want.abs()));
        }
    }

    #[test]
    fn exp_rows_is_softmax_numerator() {
        let n = 45;
        let rows = 3;
        let mut s: Vec<f32> = (0..rows * n)
            .map(|i| (i as f32 * 0.37).sin() * 20.0)
            .collect();
        let orig = s.clone();
        let mut sums = vec![0.0; rows];
        exp_rows(&mut s, n, &mut sums);
        for r in 0..rows {
            let row = &orig[r * n..(r + 1) * n];
            let max = row.iter().copied().fold(f32::MIN, f32::max) as f64;
            let total: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
            assert!((sums[r] as f64 - total).abs() < 1e-5 * total);
            for i in 0..n {
                let want = (row[i] as f64 - max).exp();
                assert!((s[r * n + i] as f64 - want).abs() < 1e-6 * (1.0 + want));
            }
        }
    }

    #[test]
    fn swap_token_axes_transposes() {
        let (o, a, b, d) = (2, 3, 5, 4);
        let src: Vec<f32> = (0..o * a * b * d).map(|i| i as f32).collect();
        let mut dst = vec![0.0; src.len()];
        swap_token_axes(&src, &mut dst, o, a, b, d);
        for oo in 0..o {
            for i in 0..a {
                for j in 0..b {
                    for k in 0..d {
                        assert_eq!(
                            dst[((oo * b + j) * a + i) * d + k],
                            src[((oo * a + i) * b + j) * d + k]
                        );
                    }
                }
            }
        }
        let mut back = vec![0.0; src.len()];
        swap_token_axes(&dst, &mut back, o, b, a, d);
        assert_eq!(back, src);
    }
}
