//! HT Demucs' convolutions on channels-last planes `[t][f][c]` as matrix products over
//! windows that overlap in memory, so no im2col copy is made: in a zero-padded `[.., f, c]`
//! buffer, the `k` positions a window covers are `k * c` consecutive values, and the windows of
//! a strided convolution are rows `stride * c` apart. The spectrogram branch convolves along `f`
//! (`t` frames side by side); the waveform branch is one plane `[1][len][c]`.
//!
//! Weights are stored as `nn.Linear`-like `[out, window]` matrices ([`Weight`]) whose columns
//! follow the window's memory order `(position, channel)`.

use rayon::prelude::*;

use super::epilogue::RowLayout;
use crate::cpu::gemm::{Mat, MatMut};
use crate::cpu::{Precision, Weight};

/// A `[out, in, k]` kernel (PyTorch's layout) as `[out][k][in]` (window order).
fn window_major(w: &[f32], cout: usize, cin: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; cout * k * cin];
    for co in 0..cout {
        for ci in 0..cin {
            for j in 0..k {
                out[(co * k + j) * cin + ci] = w[(co * cin + ci) * k + j];
            }
        }
    }
    out
}

/// Copies `x: [t][f][c]` into a zeroed `[t + 2 pt][fp][c]` at `(pt, left)`.
fn padded(x: &[f32], t: usize, f: usize, c: usize, pt: usize, left: usize, fp: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; (t + 2 * pt) * fp * c];
    out[pt * fp * c..(pt + t) * fp * c]
        .par_chunks_mut(fp * c)
        .zip(x.par_chunks(f * c))
        .for_each(|(o, x)| o[left * c..(left + f) * c].copy_from_slice(x));
    out
}

/// A product's raw rows and where they lie.
pub struct Rows {
    pub data: Vec<f32>,
    pub layout: RowLayout,
}

/// `Conv1d` / `Conv2d` with a `[k, 1]` kernel, along `f`: kernel `k`, stride `s`, zero padding
/// `pad` on both sides.
#[derive(Debug, Clone)]
pub struct AxisConv {
    weight: Weight,
    pub bias: Vec<f32>,
    k: usize,
    s: usize,
    pad: usize,
    cin: usize,
}

impl AxisConv {
    /// From PyTorch's `[out, in, k]` weight.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        w: &[f32],
        bias: Vec<f32>,
        cin: usize,
        k: usize,
        s: usize,
        pad: usize,
        precision: Precision,
    ) -> Self {
        let cout = bias.len();
        Self {
            weight: Weight::new(window_major(w, cout, cin, k), cout, k * cin, precision),
            bias,
            k,
            s,
            pad,
            cin,
        }
    }

    pub fn cout(&self) -> usize {
        self.bias.len()
    }

    /// Convolves every `t` of `x: [t][f][cin]` along `f`, after `extra` more zeros on the right
    /// (the waveform encoder's padding to a multiple of the stride).
    pub fn forward(&self, x: &[f32], t: usize, f: usize, extra: usize) -> Rows {
        let (c, k, s) = (self.cin, self.k, self.s);
        let span = f + 2 * self.pad + extra;
        assert!(span >= k, "a convolution of {k} over {span} positions");
        let f_out = (span - k) / s + 1;
        let cout = self.cout();
        if f_out == 1 || t == 1 {
            // One window row per t (or a single plane): rows `span * c` apart, or `s * c`.
            let xp = padded(x, t, f, c, 0, self.pad, span);
            let (rows, stride) = if t == 1 {
                (f_out, s * c)
            } else {
                (t, span * c)
            };
            let mut data = vec![0.0f32; rows * cout];
            self.weight.matmul_view(
                Mat::new(&xp, rows, k * c, stride, 1),
                MatMut::row_major(&mut data, rows, cout),
                false,
            );
            let layout = RowLayout::compact(t, f_out, cout);
            return Rows { data, layout };
        }
        // Every t padded to a multiple of the stride: window rows are `s * c` apart throughout,
        // `fp / s` per t, of which the first `f_out` are real.
        let fp = span.next_multiple_of(s);
        let per_t = fp / s;
        let xp = padded(x, t, f, c, 0, self.pad, fp);
        let rows = (t - 1) * per_t + f_out;
        let mut data = vec![0.0f32; rows * cout];
        self.weight.matmul_view(
            Mat::new(&xp, rows, k * c, s * c, 1),
            MatMut::row_major(&mut data, rows, cout),
            false,
        );
        let layout = RowLayout {
            t,
            f: f_out,
            t_stride: per_t,
            offset: 0,
            width: cout,
        };
        Rows { data, layout }
    }
}

/// `Conv2d(cin, cout, k, padding k / 2)` over `(f, t)`: the decoder's context rewrite.
#[derive(Debug, Clone)]
pub struct SquareConv {
    /// One `[out][df][in]` matrix per time offset.
    taps: Vec<Weight>,
    pub bias: Vec<f32>,
    cin: usize,
}

impl SquareConv {
    /// From PyTorch's `[out, in, k_f, k_t]` weight.
    pub fn new(w: &[f32], bias: Vec<f32>, cin: usize, k: usize, precision: Precision) -> Self {
        let cout = bias.len();
        let taps = (0..k)
            .map(|dt| {
                let mut m = vec![0.0f32; cout * k * cin];
                for co in 0..cout {
                    for ci in 0..cin {
                        for df in 0..k {
                            m[(co * k + df) * cin + ci] = w[((co * cin + ci) * k + df) * k + dt];
                        }
                    }
                }
                Weight::new(m, cout, k * cin, precision)
            })
            .collect();
        Self { taps, bias, cin }
    }

