//! Int8 matrix products: `out[m, n] (+)= a[m, k] . W^T` with `W` an `nn.Linear` weight `[n, k]`
//! quantised once per output channel, the activations `a` quantised per row inside each call,
//! exact `i32` accumulation and one `f32` rescale per result.
//!
//! # Numbers
//! Both sides use symmetric int8: a row `x` with `max = max|x|` gets the scale `max / 127` and
//! the integers `q = clamp(round_ties_even(x * (127 / max)), -127, 127)` (the product and the
//! reciprocal in `f32`; for rows so small that `127 / max` overflows `f32` the reciprocal and
//! the product are taken in `f64`). An all-zero row gets the scale 0 and zeros. The result is
//! `out[i, j] = (f32(acc[i, j]) * sw[j]) * sa[i]` with `acc` the exact integer dot product.
//! (NaN or infinite inputs give meaningless numbers, but never undefined behaviour.)
//!
//! # Layout
//! The weight is packed once into panels of [`NR`] = 48 output columns (three 16-lane vectors);
//! inside a panel, for each group of 4 consecutive `k` (the `vpdpbusd` quadruple) come the
//! vectors' 16 columns x 4 bytes, 64 bytes each. `k` is padded to a multiple of 4 and the last
//! panel to a multiple of 16 columns, with zeros. The activations of a block of rows are
//! quantised into a row-major `u8` buffer holding `q + 128` (`vpdpbusd` multiplies unsigned by
//! signed bytes); the `128 * sum_k w_q[j, k]` this adds is precomputed per column and taken off.
//!
//! # Kernels
//! Chosen at run time, the best first (all give bit-identical results):
//! - x86-64 with AVX-512 F/BW/VNNI: a register-blocked micro-kernel keeps 8 rows x 48 columns
//!   of `i32` accumulators in 24 zmm registers and runs over the whole `k`;
//! - x86-64 with AVX-VNNI: the same with 256-bit `vpdpbusd`, 6 rows x 16 columns;
//! - x86-64 with AVX2: `vpmaddwd` on bytes widened to `i16`, 6 rows x 8 columns;
//! - anything else: a portable kernel in plain Rust.
//!
//! The weight is walked in column blocks sized to stay in L2 while a block of rows reuses them.

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;
#[cfg(test)]
mod tests;

/// Lanes of one vector of `i32` accumulators (one zmm register).
const LANES: usize = 16;
/// Vectors per weight panel.
const NV: usize = 3;
/// Output columns per weight panel.
const NR: usize = NV * LANES;
/// Rows per micro-tile of the fast kernel (and the row padding of the activation buffer).
const MR: usize = 8;
/// Most rows a task quantises and multiplies at once.
const MC: usize = 96;
/// Bytes of packed weight a column block may take (kept in L2 while a row block walks it).
#[cfg(target_arch = "x86_64")]
const NC_BYTES: usize = 384 << 10;
/// Below this many multiply-adds a call stays on the calling thread.
const PARALLEL_WORK: usize = 1 << 20;

/// 64 bytes aligned to a cache line: the unit the packed weight is stored in, so that every
/// 64-byte vector of it is one aligned load.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([i8; 64]);

/// A weight `[rows, cols]` quantised per row (output channel) to int8.
#[derive(Clone)]
pub struct Int8Matrix {
    rows: usize,
    cols: usize,
    /// `cols` rounded up to a multiple of 4.
    kp: usize,
    /// The quantised weight in panels (see the module docs), zero-padded.
    packed: Vec<Line>,
    /// Per-row scale, padded with zeros to a multiple of [`LANES`].
    scales: Vec<f32>,
    /// `128 * sum_k q[row, k]` per row, padded with zeros to a multiple of [`LANES`].
    corr: Vec<i32>,
}

impl std::fmt::Debug for Int8Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Int8Matrix")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("bytes", &self.bytes())
            .finish_non_exhaustive()
    }
}

/// How one row is quantised: see the module docs.
#[derive(Clone, Copy)]
enum RowQuant {
    /// All zeros (or no finite positive maximum): scale 0, every integer 0.
    Zero,
    /// The usual case: `q = clamp(round_ties_even(x * inv), -127, 127)` in `f32`.
    F32 { scale: f32, inv: f32 },
    /// `127 / max` overflows `f32` (a row of tiny or subnormal values): the same in `f64`.
    F64 { scale: f32, inv: f64 },
}

