//! What follows every convolution of HT Demucs, in one pass over its output: the bias, an
//! optional GroupNorm (statistics of the biased values), and GELU or GLU, written compactly or
//! added to a residual with its `LayerScale`. The products leave their rows wherever the
//! sliding windows put them ([`RowLayout`]); this pass is also where the padding rows drop out.

use rayon::prelude::*;

use crate::cpu::kernels::{gelu, sigmoid};
use crate::cpu::simd::simd_dispatch;

/// `nn.GroupNorm`'s `eps`.
const EPS: f64 = 1e-5;
/// Values one rayon task of the passes works on (at least one frame).
const TASK_VALUES: usize = 1 << 15;
/// Values one task of the statistics pass works on (at least one frame).
const STATS_TASK_VALUES: usize = 1 << 18;
/// Frames (or blocks of frames) summed position by position in f32 before the sums go to f64.
const F32_FRAMES: usize = 16;

/// Where the rows of a product lie: row `(t, f)` (`width` values) starts at
/// `(t * t_stride + offset + f) * width`; `t x f` rows are meant.
#[derive(Debug, Clone, Copy)]
pub struct RowLayout {
    pub t: usize,
    pub f: usize,
    pub t_stride: usize,
    pub offset: usize,
    pub width: usize,
}

impl RowLayout {
    /// Rows packed back to back.
    pub fn compact(t: usize, f: usize, width: usize) -> Self {
        Self {
            t,
            f,
            t_stride: f,
            offset: 0,
            width,
        }
    }

    /// The rows of frames `t..t + count`: a frame's `f` rows lie back to back, and so do
    /// frames when `count > 1` (see [`Self::frames_per_block`]).
    fn frames<'a>(&self, data: &'a [f32], t: usize, count: usize) -> &'a [f32] {
        let at = (t * self.t_stride + self.offset) * self.width;
        &data[at..at + count * self.f * self.width]
    }

    /// Frames one pass takes at once, about `values` values: several when frames lie back to
    /// back and every frame has the same tables (the waveform branch's frames are single
    /// samples of a few channels), else one.
    fn frames_per_block(&self, per_freq: bool, values: usize) -> usize {
        if self.t_stride == self.f && !per_freq {
            (values / (self.f * self.width).max(1)).clamp(1, self.t.max(1))
        } else {
            1
        }
    }
}

/// `per_set` (`[sets][width]`) laid out per position of `frames` frames: row `f` takes set
/// `f` (one set per frequency) or set 0, so a block's epilogue is one pass over contiguous
/// values.
fn per_position(
    per_set: &[f32],
    f: usize,
    width: usize,
    per_freq: bool,
    frames: usize,
) -> Vec<f32> {
    let frame: Vec<f32> = (0..f)
        .flat_map(|fi| {
            let set = if per_freq { fi } else { 0 };
            per_set[set * width..(set + 1) * width].iter().copied()
        })
        .collect();
    frame.repeat(frames)
}

/// `nn.GroupNorm`'s affine parameters and group count.
#[derive(Debug, Clone)]
pub struct GroupNorm {
    pub groups: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// Over what a GroupNorm takes its statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stats {
    /// Every row of the item (a layer's `[c, f, t]`, or a sequence).
    Whole,
    /// Each frequency on its own (a DConv of the spectrogram branch, which folds frequencies
    /// into the batch).
    PerFreq,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Identity,
    Gelu,
    /// `a * sigmoid(g)` of the row's halves `[a | g]`: the output is half as wide.
    Glu,
}

/// Where the result goes: compact rows `[t][f][out width]`.
pub enum Sink<'a> {
    Write(&'a mut [f32]),
    /// `dst += scale * result` (a DConv branch into its residual).
    AddScaled(&'a mut [f32], &'a [f32]),
}

/// The epilogue of `src`'s rows (see the module docs).
pub fn finish(
    src: &[f32],
    layout: RowLayout,
    bias: &[f32],
    norm: Option<(&GroupNorm, Stats)>,
    act: Act,
    sink: Sink<'_>,
) {
    finish_part(src, layout, layout, bias, norm, act, sink);
}

