//! HT Demucs' encoder and decoder layers (`HEncLayer`, `HDecLayer`), their DConv residual
//! branches and context rewrites, on channels-last planes, built from the reference layers'
//! weights.

use candle_core::{Result as CResult, Tensor};

use super::conv::{AxisConv, DilatedConv, Rows, SquareConv, TransposedConv};
use super::epilogue::{finish, finish_part, Act, GroupNorm, RowLayout, Sink, Stats};
use crate::cpu::gemm::{Mat, MatMut};
use crate::cpu::{Precision, Weight};
use crate::model::htdemucs::conv::{Axis, Conv, ConvTranspose};
use crate::model::htdemucs::dconv::DConv as RefDConv;
use crate::model::htdemucs::decoder_layer::DecoderLayer as RefDecoder;
use crate::model::htdemucs::encoder_layer::EncoderLayer as RefEncoder;
use crate::model::htdemucs::group_norm::GroupNorm as RefGroupNorm;
use crate::model::htdemucs::rewrite::Rewrite as RefRewrite;

/// One item's activations, channels last: `[t][f][c]`. The spectrogram branch is
/// `[frames][freqs][c]`, the waveform branch `[samples][1][c]`.
#[derive(Debug, Clone)]
pub struct Planes {
    pub data: Vec<f32>,
    pub t: usize,
    pub f: usize,
    pub c: usize,
}

impl Planes {
    /// The axes a convolution slides along `f` over: the frequencies of each frame, or the
    /// whole waveform as one plane.
    fn conv_view(&self, freq: bool) -> (usize, usize) {
        if freq {
            (self.t, self.f)
        } else {
            (1, self.t * self.f)
        }
    }

    /// Planes from an epilogue's compact output of a convolution seen as [`Self::conv_view`].
    fn from_conv(data: Vec<f32>, freq: bool, t: usize, f: usize, c: usize) -> Self {
        if freq {
            Self { data, t, f, c }
        } else {
            Self {
                data,
                t: t * f,
                f: 1,
                c,
            }
        }
    }
}

pub fn values(t: &Tensor) -> CResult<Vec<f32>> {
    t.flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1()
}

fn group_norm(n: &RefGroupNorm) -> CResult<GroupNorm> {
    Ok(GroupNorm {
        groups: n.groups,
        weight: values(&n.weight)?,
        bias: values(&n.bias)?,
    })
}

fn maybe_norm(n: &Option<RefGroupNorm>) -> CResult<Option<GroupNorm>> {
    n.as_ref().map(group_norm).transpose()
}

/// The epilogue into fresh compact rows.
fn finished(rows: &Rows, bias: &[f32], norm: Option<&GroupNorm>, act: Act) -> Vec<f32> {
    let l = rows.layout;
    let width = if act == Act::Glu {
        l.width / 2
    } else {
        l.width
    };
    let mut out = vec![0.0f32; l.t * l.f * width];
    let norm = norm.map(|n| (n, Stats::Whole));
    finish(&rows.data, l, bias, norm, act, Sink::Write(&mut out));
    out
}

/// A `1x1` convolution: a product over contiguous rows.
#[derive(Debug, Clone)]
pub struct Pointwise {
    weight: Weight,
    pub bias: Vec<f32>,
}

impl Pointwise {
    pub fn new(conv: &Conv, precision: Precision) -> CResult<Self> {
        let d = conv.weight.dims();
        let (cout, cin) = (d[0], d[1]);
        Ok(Self {
            weight: Weight::new(values(&conv.weight)?, cout, cin, precision),
            bias: values(&conv.bias)?,
        })
    }

    /// The product of `rows` rows of `x`, without the bias.
    pub fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let (cin, cout) = (self.weight.in_dim(), self.weight.out_dim());
        let mut out = vec![0.0f32; rows * cout];
        self.weight.matmul_view(
            Mat::row_major(x, rows, cin),
            MatMut::row_major(&mut out, rows, cout),
            false,
        );
        out
    }
}

fn axis_conv(conv: &Conv, precision: Precision) -> CResult<AxisConv> {
    let d = conv.weight.dims();
    Ok(AxisConv::new(
        &values(&conv.weight)?,
        values(&conv.bias)?,
        d[1],
        d[2],
        conv.stride,
        conv.padding,
        precision,
    ))
}

/// The convolution of a rewrite: `1x1`, `k x k` over `(f, t)`, or `k` along the waveform.
#[derive(Debug, Clone)]
enum ContextConv {
    Pointwise(Pointwise),
    Square(SquareConv),
    Axis(AxisConv),
}

/// Convolution to twice the channels, GroupNorm (from `norm_starts`), GLU.
#[derive(Debug, Clone)]
struct Rewrite {
    conv: ContextConv,
    norm: Option<GroupNorm>,
}

