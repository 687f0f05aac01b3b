//! A `nn.Linear` weight `[out, in]` stored for the CPU engine's matrix products.

use super::gemm::{matmul, parallelism, Mat, MatMut, Parallelism};
use half::bf16;

use super::int8::Int8Matrix;
use super::precision::Precision;

/// Values of overlapping windows gathered at once for an int8 product on a strided view.
const INT8_GATHER_VALUES: usize = 1 << 20;

/// A weight matrix `[out, in]` (PyTorch layout) in the storage its precision asks for.
#[derive(Debug, Clone)]
pub enum Weight {
    F32 {
        data: Vec<f32>,
        out: usize,
        inp: usize,
    },
    Bf16 {
        data: Vec<bf16>,
        out: usize,
        inp: usize,
    },
    Int8(Int8Matrix),
}

impl Weight {
    pub fn new(data: Vec<f32>, out: usize, inp: usize, precision: Precision) -> Self {
        assert_eq!(
            data.len(),
            out * inp,
            "weight of {out}x{inp} with {} values",
            data.len()
        );
        match precision {
            Precision::F32 => Weight::F32 { data, out, inp },
            Precision::Bf16 => Weight::Bf16 {
                data: data.iter().map(|&v| bf16::from_f32(v)).collect(),
                out,
                inp,
            },
            Precision::Int8 => Weight::Int8(Int8Matrix::quantize(&data, out, inp)),
        }
    }

    pub fn out_dim(&self) -> usize {
        match self {
            Weight::F32 { out, .. } | Weight::Bf16 { out, .. } => *out,
            Weight::Int8(w) => w.rows(),
        }
    }

    pub fn in_dim(&self) -> usize {
        match self {
            Weight::F32 { inp, .. } | Weight::Bf16 { inp, .. } => *inp,
            Weight::Int8(w) => w.cols(),
        }
    }

    /// Bytes the stored weight takes.
    pub fn bytes(&self) -> usize {
        match self {
            Weight::F32 { data, .. } => data.len() * 4,
            Weight::Bf16 { data, .. } => data.len() * 2,
            Weight::Int8(w) => w.bytes(),
        }
    }

    /// `out[m, out_dim] = a[m, in_dim] . W^T`, added to `out` when `accumulate`, on all of
    /// rayon's threads.
    pub fn matmul(&self, a: &[f32], m: usize, out: &mut [f32], accumulate: bool) {
        let work = m * self.out_dim() * self.in_dim();
        self.matmul_with(a, m, out, accumulate, parallelism(work));
    }

    /// [`Weight::matmul`] on the calling thread (for work already spread over threads).
    pub fn matmul_serial(&self, a: &[f32], m: usize, out: &mut [f32], accumulate: bool) {
        self.matmul_with(a, m, out, accumulate, Parallelism::None);
    }

    /// `out (+)= a . W^T` on views: `a` `[rows, in_dim]` with any row stride (overlapping rows
    /// make a convolution's sliding windows), `out` `[rows, out_dim]`.
    pub fn matmul_view(&self, a: Mat<'_>, mut out: MatMut<'_>, accumulate: bool) {
        let (n, k) = (self.out_dim(), self.in_dim());
        assert_eq!(a.cols(), k, "input columns");
        assert_eq!((out.rows(), out.cols()), (a.rows(), n), "output shape");
        let par = parallelism(a.rows() * n * k);
        match self {
            Weight::F32 { data, .. } => {
                matmul(out, a, Mat::row_major(data, n, k).t(), accumulate, par)
            }
            Weight::Bf16 { data, .. } => {
                let wide: Vec<f32> = data.iter().map(|v| v.to_f32()).collect();
                matmul(out, a, Mat::row_major(&wide, n, k).t(), accumulate, par);
            }
            Weight::Int8(w) => {
                let rows = a.rows();
                if let (Some(src), Some(dst)) = (a.as_row_major(), out.as_row_major()) {
                    return super::int8::matmul(src, rows, w, dst, accumulate);
                }
                // The int8 kernels read packed rows: gather a block of windows, then scatter.
                let block = (INT8_GATHER_VALUES / k.max(1)).clamp(1, rows.max(1));
                let (mut src, mut dst) = (Vec::new(), Vec::new());
                for start in (0..rows).step_by(block) {
                    let m = block.min(rows - start);
                    src.clear();
                    (start..start + m).for_each(|i| src.extend_from_slice(a.row(i)));
                    dst.resize(m * n, 0.0);
                    super::int8::matmul(&src, m, w, &mut dst, false);
                    for (i, d) in dst.chunks_exact(n).enumerate() {
                        let o = out.row_mut(start + i);
                        if accumulate {
                            o.iter_mut().zip(d).for_each(|(o, d)| *o += d);
                        } else {
                            o.copy_from_slice(d);
                        }
                    }
                }
            }
        }
    }

    fn matmul_with(&self, a: &[f32], m: usize, out: &mut [f32], acc: bool, par: Parallelism) {
        let (n, k) = (self.out_dim(), self.in_dim());
        assert!(
            a.len() >= m * k && out.len() >= m * n,
            "matmul buffers too small"
        );
        match self {
            Weight::F32 { data, .. } => gemm_f32_with(a, m, data, n, k, out, acc, par),
            Weight::Bf16 { data, .. } => {
                // Widen once per call: the rows of a tile outnumber the weight's by far.
                let wide: Vec<f32> = data.iter().map(|v| v.to_f32()).collect();
                gemm_f32_with(a, m, &wide, n, k, out, acc, par);
            }
            Weight::Int8(w) => super::int8::matmul(a, m, w, out, acc),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn gemm_f32_with(
    a: &[f32],
    m: usize,
    w: &[f32],
    n: usize,
    k: usize,
    out: &mut [f32],
    acc: bool,
    par: Parallelism,
) {
    let out = MatMut::row_major(&mut out[..m * n], m, n);
    matmul(
        out,
        Mat::row_major(a, m, k),
        Mat::row_major(w, n, k).t(),
        acc,
        par,
    );
}