    pub fn forward(&self, x: &[f32], t: usize, f: usize) -> Rows {
        let (c, k) = (self.cin, self.taps.len());
        let p = k / 2;
        let fp = f + 2 * p;
        let xp = padded(x, t, f, c, p, p, fp);
        let cout = self.bias.len();
        // Windows start every `c` values; the `2p` rows between two frames are padding.
        let rows = (t - 1) * fp + f;
        let mut data = vec![0.0f32; rows * cout];
        for (dt, w) in self.taps.iter().enumerate() {
            w.matmul_view(
                Mat::new(&xp[dt * fp * c..], rows, k * c, c, 1),
                MatMut::row_major(&mut data, rows, cout),
                dt > 0,
            );
        }
        let layout = RowLayout {
            t,
            f,
            t_stride: fp,
            offset: 0,
            width: cout,
        };
        Rows { data, layout }
    }
}

/// `Conv1d(c, hidden, 3, dilation d, padding d)` along `t` of `[t][f][c]`: the DConv branch's
/// first convolution (in the spectrogram branch every frequency is its own sequence).
#[derive(Debug, Clone)]
pub struct DilatedConv {
    /// `[hidden, c]` for the offsets `-d`, `0`, `+d`.
    taps: [Weight; 3],
    pub bias: Vec<f32>,
    dilation: usize,
}

impl DilatedConv {
    pub fn new(w: &[f32], bias: Vec<f32>, cin: usize, dilation: usize, p: Precision) -> Self {
        let cout = bias.len();
        let tap = |j: usize| {
            let m: Vec<f32> = (0..cout * cin)
                .map(|i| w[((i / cin) * cin + i % cin) * 3 + j])
                .collect();
            Weight::new(m, cout, cin, p)
        };
        Self {
            taps: [tap(0), tap(1), tap(2)],
            bias,
            dilation,
        }
    }

    pub fn forward(&self, x: &[f32], t: usize, f: usize) -> Vec<f32> {
        let cin = self.taps[1].in_dim();
        let cout = self.bias.len();
        let rows = t * f;
        let mut out = vec![0.0f32; rows * cout];
        self.taps[1].matmul_view(
            Mat::row_major(x, rows, cin),
            MatMut::row_major(&mut out, rows, cout),
            false,
        );
        // The outer taps see the sequence shifted by `d` frames; the zero padding is the rows
        // they leave out.
        let shift = self.dilation * f;
        if shift < rows {
            let n = rows - shift;
            self.taps[0].matmul_view(
                Mat::row_major(&x[..n * cin], n, cin),
                MatMut::row_major(&mut out[shift * cout..], n, cout),
                true,
            );
            self.taps[2].matmul_view(
                Mat::row_major(&x[shift * cin..], n, cin),
                MatMut::row_major(&mut out[..n * cout], n, cout),
                true,
            );
        }
        out
    }
}

/// `ConvTranspose1d` / `ConvTranspose2d` with a `[k, 1]` kernel, along `f`, stride `s`: split
/// into `ceil(k / s)` phases; phase `q` of input row `f` fills output rows
/// `(f + q) * s .. (f + q + 1) * s`, so each phase is one product whose output rows are
/// `s * cout` values long.
#[derive(Debug, Clone)]
pub struct TransposedConv {
    /// `[s * cout, cin]` per phase (taps past `k` are zero).
    phases: Vec<Weight>,
    pub bias: Vec<f32>,
    s: usize,
    cin: usize,
}

impl TransposedConv {
    /// From the weight as `[in][out][taps]` with `taps = phases * s` (zero past `k`).
    pub fn new(
        w: &[f32],
        bias: Vec<f32>,
        cin: usize,
        taps: usize,
        s: usize,
        precision: Precision,
    ) -> Self {
        let cout = bias.len();
        let phases = (0..taps / s)
            .map(|q| {
                let mut m = vec![0.0f32; s * cout * cin];
                for r in 0..s {
                    for co in 0..cout {
                        for ci in 0..cin {
                            m[(r * cout + co) * cin + ci] = w[(ci * cout + co) * taps + q * s + r];
                        }
                    }
                }
                Weight::new(m, s * cout, cin, precision)
            })
            .collect();
        Self {
            phases,
            bias,
            s,
            cin,
        }
    }

    /// `x: [t][f][cin]` to rows of `cout` values, `(f + phases - 1) * s` per `t` (the full
    /// output before any trimming; the layout's `offset` and `f` are left to the caller).
    pub fn forward(&self, x: &[f32], t: usize, f: usize) -> Rows {
        let (c, s, q) = (self.cin, self.s, self.phases.len());
        let cout = self.bias.len();
        let per_t = f + q - 1;
        let wide = s * cout;
        let mut data = vec![0.0f32; t * per_t * wide];
        if t == 1 || f == 1 {
            // Phases land in rows of their own t: no padding rows needed.
            let (rows, stride) = if t == 1 { (f, wide) } else { (t, per_t * wide) };
            for (i, w) in self.phases.iter().enumerate() {
                w.matmul_view(
                    Mat::row_major(x, rows, c),
                    MatMut::new(&mut data[i * wide..], rows, wide, stride),
                    true,
                );
            }
        } else {
            // `q - 1` zero rows after each t keep a phase's spill out of the next t.
            let xp = padded(x, t, f, c, 0, 0, per_t);
            let rows = t * per_t;
            for (i, w) in self.phases.iter().enumerate() {
                let n = rows - i;
                w.matmul_view(
                    Mat::row_major(&xp[..n * c], n, c),
                    MatMut::row_major(&mut data[i * wide..], n, wide),
                    true,
                );
            }
        }
        let layout = RowLayout {
            t,
            f: per_t * s,
            t_stride: per_t * s,
            offset: 0,
            width: cout,
        };
        Rows { data, layout }
    }
}
