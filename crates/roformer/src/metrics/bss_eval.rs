//! BSSEval v4 as museval 0.4.1 computes it (`museval.evaluate` → `metrics.bss_eval` with
//! `framewise_filters=False`, `bsseval_sources_version=False`, no permutation search).
//!
//! For `J` stems of `C` channels and filters of `L` taps:
//!
//! 1. Distortion filters are fitted once on the whole track. `G` is the Gram matrix of every
//!    reference channel delayed by `0..L` samples (`J·C·L` square, museval's
//!    `_compute_reference_correlations`); for each estimate `k`, the least-squares filters onto
//!    all references are `(G + εI)⁻¹ D_k` and onto its own reference `(G_kk + εI)⁻¹ D_kk`, where
//!    `D_k` holds the correlations of the delayed references with the estimate's channels and
//!    `ε = f64::EPSILON` (`_compute_projection_filters`). Correlations are computed by FFT.
//! 2. For each window (`hop` apart, `window` long; the trailing partial window is dropped, as in
//!    museval's `Framing`), the windowed references are filtered (full convolution, `window + L - 1`
//!    samples): `P_own` with the own-reference filters, `P_all` with all-reference filters
//!    (`_bss_decomp_mtifilt`). With `s` the windowed reference and `ŝ` the windowed estimate (both
//!    zero-padded by `L - 1`), `_bss_crit` gives
//!    `SDR = 10 log10(‖s‖² / ‖ŝ - s‖²)`, `ISR = 10 log10(‖s‖² / ‖P_own - s‖²)`,
//!    `SIR = 10 log10(‖P_own‖² / ‖P_all - P_own‖²)`, `SAR = 10 log10(‖P_all‖² / ‖ŝ - P_all‖²)`
//!    (a zero denominator gives +∞).
//! 3. A window where any reference or any estimate is silent (its channel sum is 0 at every sample)
//!    is NaN for every stem and metric.
//!
//! A track's value is museval's: the median over windows, ignoring NaN (`np.nanmedian`; its JSON
//! store turns ±∞ into NaN first), see [`BssFrames::median`].

use std::sync::Arc;

use rayon::prelude::*;
use realfft::num_complex::Complex64;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use super::correlation::{correlations, Pair};
use super::fft_size::fast_fft_len;
use super::least_squares::MinNorm;
use super::lu::Lu;
use super::{nanmedian, MetricsError};

/// Framing and filter length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BssEvalOptions {
    /// Window length in samples (museval: 1 s).
    pub window: usize,
    /// Hop between windows in samples (museval: 1 s).
    pub hop: usize,
    /// Distortion filter taps (museval: 512).
    pub filter_len: usize,
}

impl BssEvalOptions {
    /// museval's defaults for `museval.evaluate` / `eval_mus_track`: 1 s windows and hops, 512 taps.
    pub fn museval(sample_rate: u32) -> Self {
        Self {
            window: sample_rate as usize,
            hop: sample_rate as usize,
            filter_len: 512,
        }
    }
}

/// One stem's metrics for every window, in dB (NaN for silent windows, +∞ for zero error).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BssFrames {
    pub sdr: Vec<f64>,
    pub isr: Vec<f64>,
    pub sir: Vec<f64>,
    pub sar: Vec<f64>,
}

/// One stem's track-level values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BssScores {
    pub sdr: f64,
    pub isr: f64,
    pub sir: f64,
    pub sar: f64,
}

impl BssScores {
    pub const NAN: Self = Self {
        sdr: f64::NAN,
        isr: f64::NAN,
        sir: f64::NAN,
        sar: f64::NAN,
    };
}

impl BssFrames {
    /// museval's track value: infinite window values become NaN (as its JSON store does), then
    /// the median over the windows that are not NaN.
    pub fn median(&self) -> BssScores {
        let agg = |v: &[f64]| {
            let finite: Vec<f64> = v
                .iter()
                .map(|&x| if x.is_infinite() { f64::NAN } else { x })
                .collect();
            nanmedian(&finite)
        };
        BssScores {
            sdr: agg(&self.sdr),
            isr: agg(&self.isr),
            sir: agg(&self.sir),
            sar: agg(&self.sar),
        }
    }
}