/// [`finish`] of the rows `layout` names, with GroupNorm statistics over the rows of
/// `stats_layout`: a transposed convolution is normalised before its padding is trimmed.
pub fn finish_part(
    src: &[f32],
    layout: RowLayout,
    stats_layout: RowLayout,
    bias: &[f32],
    norm: Option<(&GroupNorm, Stats)>,
    act: Act,
    sink: Sink<'_>,
) {
    let w = layout.width;
    assert_eq!(bias.len(), w, "bias of {} for rows of {w}", bias.len());
    // Per statistics set (a frequency, or the item) an affine map per channel: the norm and the
    // bias folded into `x * scale + shift`, then laid out per position of a frame.
    let per_freq = matches!(norm, Some((_, Stats::PerFreq)));
    let (scale, shift) = match norm {
        None => (vec![1.0f32; w], bias.to_vec()),
        Some((gn, stats)) => affine(src, stats_layout, bias, gn, stats),
    };
    let out_w = if act == Act::Glu { w / 2 } else { w };
    let per_t = layout.f * out_w;
    let t_per_task = (TASK_VALUES / per_t.max(1)).max(1);
    let block = layout
        .frames_per_block(per_freq, TASK_VALUES)
        .min(t_per_task);
    let scale = per_position(&scale, layout.f, w, per_freq, block);
    let shift = per_position(&shift, layout.f, w, per_freq, block);
    let run = |t0: usize, out: &mut [f32], residual: Option<&[f32]>| {
        let frames = out.len() / per_t;
        for dt in (0..frames).step_by(block) {
            let n = block.min(frames - dt);
            let src = layout.frames(src, t0 + dt, n);
            let out = &mut out[dt * per_t..(dt + n) * per_t];
            apply_frame_simd(src, &scale, &shift, act, w, out, residual);
        }
    };
    match sink {
        Sink::Write(dst) => {
            assert_eq!(dst.len(), layout.t * per_t, "epilogue output size");
            dst.par_chunks_mut(t_per_task * per_t)
                .enumerate()
                .for_each(|(i, out)| run(i * t_per_task, out, None));
        }
        Sink::AddScaled(dst, layer_scale) => {
            assert_eq!(dst.len(), layout.t * per_t, "epilogue output size");
            let layer_scale = per_position(layer_scale, layout.f, out_w, false, block);
            dst.par_chunks_mut(t_per_task * per_t)
                .enumerate()
                .for_each(|(i, out)| run(i * t_per_task, out, Some(&layer_scale)));
        }
    }
}

/// GroupNorm statistics of `src + bias` as per-set `(scale, shift)` tables `[sets][width]`.
fn affine(
    src: &[f32],
    layout: RowLayout,
    bias: &[f32],
    gn: &GroupNorm,
    stats: Stats,
) -> (Vec<f32>, Vec<f32>) {
    let (w, g) = (layout.width, gn.groups);
    let per_group = w / g;
    let sets = if stats == Stats::PerFreq { layout.f } else { 1 };
    let count = (layout.t * per_group * if sets == 1 { layout.f } else { 1 }) as f64;
    // Two passes, as the variance of values far from zero must not come from E[x^2] - E[x]^2:
    // the means, then the moments about them.
    let zero = vec![0.0f32; sets * g];
    let first = moments(src, layout, bias, g, sets, &zero);
    let means: Vec<f32> = first
        .chunks_exact(2)
        .map(|m| (m[0] / count) as f32)
        .collect();
    let second = moments(src, layout, bias, g, sets, &means);
    let stat = |i: usize| {
        let d = second[2 * i] / count;
        let mean = f64::from(means[i]) + d;
        let var = (second[2 * i + 1] / count - d * d).max(0.0);
        (mean, var)
    };
    let mut scale = vec![0.0f32; sets * w];
    let mut shift = vec![0.0f32; sets * w];
    for set in 0..sets {
        for gi in 0..g {
            let (mean, var) = stat(set * g + gi);
            let inv = 1.0 / (var + EPS).sqrt();
            for c in gi * per_group..(gi + 1) * per_group {
                let a = inv * f64::from(gn.weight[c]);
                scale[set * w + c] = a as f32;
                shift[set * w + c] =
                    ((f64::from(bias[c]) - mean) * a + f64::from(gn.bias[c])) as f32;
            }
        }
    }
    (scale, shift)
}