impl RowQuant {
    fn new(max: f32) -> Self {
        // NaN, too, is not greater than 0.
        if max.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return RowQuant::Zero;
        }
        let scale = max / 127.0;
        let inv = 127.0 / max;
        if inv.is_finite() {
            RowQuant::F32 { scale, inv }
        } else {
            RowQuant::F64 {
                scale,
                inv: 127.0 / f64::from(max),
            }
        }
    }

    fn of(row: &[f32]) -> Self {
        Self::new(row.iter().fold(0.0f32, |m, v| m.max(v.abs())))
    }

    fn scale(self) -> f32 {
        match self {
            RowQuant::Zero => 0.0,
            RowQuant::F32 { scale, .. } | RowQuant::F64 { scale, .. } => scale,
        }
    }

    #[inline]
    fn quantize(self, x: f32) -> i32 {
        match self {
            RowQuant::Zero => 0,
            // `as i32` of NaN is 0; the clamp keeps the rest in range.
            RowQuant::F32 { inv, .. } => (x * inv).round_ties_even().clamp(-127.0, 127.0) as i32,
            RowQuant::F64 { inv, .. } => {
                (f64::from(x) * inv).round_ties_even().clamp(-127.0, 127.0) as i32
            }
        }
    }
}

/// Quantises one activation row into `dst` (`kp >= row.len()` bytes) as `q + 128`, padding with
/// 128 (a zero), and returns the row's scale.
fn quantize_row_u8(row: &[f32], dst: &mut [u8]) -> f32 {
    let rq = RowQuant::of(row);
    let (head, pad) = dst.split_at_mut(row.len());
    for (d, &x) in head.iter_mut().zip(row) {
        *d = (rq.quantize(x) + 128) as u8;
    }
    pad.fill(128);
    rq.scale()
}

/// Byte offset of weight element (`row` = output column `j`, `k`) in the packed panels.
#[inline]
fn packed_offset(j: usize, k: usize, rows: usize, kp: usize) -> usize {
    let p = j / NR;
    let c = j % NR;
    let vectors = panel_vectors(p, rows);
    p * NR * kp + (k / 4) * vectors * 64 + (c / LANES) * 64 + (c % LANES) * 4 + k % 4
}

/// Vectors of 16 columns in panel `p` of a weight with `rows` output columns.
#[inline]
fn panel_vectors(p: usize, rows: usize) -> usize {
    (rows - p * NR).min(NR).div_ceil(LANES)
}

impl Int8Matrix {
    /// Quantises `w` (`[rows, cols]` row-major) per row: symmetric, scale = max|row| / 127.
    pub fn quantize(w: &[f32], rows: usize, cols: usize) -> Self {
        assert!(
            w.len() >= rows * cols,
            "weight of {rows}x{cols} with {} values",
            w.len()
        );
        // |acc| <= cols * 255 * 127 must fit in i32.
        assert!(
            cols <= (i32::MAX as usize) / (255 * 127),
            "int8 weight with {cols} columns would overflow the i32 accumulators"
        );
        let kp = cols.next_multiple_of(4);
        let padded_rows = rows.next_multiple_of(LANES);
        let panels = rows.div_ceil(NR);
        let total: usize = (0..panels).map(|p| kp * panel_vectors(p, rows) * 64).sum();
        debug_assert_eq!(total % 64, 0);
        let mut packed = vec![Line([0; 64]); total / 64];
        let mut scales = vec![0.0f32; padded_rows];
        let mut corr = vec![0i32; padded_rows];
        {
            let bytes = lines_as_bytes_mut(&mut packed);
            for j in 0..rows {
                let row = &w[j * cols..(j + 1) * cols];
                let rq = RowQuant::of(row);
                scales[j] = rq.scale();
                let mut sum = 0i32;
                for (k, &x) in row.iter().enumerate() {
                    let q = rq.quantize(x);
                    sum += q;
                    bytes[packed_offset(j, k, rows, kp)] = q as i8;
                }
                corr[j] = 128 * sum;
            }
        }
        Self {
            rows,
            cols,
            kp,
            packed,
            scales,
            corr,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Memory the packed weight takes (integers, scales and column corrections).
    pub fn bytes(&self) -> usize {
        self.packed.len() * 64 + self.scales.len() * 4 + self.corr.len() * 4
    }

    fn packed_bytes(&self) -> &[i8] {
        // SAFETY: `Line` is `repr(C)` around `[i8; 64]` with no padding (size 64, align 64),
        // so the vector's storage is `len * 64` initialised `i8`s.
        unsafe {
            std::slice::from_raw_parts(self.packed.as_ptr().cast::<i8>(), self.packed.len() * 64)
        }
    }

    /// The quantised integer of element (`row`, `col`) (for tests and inspection).
    #[cfg(test)]
    fn q(&self, row: usize, col: usize) -> i8 {
        self.packed_bytes()[packed_offset(row, col, self.rows, self.kp)]
    }
}

fn lines_as_bytes_mut(lines: &mut [Line]) -> &mut [i8] {
    // SAFETY: as in `packed_bytes`; the exclusive borrow carries over.
    unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<i8>(), lines.len() * 64) }
}