/// The windows museval's `Framing` yields for `len` samples: `(start, stop)`.
pub fn windows(len: usize, window: usize, hop: usize) -> Vec<(usize, usize)> {
    let count = if window < len {
        (len - window + hop) / hop
    } else {
        1
    };
    (0..count)
        .map(|t| (t * hop, (t * hop + window).min(len)))
        .collect()
}

/// BSSEval v4 of `references[j]` against `estimates[j]` (planar `[channel][sample]`, all of the
/// same shape), all stems together. Returns one [`BssFrames`] per stem.
pub fn bss_eval_v4(
    references: &[&[Vec<f32>]],
    estimates: &[&[Vec<f32>]],
    options: &BssEvalOptions,
) -> Result<Vec<BssFrames>, MetricsError> {
    let sources = references.len();
    if sources == 0 || estimates.len() != sources {
        return Err(MetricsError::Shape(format!(
            "{sources} reference(s) and {} estimate(s): BSSEval needs the same non-zero number",
            estimates.len()
        )));
    }
    let channels = references[0].len();
    let len = references[0].first().map_or(0, Vec::len);
    for (j, s) in references.iter().chain(estimates).enumerate() {
        let which = if j < sources { "reference" } else { "estimate" };
        if s.len() != channels || s.iter().any(|c| c.len() != len) {
            return Err(MetricsError::Shape(format!(
                "{which} {} does not have {channels} channel(s) of {len} samples",
                j % sources
            )));
        }
    }
    if channels == 0 || len == 0 {
        return Err(MetricsError::Shape("BSSEval of empty signals".into()));
    }
    let taps = options.filter_len;
    if taps == 0 || options.window == 0 || options.hop == 0 {
        return Err(MetricsError::Shape(
            "BSSEval needs a non-zero window, hop and filter length".into(),
        ));
    }
    for (j, s) in references.iter().enumerate() {
        if silent(s, 0, len) {
            return Err(MetricsError::Silent {
                which: "reference",
                index: j,
            });
        }
    }
    for (j, s) in estimates.iter().enumerate() {
        if silent(s, 0, len) {
            return Err(MetricsError::Silent {
                which: "estimate",
                index: j,
            });
        }
    }

    let filters = Filters::fit(references, estimates, taps)?;
    let frames = windows(len, options.window, options.hop);
    let longest = frames.iter().map(|(a, b)| b - a).max().unwrap_or(0);
    let size = fast_fft_len(longest + taps - 1);
    let spectra = FilterSpectra::new(&filters, size)?;

    let per_window: Vec<Vec<[f64; 4]>> = frames
        .par_iter()
        .map_init(
            || WindowWork::new(&spectra, sources * channels),
            |work, &(start, stop)| {
                if references.iter().any(|s| silent(s, start, stop))
                    || estimates.iter().any(|s| silent(s, start, stop))
                {
                    return Ok(vec![[f64::NAN; 4]; sources]);
                }
                work.evaluate(references, estimates, &spectra, start, stop)
            },
        )
        .collect::<Result<_, MetricsError>>()?;

    Ok((0..sources)
        .map(|k| {
            let mut f = BssFrames::default();
            for w in &per_window {
                f.sdr.push(w[k][0]);
                f.isr.push(w[k][1]);
                f.sir.push(w[k][2]);
                f.sar.push(w[k][3]);
            }
            f
        })
        .collect())
}

/// museval's `_any_source_silent` for one source over `start..stop`: the sum over channels is 0 at
/// every sample.
fn silent(source: &[Vec<f32>], start: usize, stop: usize) -> bool {
    (start..stop).all(|n| {
        source
            .iter()
            .fold(0.0f64, |acc, c| acc + f64::from(c[n]))
            .eq(&0.0)
    })
}