/// Per (set, group): the sum of `src + bias - shift` and of its squares, in f64 over runs of
/// at most [`F32_FRAMES`] frames summed position by position in f32.
fn moments(
    src: &[f32],
    layout: RowLayout,
    bias: &[f32],
    g: usize,
    sets: usize,
    shift: &[f32],
) -> Vec<f64> {
    let (f, w) = (layout.f, layout.width);
    let per_group = w / g;
    let per_freq = sets > 1;
    let t_per_task = (STATS_TASK_VALUES / (f * w).max(1)).max(1);
    let block = layout.frames_per_block(per_freq, 4096).min(t_per_task);
    // `bias - shift` per position of a block of frames.
    let offsets: Vec<f32> = (0..f * w)
        .map(|i| {
            let (fi, c) = (i / w, i % w);
            let set = if per_freq { fi } else { 0 };
            bias[c] - shift[set * g + c / per_group]
        })
        .collect::<Vec<f32>>()
        .repeat(block);
    (0..layout.t.div_ceil(t_per_task))
        .into_par_iter()
        .map(|task| {
            let mut acc = vec![0.0f64; sets * g * 2];
            let (mut s, mut ss) = (vec![0.0f32; offsets.len()], vec![0.0f32; offsets.len()]);
            let t1 = ((task + 1) * t_per_task).min(layout.t);
            let mut t = task * t_per_task;
            while t < t1 {
                let run_end = (t + F32_FRAMES * block).min(t1);
                s.fill(0.0);
                ss.fill(0.0);
                for ti in (t..run_end).step_by(block) {
                    let frames = layout.frames(src, ti, block.min(run_end - ti));
                    accumulate_simd(frames, &offsets, &mut s, &mut ss);
                }
                for (i, (s, ss)) in s
                    .chunks_exact(per_group)
                    .zip(ss.chunks_exact(per_group))
                    .enumerate()
                {
                    let (fi, gi) = (i / g, i % g);
                    let k = if per_freq { fi * g + gi } else { gi };
                    acc[2 * k] += s.iter().map(|&v| f64::from(v)).sum::<f64>();
                    acc[2 * k + 1] += ss.iter().map(|&v| f64::from(v)).sum::<f64>();
                }
                t = run_end;
            }
            acc
        })
        .reduce(
            || vec![0.0f64; sets * g * 2],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            },
        )
}

/// `s += frame + offsets`, `ss += (frame + offsets)^2`, position by position.
#[inline(always)]
fn accumulate(frame: &[f32], offsets: &[f32], s: &mut [f32], ss: &mut [f32]) {
    let n = frame.len();
    let (offsets, s, ss) = (&offsets[..n], &mut s[..n], &mut ss[..n]);
    for i in 0..n {
        let v = frame[i] + offsets[i];
        s[i] += v;
        ss[i] += v * v;
    }
}

simd_dispatch!(fn accumulate_simd(frame: &[f32], offsets: &[f32], s: &mut [f32], ss: &mut [f32]) => accumulate);

/// The epilogue of a frame, or of a block of frames: `frame` holds rows of `w` values back to
/// back; `scale`, `shift` (and `residual`, the layer scale) are per position ([`per_position`]).
#[inline(always)]
fn apply_frame(
    frame: &[f32],
    scale: &[f32],
    shift: &[f32],
    act: Act,
    w: usize,
    out: &mut [f32],
    residual: Option<&[f32]>,
) {
    let n = frame.len();
    let (scale, shift) = (&scale[..n], &shift[..n]);
    match act {
        Act::Identity | Act::Gelu => {
            let out = &mut out[..n];
            // Written out per case so that each loop vectorises.
            match (act == Act::Gelu, residual) {
                (true, None) => {
                    for i in 0..n {
                        out[i] = gelu(frame[i] * scale[i] + shift[i]);
                    }
                }
                (false, None) => {
                    for i in 0..n {
                        out[i] = frame[i] * scale[i] + shift[i];
                    }
                }
                (true, Some(ls)) => {
                    let ls = &ls[..n];
                    for i in 0..n {
                        out[i] += ls[i] * gelu(frame[i] * scale[i] + shift[i]);
                    }
                }
                (false, Some(ls)) => {
                    let ls = &ls[..n];
                    for i in 0..n {
                        out[i] += ls[i] * (frame[i] * scale[i] + shift[i]);
                    }
                }
            }
        }
        Act::Glu => {
            let h = w / 2;
            for (r, o) in out[..n / 2].chunks_exact_mut(h).enumerate() {
                let at = r * w;
                let (ra, rg) = frame[at..at + w].split_at(h);
                let (sa, sg) = scale[at..at + w].split_at(h);
                let (ba, bg) = shift[at..at + w].split_at(h);
                match residual {
                    Some(ls) => {
                        let ls = &ls[r * h..(r + 1) * h];
                        for i in 0..h {
                            let a = ra[i] * sa[i] + ba[i];
                            let g = rg[i] * sg[i] + bg[i];
                            o[i] += ls[i] * (a * sigmoid(g));
                        }
                    }
                    None => {
                        for i in 0..h {
                            let a = ra[i] * sa[i] + ba[i];
                            let g = rg[i] * sg[i] + bg[i];
                            o[i] = a * sigmoid(g);
                        }
                    }
                }
            }
        }
    }
}

