//! A `nn.Linear` weight `[out, in]` stored for the CPU engine's matrix products.

use super::gemm::{matmul, parallelism, Mat, MatMut, Parallelism};
use half::bf16;

use super::int8::Int8Matrix;
use super::precision::Precision;

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