/// The fitted distortion filters: `all[k][p][a][c]` maps reference channel `p = j·C + cj`, tap
/// `a`, to output channel `c` of estimate `k`; `own[k][cj][a][c]` uses only reference `k`.
struct Filters {
    sources: usize,
    channels: usize,
    taps: usize,
    /// `all[k]`: `J·C · L · C` values, index `(p·L + a)·C + c`.
    all: Vec<Vec<f64>>,
    /// `own[k]`: `C · L · C` values, index `(cj·L + a)·C + c`.
    own: Vec<Vec<f64>>,
}

impl Filters {
    fn fit(
        references: &[&[Vec<f32>]],
        estimates: &[&[Vec<f32>]],
        taps: usize,
    ) -> Result<Self, MetricsError> {
        let sources = references.len();
        let channels = references[0].len();
        let jc = sources * channels;
        let signals: Vec<&[f32]> = references
            .iter()
            .chain(estimates)
            .flat_map(|s| s.iter().map(Vec::as_slice))
            .collect();
        // Reference-reference pairs first (G), then estimate-reference pairs (D).
        let mut pairs = Vec::with_capacity(2 * jc * jc);
        for p in 0..jc {
            for q in 0..jc {
                pairs.push(Pair { u: p, v: q });
            }
        }
        for e in 0..jc {
            for p in 0..jc {
                pairs.push(Pair { u: jc + e, v: p });
            }
        }
        let r = correlations(&signals, &pairs, taps)?;
        let rr = |p: usize, q: usize| &r[p * jc + q];
        let er = |e: usize, p: usize| &r[jc * jc + e * jc + p];

        // G[(p, a), (q, b)] = Σ_n x_p[n - a] x_q[n - b].
        let n = jc * taps;
        let mut g = vec![0.0f64; n * n];
        g.par_chunks_mut(n).enumerate().for_each(|(row, out)| {
            let (p, a) = (row / taps, row % taps);
            for q in 0..jc {
                let (fwd, back) = (rr(p, q), rr(q, p));
                for b in 0..taps {
                    out[q * taps + b] = if b >= a { fwd[b - a] } else { back[a - b] };
                }
            }
        });
        let own_block = |k: usize| {
            let m = channels * taps;
            let mut block = vec![0.0f64; m * m];
            for (i, row) in block.chunks_exact_mut(m).enumerate() {
                let src = (k * m + i) * n + k * m;
                row.copy_from_slice(&g[src..src + m]);
            }
            block
        };
        let own_blocks: Vec<Vec<f64>> = (0..sources).map(own_block).collect();

        // Right-hand sides: D_k[(p, a)][c] = Σ_n x_p[n - a] ŝ_{k,c}[n].
        let rhs = |k: usize, c: usize, rows: std::ops::Range<usize>| -> Vec<f64> {
            rows.flat_map(|p| er(k * channels + c, p).iter().copied())
                .collect()
        };

        let lu = FilterSolver::new(g, n)?;
        let solved_all: Vec<Vec<Vec<f64>>> = (0..sources)
            .into_par_iter()
            .map(|k| {
                (0..channels)
                    .map(|c| {
                        let mut b = rhs(k, c, 0..jc);
                        lu.solve_in_place(&mut b);
                        b
                    })
                    .collect()
            })
            .collect();
        let solved_own: Vec<Vec<Vec<f64>>> = own_blocks
            .into_par_iter()
            .enumerate()
            .map(|(k, block)| {
                let lu = FilterSolver::new(block, channels * taps)?;
                Ok((0..channels)
                    .map(|c| {
                        let mut b = rhs(k, c, k * channels..(k + 1) * channels);
                        lu.solve_in_place(&mut b);
                        b
                    })
                    .collect())
            })
            .collect::<Result<_, MetricsError>>()?;

        let interleave = |cols: &[Vec<f64>]| -> Vec<f64> {
            let rows = cols[0].len();
            let mut out = vec![0.0; rows * channels];
            for (c, col) in cols.iter().enumerate() {
                for (r, &x) in col.iter().enumerate() {
                    out[r * channels + c] = x;
                }
            }
            out
        };
        Ok(Self {
            sources,
            channels,
            taps,
            all: solved_all.iter().map(|c| interleave(c)).collect(),
            own: solved_own.iter().map(|c| interleave(c)).collect(),
        })
    }
}

