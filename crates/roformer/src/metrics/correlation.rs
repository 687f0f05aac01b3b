//! Short-lag cross-correlations of long signals, by blocks of FFTs (overlap-save), in parallel.
//!
//! For a pair `(u, v)` of equally long signals (zero outside `0..len`) it returns
//! `r[k] = Σ_n u[n + k] · v[n]` for `k` in `0..lags`: the exact sums, up to rounding, that
//! museval gets from one FFT of the whole zero-padded track.

use std::sync::Arc;

use rayon::prelude::*;
use realfft::num_complex::Complex64;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use super::MetricsError;

/// Which signals a pair correlates: `u` is read at `n + k`, `v` at `n`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pair {
    pub u: usize,
    pub v: usize,
}

/// `r[pair][k]` for `k` in `0..lags` (see the module documentation). All signals must have the
/// same length.
pub(crate) fn correlations(
    signals: &[&[f32]],
    pairs: &[Pair],
    lags: usize,
) -> Result<Vec<Vec<f64>>, MetricsError> {
    let len = signals.first().map_or(0, |s| s.len());
    debug_assert!(signals.iter().all(|s| s.len() == len));
    if pairs.is_empty() || lags == 0 {
        return Ok(vec![Vec::new(); pairs.len()]);
    }
    // Block of v: `block` samples; segment of u: `block + lags - 1` samples; both fit one FFT
    // without wrapping into the lags we keep.
    let size = (lags * 32).next_power_of_two().max(1024);
    let block = size - lags + 1;
    let bins = size / 2 + 1;
    let blocks = len.div_ceil(block).max(1);

    let mut planner = RealFftPlanner::<f64>::new();
    let forward = planner.plan_fft_forward(size);
    let inverse = planner.plan_fft_inverse(size);

    let mut used_u = vec![false; signals.len()];
    let mut used_v = vec![false; signals.len()];
    for p in pairs {
        used_u[p.u] = true;
        used_v[p.v] = true;
    }

    let groups = rayon::current_num_threads().clamp(1, blocks);
    let per_group = blocks.div_ceil(groups);
    let partials: Vec<Vec<Vec<Complex64>>> = (0..groups)
        .into_par_iter()
        .map(|g| {
            let mut acc = vec![vec![Complex64::default(); bins]; pairs.len()];
            let mut work = Work::new(&forward, signals.len(), bins);
            let first = g * per_group;
            let last = ((g + 1) * per_group).min(blocks);
            for b in first..last {
                let start = b * block;
                for (i, s) in signals.iter().enumerate() {
                    if used_u[i] {
                        let end = (start + block + lags - 1).min(len);
                        work.transform(&forward, &s[start.min(len)..end], i, true)?;
                    }
                    if used_v[i] {
                        let end = (start + block).min(len);
                        work.transform(&forward, &s[start.min(len)..end], i, false)?;
                    }
                }
                for (a, p) in acc.iter_mut().zip(pairs) {
                    let (u, v) = (&work.u_spec[p.u], &work.v_spec[p.v]);
                    for ((a, x), y) in a.iter_mut().zip(u).zip(v) {
                        *a += x * y.conj();
                    }
                }
            }
            Ok(acc)
        })
        .collect::<Result<_, MetricsError>>()?;

    let mut total = vec![vec![Complex64::default(); bins]; pairs.len()];
    for part in partials {
        for (t, p) in total.iter_mut().zip(part) {
            for (t, p) in t.iter_mut().zip(p) {
                *t += p;
            }
        }
    }
    total
        .into_par_iter()
        .map(|mut spec| inverse_lags(&inverse, &mut spec, size, lags))
        .collect()
}

/// Per-thread buffers: the spectra of the current block's `u` segments and `v` blocks.
struct Work {
    input: Vec<f64>,
    scratch: Vec<Complex64>,
    u_spec: Vec<Vec<Complex64>>,
    v_spec: Vec<Vec<Complex64>>,
}

impl Work {
    fn new(forward: &Arc<dyn RealToComplex<f64>>, count: usize, bins: usize) -> Self {
        Self {
            input: forward.make_input_vec(),
            scratch: forward.make_scratch_vec(),
            u_spec: vec![vec![Complex64::default(); bins]; count],
            v_spec: vec![vec![Complex64::default(); bins]; count],
        }
    }

    fn transform(
        &mut self,
        forward: &Arc<dyn RealToComplex<f64>>,
        samples: &[f32],
        index: usize,
        as_u: bool,
    ) -> Result<(), MetricsError> {
        self.input.fill(0.0);
        for (d, &s) in self.input.iter_mut().zip(samples) {
            *d = f64::from(s);
        }
        let out = if as_u {
            &mut self.u_spec[index]
        } else {
            &mut self.v_spec[index]
        };
        forward
            .process_with_scratch(&mut self.input, out, &mut self.scratch)
            .map_err(|e| MetricsError::Fft(e.to_string()))
    }
}

fn inverse_lags(
    inverse: &Arc<dyn ComplexToReal<f64>>,
    spec: &mut [Complex64],
    size: usize,
    lags: usize,
) -> Result<Vec<f64>, MetricsError> {
    // The DC and Nyquist bins of a real signal's cross-spectrum are real.
    spec[0].im = 0.0;
    if let Some(last) = spec.last_mut() {
        last.im = 0.0;
    }
    let mut out = inverse.make_output_vec();
    inverse
        .process(spec, &mut out)
        .map_err(|e| MetricsError::Fft(e.to_string()))?;
    let scale = 1.0 / size as f64;
    Ok(out[..lags].iter().map(|x| x * scale).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_direct_sums() {
        let len = 5000;
        let u: Vec<f32> = (0..len)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let v: Vec<f32> = (0..len)
            .map(|i| ((i * 53 % 89) as f32 - 44.0) / 44.0)
            .collect();
        let lags = 40;
        let r = correlations(&[&u, &v], &[Pair { u: 0, v: 1 }, Pair { u: 1, v: 1 }], lags).unwrap();
        for k in 0..lags {
            let direct: f64 = (0..len - k).map(|n| u[n + k] as f64 * v[n] as f64).sum();
            assert!((r[0][k] - direct).abs() < 1e-9 * len as f64, "lag {k}");
            let auto: f64 = (0..len - k).map(|n| v[n + k] as f64 * v[n] as f64).sum();
            assert!((r[1][k] - auto).abs() < 1e-9 * len as f64, "lag {k}");
        }
    }
}