impl Rewrite {
    fn new(r: &RefRewrite, precision: Precision) -> CResult<Self> {
        let d = r.conv.weight.dims().to_vec();
        let conv = match r.conv.axis {
            _ if d.iter().skip(2).all(|&k| k == 1) => {
                ContextConv::Pointwise(Pointwise::new(&r.conv, precision)?)
            }
            Axis::Square => ContextConv::Square(SquareConv::new(
                &values(&r.conv.weight)?,
                values(&r.conv.bias)?,
                d[1],
                d[2],
                precision,
            )),
            Axis::Time | Axis::Freq => ContextConv::Axis(axis_conv(&r.conv, precision)?),
        };
        Ok(Self {
            conv,
            norm: maybe_norm(&r.norm)?,
        })
    }

    fn forward(&self, x: &Planes, freq: bool) -> Planes {
        let (rows, bias) = match &self.conv {
            ContextConv::Pointwise(p) => {
                let n = x.t * x.f;
                let layout = RowLayout::compact(x.t, x.f, p.bias.len());
                let data = p.forward(&x.data, n);
                (Rows { data, layout }, &p.bias)
            }
            ContextConv::Square(s) => (s.forward(&x.data, x.t, x.f), &s.bias),
            ContextConv::Axis(a) => {
                let (t, f) = x.conv_view(freq);
                (a.forward(&x.data, t, f, 0), &a.bias)
            }
        };
        let c = rows.layout.width / 2;
        let data = finished(&rows, bias, self.norm.as_ref(), Act::Glu);
        match &self.conv {
            ContextConv::Axis(_) => Planes::from_conv(data, freq, rows.layout.t, rows.layout.f, c),
            _ => Planes {
                data,
                t: x.t,
                f: x.f,
                c,
            },
        }
    }
}

#[derive(Debug, Clone)]
struct Branch {
    conv: DilatedConv,
    norm: GroupNorm,
    project: Pointwise,
    norm_out: GroupNorm,
    scale: Vec<f32>,
}

/// Residual branches of dilated convolutions along `t` (each frequency its own sequence).
#[derive(Debug, Clone)]
struct DConv {
    branches: Vec<Branch>,
}

impl DConv {
    fn new(d: &RefDConv, precision: Precision) -> CResult<Self> {
        let branches = d
            .branches
            .iter()
            .map(|b| {
                let dims = b.conv.weight.dims();
                Ok(Branch {
                    conv: DilatedConv::new(
                        &values(&b.conv.weight)?,
                        values(&b.conv.bias)?,
                        dims[1],
                        b.conv.dilation,
                        precision,
                    ),
                    norm: group_norm(&b.norm)?,
                    project: Pointwise::new(&b.project, precision)?,
                    norm_out: group_norm(&b.norm_out)?,
                    scale: values(&b.scale)?,
                })
            })
            .collect::<CResult<_>>()?;
        Ok(Self { branches })
    }

    /// `x = x + branch(x)` for every branch, in place.
    fn forward(&self, x: &mut Planes) {
        let (t, f) = (x.t, x.f);
        for b in &self.branches {
            let hidden = b.conv.bias.len();
            let h = b.conv.forward(&x.data, t, f);
            let mut g = vec![0.0f32; h.len()];
            let layout = RowLayout::compact(t, f, hidden);
            let norm = Some((&b.norm, Stats::PerFreq));
            finish(
                &h,
                layout,
                &b.conv.bias,
                norm,
                Act::Gelu,
                Sink::Write(&mut g),
            );
            let p = b.project.forward(&g, t * f);
            let layout = RowLayout::compact(t, f, 2 * x.c);
            let norm = Some((&b.norm_out, Stats::PerFreq));
            let sink = Sink::AddScaled(&mut x.data, &b.scale);
            finish(&p, layout, &b.project.bias, norm, Act::Glu, sink);
        }
    }
}

#[derive(Debug, Clone)]
struct EncoderBody {
    norm1: Option<GroupNorm>,
    dconv: Option<DConv>,
    rewrite: Option<Rewrite>,
}

/// `HEncLayer`: strided convolution, GroupNorm + GELU, DConv, rewrite + GLU.
#[derive(Debug, Clone)]
pub struct EncoderLayer {
    freq: bool,
    stride: usize,
    conv: AxisConv,
    body: Option<EncoderBody>,
}