/// museval's rule (`_compute_projection_filters`): solve `(G + eps I) C = D` by LU, and where
/// LAPACK raises `LinAlgError` (an exactly zero pivot: stems with identical channels, say) take
/// `numpy.linalg.lstsq(G, D)`, the minimum-norm least-squares solution, instead.
enum FilterSolver {
    Lu(Lu),
    MinNorm(MinNorm),
}

impl FilterSolver {
    fn new(g: Vec<f64>, n: usize) -> Result<Self, MetricsError> {
        let mut shifted = g.clone();
        for i in 0..n {
            shifted[i * n + i] += f64::EPSILON;
        }
        match Lu::factor(&shifted, n) {
            Ok(lu) => Ok(Self::Lu(lu)),
            Err(MetricsError::Singular) => MinNorm::factor(&g, n).map(Self::MinNorm),
            Err(e) => Err(e),
        }
    }

    fn solve_in_place(&self, b: &mut [f64]) {
        match self {
            Self::Lu(lu) => lu.solve_in_place(b),
            Self::MinNorm(m) => m.solve_in_place(b),
        }
    }
}

/// The filters' spectra at the window FFT size: `all[k][c][p]`, `own[k][c][cj]`.
struct FilterSpectra {
    size: usize,
    taps: usize,
    sources: usize,
    channels: usize,
    all: Vec<Vec<Vec<Vec<Complex64>>>>,
    own: Vec<Vec<Vec<Vec<Complex64>>>>,
    forward: Arc<dyn RealToComplex<f64>>,
    inverse: Arc<dyn ComplexToReal<f64>>,
}

impl FilterSpectra {
    fn new(filters: &Filters, size: usize) -> Result<Self, MetricsError> {
        let mut planner = RealFftPlanner::<f64>::new();
        let forward = planner.plan_fft_forward(size);
        let inverse = planner.plan_fft_inverse(size);
        let (sources, channels, taps) = (filters.sources, filters.channels, filters.taps);
        let spectrum = |coefs: &[f64], input: usize, c: usize| {
            let mut buf = forward.make_input_vec();
            for a in 0..taps {
                buf[a] = coefs[(input * taps + a) * channels + c];
            }
            let mut out = forward.make_output_vec();
            forward
                .process(&mut buf, &mut out)
                .map_err(|e| MetricsError::Fft(e.to_string()))?;
            Ok(out)
        };
        let build = |coefs: &Vec<Vec<f64>>, inputs: usize| {
            coefs
                .par_iter()
                .map(|k| {
                    (0..channels)
                        .map(|c| {
                            (0..inputs)
                                .map(|p| spectrum(k, p, c))
                                .collect::<Result<Vec<_>, MetricsError>>()
                        })
                        .collect::<Result<Vec<_>, MetricsError>>()
                })
                .collect::<Result<Vec<_>, MetricsError>>()
        };
        Ok(Self {
            size,
            taps,
            sources,
            channels,
            all: build(&filters.all, sources * channels)?,
            own: build(&filters.own, channels)?,
            forward,
            inverse,
        })
    }
}

/// One thread's buffers for evaluating windows.
struct WindowWork {
    input: Vec<f64>,
    output: Vec<f64>,
    fwd_scratch: Vec<Complex64>,
    inv_scratch: Vec<Complex64>,
    ref_spec: Vec<Vec<Complex64>>,
    acc: Vec<Complex64>,
    proj_all: Vec<Vec<f64>>,
    proj_own: Vec<Vec<f64>>,
}

impl WindowWork {
    fn new(spectra: &FilterSpectra, signals: usize) -> Self {
        let bins = spectra.size / 2 + 1;
        Self {
            input: spectra.forward.make_input_vec(),
            output: spectra.inverse.make_output_vec(),
            fwd_scratch: spectra.forward.make_scratch_vec(),
            inv_scratch: spectra.inverse.make_scratch_vec(),
            ref_spec: vec![vec![Complex64::default(); bins]; signals],
            acc: vec![Complex64::default(); bins],
            proj_all: vec![Vec::new(); spectra.channels],
            proj_own: vec![Vec::new(); spectra.channels],
        }
    }