simd_dispatch!(fn apply_frame_simd(
    frame: &[f32],
    scale: &[f32],
    shift: &[f32],
    act: Act,
    w: usize,
    out: &mut [f32],
    residual: Option<&[f32]>,
) => apply_frame);

#[cfg(test)]
mod tests {
    use super::*;

    /// GroupNorm + GELU / GLU of strided rows against the formulas, in f64.
    #[test]
    fn norms_and_gates_follow_torch_definitions() {
        let (t, f, w, groups) = (5, 3, 8, 2);
        // Rows of a product with one padding row per t and an offset of one row.
        let layout = RowLayout {
            t,
            f,
            t_stride: f + 1,
            offset: 1,
            width: w,
        };
        let src: Vec<f32> = (0..(t * (f + 1) + 1) * w)
            .map(|i| ((i * 29) % 23) as f32 * 0.25 - 2.5)
            .collect();
        let bias: Vec<f32> = (0..w).map(|i| 0.1 * i as f32).collect();
        let gn = GroupNorm {
            groups,
            weight: (0..w).map(|i| 1.0 + 0.05 * i as f32).collect(),
            bias: (0..w).map(|i| -0.2 + 0.03 * i as f32).collect(),
        };
        let value = |ti: usize, fi: usize, c: usize| {
            src[(ti * (f + 1) + 1 + fi) * w + c] as f64 + bias[c] as f64
        };
        let erf_gelu =
            |x: f64| 0.5 * x * (1.0 + crate::cpu::kernels::tests::erf_f64(x / 2f64.sqrt()));
        for stats in [Stats::Whole, Stats::PerFreq] {
            // Reference statistics per (set, group).
            let norm = |ti: usize, fi: usize, c: usize| {
                let g = c / (w / groups);
                let cs = g * (w / groups)..(g + 1) * (w / groups);
                let fs: Vec<usize> = match stats {
                    Stats::Whole => (0..f).collect(),
                    Stats::PerFreq => vec![fi],
                };
                let mut vals = Vec::new();
                for tt in 0..t {
                    for &ff in &fs {
                        for cc in cs.clone() {
                            vals.push(value(tt, ff, cc));
                        }
                    }
                }
                let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
                (value(ti, fi, c) - mean) / (var + 1e-5).sqrt() * gn.weight[c] as f64
                    + gn.bias[c] as f64
            };
            let mut out = vec![0.0f32; t * f * w];
            finish(
                &src,
                layout,
                &bias,
                Some((&gn, stats)),
                Act::Gelu,
                Sink::Write(&mut out),
            );
            let mut glu = vec![1.0f32; t * f * w / 2];
            let ls: Vec<f32> = (0..w / 2).map(|i| 0.5 + i as f32).collect();
            finish(
                &src,
                layout,
                &bias,
                Some((&gn, stats)),
                Act::Glu,
                Sink::AddScaled(&mut glu, &ls),
            );
            for ti in 0..t {
                for fi in 0..f {
                    for c in 0..w {
                        let want = erf_gelu(norm(ti, fi, c));
                        let got = out[(ti * f + fi) * w + c] as f64;
                        assert!((got - want).abs() < 1e-5, "{stats:?} gelu {ti} {fi} {c}");
                    }
                    for c in 0..w / 2 {
                        let gate = 1.0 / (1.0 + (-norm(ti, fi, c + w / 2)).exp());
                        let want = 1.0 + ls[c] as f64 * norm(ti, fi, c) * gate;
                        let got = glu[(ti * f + fi) * w / 2 + c] as f64;
                        assert!((got - want).abs() < 1e-5, "{stats:?} glu {ti} {fi} {c}");
                    }
                }
            }
        }
        // Without a norm: the bias only.
        let mut plain = vec![0.0f32; t * f * w];
        finish(
            &src,
            layout,
            &bias,
            None,
            Act::Identity,
            Sink::Write(&mut plain),
        );
        assert!((plain[(2 * f + 1) * w + 3] as f64 - value(2, 1, 3)).abs() < 1e-6);
    }
}