impl EncoderLayer {
    pub fn new(r: &RefEncoder, precision: Precision) -> CResult<Self> {
        let body = r
            .body
            .as_ref()
            .map(|b| -> CResult<_> {
                Ok(EncoderBody {
                    norm1: maybe_norm(&b.norm1)?,
                    dconv: b
                        .dconv
                        .as_ref()
                        .map(|d| DConv::new(d, precision))
                        .transpose()?,
                    rewrite: b
                        .rewrite
                        .as_ref()
                        .map(|w| Rewrite::new(w, precision))
                        .transpose()?,
                })
            })
            .transpose()?;
        Ok(Self {
            freq: r.freq,
            stride: r.stride,
            conv: axis_conv(&r.conv, precision)?,
            body,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.body.is_none()
    }

    /// `inject`: the waveform branch's output `[t][1][c]`, added to every frequency after the
    /// convolution where the branches merge.
    pub fn forward(&self, x: &Planes, inject: Option<&Planes>) -> Planes {
        let (t, f) = x.conv_view(self.freq);
        // The waveform convolution sees a length padded up to a multiple of its stride.
        let extra = if self.freq {
            0
        } else {
            (self.stride - f % self.stride) % self.stride
        };
        let mut rows = self.conv.forward(&x.data, t, f, extra);
        let l = rows.layout;
        let cout = self.conv.cout();
        let Some(body) = &self.body else {
            let data = finished(&rows, &self.conv.bias, None, Act::Identity);
            return Planes::from_conv(data, self.freq, l.t, l.f, cout);
        };
        if let Some(inject) = inject {
            for ti in 0..l.t {
                let add = &inject.data[ti * cout..(ti + 1) * cout];
                for fi in 0..l.f {
                    let at = (ti * l.t_stride + l.offset + fi) * cout;
                    rows.data[at..at + cout]
                        .iter_mut()
                        .zip(add)
                        .for_each(|(v, a)| *v += a);
                }
            }
        }
        let data = finished(&rows, &self.conv.bias, body.norm1.as_ref(), Act::Gelu);
        let mut y = Planes::from_conv(data, self.freq, l.t, l.f, cout);
        if let Some(dconv) = &body.dconv {
            dconv.forward(&mut y);
        }
        match &body.rewrite {
            Some(rewrite) => rewrite.forward(&y, self.freq),
            None => y,
        }
    }
}

#[derive(Debug, Clone)]
struct DecoderBody {
    rewrite: Option<Rewrite>,
    dconv: Option<DConv>,
}

/// `HDecLayer`: skip added, rewrite + GLU, DConv, transposed convolution (trimmed), GroupNorm,
/// GELU but for the last layer.
#[derive(Debug, Clone)]
pub struct DecoderLayer {
    freq: bool,
    pad: usize,
    last: bool,
    kernel: usize,
    stride: usize,
    conv_tr: TransposedConv,
    norm2: Option<GroupNorm>,
    body: Option<DecoderBody>,
}

impl DecoderLayer {
    pub fn new(r: &RefDecoder, precision: Precision) -> CResult<Self> {
        let body = r
            .body
            .as_ref()
            .map(|b| -> CResult<_> {
                Ok(DecoderBody {
                    rewrite: b
                        .rewrite
                        .as_ref()
                        .map(|w| Rewrite::new(w, precision))
                        .transpose()?,
                    dconv: b
                        .dconv
                        .as_ref()
                        .map(|d| DConv::new(d, precision))
                        .transpose()?,
                })
            })
            .transpose()?;
        Ok(Self {
            freq: r.freq,
            pad: r.pad,
            last: r.last,
            kernel: r.conv_tr.kernel,
            stride: r.conv_tr.stride,
            conv_tr: transposed(&r.conv_tr, precision)?,
            norm2: maybe_norm(&r.norm2)?,
            body,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.body.is_none()
    }

    /// The layer's output and `pre`, its input to the transposed convolution. `length`: what a
    /// waveform layer's output is trimmed to.
    pub fn forward(&self, mut x: Planes, skip: Option<&Planes>, length: usize) -> (Planes, Planes) {
        let y = match (&self.body, skip) {
            (Some(body), Some(skip)) => {
                x.data.iter_mut().zip(&skip.data).for_each(|(v, s)| *v += s);
                let mut y = match &body.rewrite {
                    Some(rewrite) => rewrite.forward(&x, self.freq),
                    None => x,
                };
                if let Some(dconv) = &body.dconv {
                    dconv.forward(&mut y);
                }
                y
            }
            _ => x,
        };
        let (t, f) = y.conv_view(self.freq);
        let rows = self.conv_tr.forward(&y.data, t, f);
        // GroupNorm sees the whole output (the positions of the product past the kernel are not
        // part of it); then the padding is trimmed: `pad` each side along frequency, to `length`
        // along the waveform.
        let full = (f - 1) * self.stride + self.kernel;
        let keep = if self.freq {
            full - 2 * self.pad
        } else {
            length
        };
        let stats = RowLayout {
            f: full,
            ..rows.layout
        };
        let kept = RowLayout {
            offset: self.pad,
            f: keep,
            ..rows.layout
        };
        let cout = self.conv_tr.bias.len();
        let act = if self.last { Act::Identity } else { Act::Gelu };
        let mut data = vec![0.0f32; t * keep * cout];
        let norm = self.norm2.as_ref().map(|n| (n, Stats::Whole));
        let sink = Sink::Write(&mut data);
        finish_part(&rows.data, kept, stats, &self.conv_tr.bias, norm, act, sink);
        let z = Planes::from_conv(data, self.freq, t, keep, cout);
        (z, y)
    }
}

fn transposed(c: &ConvTranspose, precision: Precision) -> CResult<TransposedConv> {
    let d = c.weight.dims();
    let (cin, taps) = (d[0], d[1] / c.cout);
    Ok(TransposedConv::new(
        &values(&c.weight)?,
        values(&c.bias)?,
        cin,
        taps,
        c.stride,
        precision,
    ))
}