    /// `[sdr, isr, sir, sar]` of every stem for the window `start..stop`.
    fn evaluate(
        &mut self,
        references: &[&[Vec<f32>]],
        estimates: &[&[Vec<f32>]],
        spectra: &FilterSpectra,
        start: usize,
        stop: usize,
    ) -> Result<Vec<[f64; 4]>, MetricsError> {
        let (sources, channels) = (spectra.sources, spectra.channels);
        let w = stop - start;
        for (p, spec) in self.ref_spec.iter_mut().enumerate() {
            let x = &references[p / channels][p % channels][start..stop];
            self.input.fill(0.0);
            for (d, &s) in self.input.iter_mut().zip(x) {
                *d = f64::from(s);
            }
            spectra
                .forward
                .process_with_scratch(&mut self.input, spec, &mut self.fwd_scratch)
                .map_err(|e| MetricsError::Fft(e.to_string()))?;
        }
        let scale = 1.0 / spectra.size as f64;
        // museval keeps the full convolution: the window plus the filter's L - 1 tail.
        let full = w + spectra.taps - 1;
        let mut out = Vec::with_capacity(sources);
        for k in 0..sources {
            for c in 0..channels {
                self.project(0..sources * channels, &spectra.all[k][c], spectra)?;
                self.proj_all[c].clear();
                self.proj_all[c].extend(self.output[..full].iter().map(|x| x * scale));
                self.project(
                    k * channels..(k + 1) * channels,
                    &spectra.own[k][c],
                    spectra,
                )?;
                self.proj_own[c].clear();
                self.proj_own[c].extend(self.output[..full].iter().map(|x| x * scale));
            }
            out.push(self.criteria(references[k], estimates[k], start, w));
        }
        Ok(out)
    }

    /// `output = irfft(Σ_i ref_spec[inputs][i] · filters[i])` (unscaled).
    fn project(
        &mut self,
        inputs: std::ops::Range<usize>,
        filters: &[Vec<Complex64>],
        spectra: &FilterSpectra,
    ) -> Result<(), MetricsError> {
        self.acc.fill(Complex64::default());
        for (x, h) in self.ref_spec[inputs].iter().zip(filters) {
            for ((a, x), h) in self.acc.iter_mut().zip(x.iter()).zip(h) {
                *a += x * h;
            }
        }
        self.acc[0].im = 0.0;
        if let Some(last) = self.acc.last_mut() {
            last.im = 0.0;
        }
        spectra
            .inverse
            .process_with_scratch(&mut self.acc, &mut self.output, &mut self.inv_scratch)
            .map_err(|e| MetricsError::Fft(e.to_string()))
    }

    /// museval's `_bss_crit` for one stem and window from the projections in `proj_*`.
    fn criteria(
        &self,
        reference: &[Vec<f32>],
        estimate: &[Vec<f32>],
        start: usize,
        w: usize,
    ) -> [f64; 4] {
        // Sums over channels and the window padded by L - 1 (the projections' full length).
        let mut sums = [0.0f64; 7];
        for (c, (ref_c, est_c)) in reference.iter().zip(estimate).enumerate() {
            let (all, own) = (&self.proj_all[c], &self.proj_own[c]);
            for n in 0..all.len() {
                let (s, e) = if n < w {
                    (f64::from(ref_c[start + n]), f64::from(est_c[start + n]))
                } else {
                    (0.0, 0.0)
                };
                let (pa, po) = (all[n], own[n]);
                sums[0] += s * s;
                sums[1] += (e - s) * (e - s);
                sums[2] += (po - s) * (po - s);
                sums[3] += po * po;
                sums[4] += (pa - po) * (pa - po);
                sums[5] += pa * pa;
                sums[6] += (e - pa) * (e - pa);
            }
        }
        [
            db(sums[0], sums[1]),
            db(sums[0], sums[2]),
            db(sums[3], sums[4]),
            db(sums[5], sums[6]),
        ]
    }
}

/// museval's `_safe_db`: +∞ for a zero denominator.
fn db(num: f64, den: f64) -> f64 {
    if den == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (num / den).log10()
    }
}