/// Which kernel multiplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// Plain Rust, any CPU.
    Portable,
    /// AVX2 with 16-bit `vpmaddwd` (checked at run time before it is chosen).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX2 with AVX-VNNI's 256-bit `vpdpbusd` (checked at run time).
    #[cfg(target_arch = "x86_64")]
    AvxVnni,
    /// AVX-512 F/BW/VNNI (checked at run time).
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}

impl Path {
    /// The fastest kernel this CPU runs.
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if avx512::available() {
                return Path::Avx512Vnni;
            }
            if avx2::available(true) {
                return Path::AvxVnni;
            }
            if avx2::available(false) {
                return Path::Avx2;
            }
        }
        Path::Portable
    }

    /// Whether this CPU runs the kernel.
    #[cfg(test)]
    fn available(self) -> bool {
        match self {
            Path::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => avx2::available(false),
            #[cfg(target_arch = "x86_64")]
            Path::AvxVnni => avx2::available(true),
            #[cfg(target_arch = "x86_64")]
            Path::Avx512Vnni => avx512::available(),
        }
    }
}

/// `out[m, rows] (+)= a[m, cols] . W^T` (added to `out` when `accumulate`), `a` row-major
/// `[m, cols]`, `out` row-major `[m, rows]`; activations quantised per row (symmetric int8,
/// scale = max|row|/127) inside the call; i32 accumulation; parallel over row blocks on rayon's
/// current pool (`rayon::current_num_threads()`), the calling thread only when the work is small.
pub fn matmul(a: &[f32], m: usize, w: &Int8Matrix, out: &mut [f32], accumulate: bool) {
    matmul_with(a, m, w, out, accumulate, Path::detect(), true);
}

fn matmul_with(
    a: &[f32],
    m: usize,
    w: &Int8Matrix,
    out: &mut [f32],
    accumulate: bool,
    path: Path,
    parallel: bool,
) {
    let (n, k) = (w.rows, w.cols);
    assert!(
        a.len() >= m * k && out.len() >= m * n,
        "int8 matmul buffers too small"
    );
    if m == 0 || n == 0 {
        return;
    }
    let (a, out) = (&a[..m * k], &mut out[..m * n]);
    if k == 0 {
        if !accumulate {
            out.fill(0.0);
        }
        return;
    }
    let threads = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    if threads <= 1 || m * n * k < PARALLEL_WORK || m <= MR {
        rows_block(a, m, w, out, accumulate, path);
        return;
    }
    // Blocks of rows: at most MC, and small enough that every thread gets a few.
    let chunk = m.div_ceil(threads * 4).next_multiple_of(MR).clamp(MR, MC);
    out.par_chunks_mut(chunk * n)
        .zip(a.par_chunks(chunk * k))
        .for_each(|(o, a)| rows_block(a, o.len() / n, w, o, accumulate, path));
}

/// One block of rows on the calling thread.
fn rows_block(a: &[f32], m: usize, w: &Int8Matrix, out: &mut [f32], accumulate: bool, path: Path) {
    if path == Path::Portable {
        return portable::rows(a, m, w, out, accumulate);
    }
    // The fast kernels quantise at most MC rows at a time (their buffer stays in L2).
    for (a, out) in a.chunks(MC * w.cols).zip(out.chunks_mut(MC * w.rows)) {
        let m = out.len() / w.rows;
        match path {
            Path::Portable => unreachable!(),
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => avx2::rows(a, m, w, out, accumulate, false),
            #[cfg(target_arch = "x86_64")]
            Path::AvxVnni => avx2::rows(a, m, w, out, accumulate, true),
            #[cfg(target_arch = "x86_64")]
            Path::Avx512Vnni => avx512::rows(a, m, w, out, accumulate),
        }
    }
}
