//! Strided matrix views and the `f32` matrix product on them (the `gemm` crate, whose AVX-512
//! kernels are chosen at run time). Strides let attention multiply heads in place inside the
//! projection rows, with no gathering copies.

pub use gemm::Parallelism;

/// A matrix inside a slice: element `(i, j)` at `i * row_stride + j * col_stride`.
#[derive(Debug, Clone, Copy)]
pub struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

/// The furthest index a `rows x cols` view with these strides touches, plus one.
fn extent(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * row_stride + (cols - 1) * col_stride + 1
    }
}

impl<'a> Mat<'a> {
    pub fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Self {
        assert!(
            extent(rows, cols, row_stride, col_stride) <= data.len(),
            "{rows}x{cols} view with strides ({row_stride}, {col_stride}) past {} values",
            data.len()
        );
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols, 1)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The values as one row-major slice, when the rows are packed back to back.
    pub fn as_row_major(&self) -> Option<&'a [f32]> {
        (self.col_stride == 1 && (self.row_stride == self.cols || self.rows <= 1))
            .then(|| &self.data[..self.rows * self.cols])
    }

    /// Row `i` (the view's columns must be contiguous).
    pub fn row(&self, i: usize) -> &'a [f32] {
        assert_eq!(self.col_stride, 1, "a row of a view with strided columns");
        &self.data[i * self.row_stride..i * self.row_stride + self.cols]
    }

    /// The transpose (a view, nothing moves).
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// A mutable matrix inside a slice, as [`Mat`].
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
}

impl<'a> MatMut<'a> {
    /// Rows of `cols` contiguous values, `row_stride` apart.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        assert!(
            extent(rows, cols, row_stride, 1) <= data.len(),
            "{rows}x{cols} output with row stride {row_stride} past {} values",
            data.len()
        );
        Self {
            data,
            rows,
            cols,
            row_stride,
        }
    }

    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self::new(data, rows, cols, cols)
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The values as one row-major slice, when the rows are packed back to back.
    pub fn as_row_major(&mut self) -> Option<&mut [f32]> {
        (self.row_stride == self.cols || self.rows <= 1)
            .then(|| &mut self.data[..self.rows * self.cols])
    }

    /// Row `i`.
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        &mut self.data[i * self.row_stride..i * self.row_stride + self.cols]
    }
}

/// `dst = lhs . rhs`, or `dst += lhs . rhs` when `accumulate`.
pub fn matmul(dst: MatMut<'_>, lhs: Mat<'_>, rhs: Mat<'_>, accumulate: bool, par: Parallelism) {
    assert_eq!(lhs.cols, rhs.rows, "inner dimensions differ");
    assert_eq!((dst.rows, dst.cols), (lhs.rows, rhs.cols), "output shape");
    if dst.rows == 0 || dst.cols == 0 {
        return;
    }
    // SAFETY: every view was checked at construction to lie inside its slice for its shape and
    // strides, and the shapes agree (asserted above); `dst` is a unique borrow, so it aliases
    // neither input.
    unsafe {
        gemm::gemm(
            dst.rows,
            dst.cols,
            lhs.cols,
            dst.data.as_mut_ptr(),
            1,
            dst.row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// How many threads a product of `work` multiply-adds should use.
pub fn parallelism(work: usize) -> Parallelism {
    let threads = rayon::current_num_threads();
    // Below about a million multiply-adds a thread hand-off costs more than it saves.
    if threads > 1 && work >= 1 << 20 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strided products against a triple loop in f64.
    #[test]
    fn strided_views_multiply_like_the_definition() {
        let (m, k, n) = (7, 5, 9);
        let a: Vec<f32> = (0..m * k * 3)
            .map(|i| ((i * 37) % 19) as f32 - 9.0)
            .collect();
        let b: Vec<f32> = (0..k * n * 2)
            .map(|i| ((i * 53) % 23) as f32 - 11.0)
            .collect();
        // a as an m x k view with row stride 3k (every third row block), b^T stored as [n, 2k].
        let lhs = Mat::new(&a, m, k, 3 * k, 1);
        let rhs = Mat::new(&b, n, k, 2 * k, 1).t();
        let mut out = vec![1.0f32; m * (n + 4)];
        matmul(
            MatMut::new(&mut out, m, n, n + 4),
            lhs,
            rhs,
            true,
            Parallelism::None,
        );
        for i in 0..m {
            for j in 0..n {
                let want: f64 = (0..k)
                    .map(|p| a[i * 3 * k + p] as f64 * b[j * 2 * k + p] as f64)
                    .sum::<f64>()
                    + 1.0;
                assert_eq!(out[i * (n + 4) + j] as f64, want);
            }
            // Padding columns between output rows are untouched.
            assert!(out[i * (n + 4) + n..(i + 1) * (n + 4)]
                .iter()
                .all(|&v| v == 1.0));
        }
    }

    #[test]
    #[should_panic(expected = "past")]
    fn a_view_past_its_slice_is_refused() {
        let data = [0.0f32; 10];
        let _ = Mat::new(&data, 3, 4, 4, 1);
    }
}
