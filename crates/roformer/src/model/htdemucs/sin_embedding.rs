//! The positional embeddings of HT Demucs' cross-domain transformer, computed as torch does in
//! float32 (the products and quotients rounded to f32 before `sin`/`cos`), so that positions far
//! along a long segment agree with the reference to the last bits.

/// `create_sin_embedding(length, dim, max_period)` as `[length][dim]`: `cos` of
/// `t / max_period^(j / (dim/2 - 1))` for the first half of the channels, `sin` for the second.
pub fn sin_embedding(length: usize, dim: usize, max_period: f64) -> Vec<f32> {
    let half = dim / 2;
    // torch: `adim / (half_dim - 1)` in f32, then `max_period ** that` in f32.
    let periods: Vec<f32> = (0..half)
        .map(|j| {
            let exponent = j as f32 / (half as f32 - 1.0);
            max_period.powf(exponent as f64) as f32
        })
        .collect();
    let mut out = vec![0.0f32; length * dim];
    for (t, row) in out.chunks_exact_mut(dim).enumerate() {
        for (j, &p) in periods.iter().enumerate() {
            let phase = (t as f32 / p) as f64;
            row[j] = phase.cos() as f32;
            row[half + j] = phase.sin() as f32;
        }
    }
    out
}

/// `create_2d_sin_embedding(dim, height, width, max_period)` as `[dim][height][width]`: the
/// first half of the channels encodes the width (time) position, the second the height
/// (frequency), alternating `sin` and `cos`.
pub fn sin_embedding_2d(dim: usize, height: usize, width: usize, max_period: f64) -> Vec<f32> {
    let half = dim / 2;
    // torch: `exp(arange(0, half, 2) * -(log(max_period) / half))` in f32.
    let log_step = -(max_period.ln() / half as f64) as f32;
    let div: Vec<f32> = (0..half)
        .step_by(2)
        .map(|i| ((i as f32 * log_step) as f64).exp() as f32)
        .collect();
    let mut pe = vec![0.0f32; dim * height * width];
    let plane = height * width;
    for (i, &d) in div.iter().enumerate() {
        for h in 0..height {
            let ph = (h as f32 * d) as f64;
            for w in 0..width {
                let pw = (w as f32 * d) as f64;
                let at = |c: usize| c * plane + h * width + w;
                pe[at(2 * i)] = pw.sin() as f32;
                pe[at(2 * i + 1)] = pw.cos() as f32;
                pe[at(half + 2 * i)] = ph.sin() as f32;
                pe[at(half + 2 * i + 1)] = ph.cos() as f32;
            }
        }
    }
    pe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_dimensional_starts_at_cos_1_sin_0_and_slows_down() {
        let e = sin_embedding(3, 8, 10000.0);
        // t = 0: cos 0 = 1 in the first half, sin 0 = 0 in the second.
        assert_eq!(&e[..8], &[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        // t = 1, j = 0: period 1, so cos(1) and sin(1); j = 3 (the last): period 10000.
        let row = &e[8..16];
        assert!((row[0] - 1f32.cos()).abs() < 1e-7 && (row[4] - 1f32.sin()).abs() < 1e-7);
        assert!((row[7] - (1e-4f32).sin()).abs() < 1e-9);
    }

    #[test]
    fn two_dimensional_encodes_width_then_height() {
        let (dim, h, w) = (8, 2, 3);
        let pe = sin_embedding_2d(dim, h, w, 10000.0);
        let at = |c: usize, y: usize, x: usize| pe[c * h * w + y * w + x];
        // div = exp(-[0, 2] * ln(1e4) / 4) = [1, 0.01].
        assert!((at(0, 1, 2) - 2f32.sin()).abs() < 1e-7);
        assert!((at(3, 0, 2) - 0.02f32.cos()).abs() < 1e-7);
        assert!((at(4, 1, 0) - 1f32.sin()).abs() < 1e-7);
        assert!((at(7, 1, 2) - 0.01f32.cos()).abs() < 1e-7);
    }
}
