//! Int8 matrix products (placeholder: being written).

/// A weight `[rows, cols]` quantised per row (output channel) to int8.
#[derive(Debug, Clone)]
pub struct Int8Matrix {
    rows: usize,
    cols: usize,
}

impl Int8Matrix {
    pub fn quantize(_w: &[f32], rows: usize, cols: usize) -> Self {
        Self { rows, cols }
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn bytes(&self) -> usize {
        self.rows * self.cols
    }
}

/// `out[m, rows] (+)= a[m, cols] . W^T`.
pub fn matmul(_a: &[f32], _m: usize, _w: &Int8Matrix, _out: &mut [f32], _accumulate: bool) {
    unimplemented!("int8 matmul is being written")
}
