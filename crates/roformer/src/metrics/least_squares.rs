//! Minimum-norm least squares for a square system, what `numpy.linalg.lstsq` returns (LAPACK
//! `dgelsd`, SVD based): museval falls back to it when the distortion-filter system is singular.
//! Singular values at or below `eps * n * s_max` count as zero, numpy's default `rcond`.

use faer::Mat;

use super::MetricsError;

/// `A = U S Vᵀ` of a row-major `n × n` matrix, ready to apply its pseudo-inverse.
pub(crate) struct MinNorm {
    u: Mat<f64>,
    v: Mat<f64>,
    /// `1 / s` for the singular values kept, 0 for the others.
    s_inv: Vec<f64>,
}

impl MinNorm {
    pub(crate) fn factor(a: &[f64], n: usize) -> Result<Self, MetricsError> {
        let m = Mat::from_fn(n, n, |i, j| a[i * n + j]);
        let svd = m.svd().map_err(|_| MetricsError::Singular)?;
        let s = svd.S().column_vector();
        let s_max = (0..n).map(|i| s[i]).fold(0.0, f64::max);
        if !s_max.is_finite() || s_max == 0.0 {
            return Err(MetricsError::Singular);
        }
        let cutoff = f64::EPSILON * n as f64 * s_max;
        let s_inv = (0..n)
            .map(|i| if s[i] > cutoff { 1.0 / s[i] } else { 0.0 })
            .collect();
        Ok(Self {
            u: svd.U().to_owned(),
            v: svd.V().to_owned(),
            s_inv,
        })
    }

    /// Overwrites `b` with `A⁺ b`, the least-squares solution of smallest norm.
    pub(crate) fn solve_in_place(&self, b: &mut [f64]) {
        let n = b.len();
        let rhs = Mat::from_fn(n, 1, |i, _| b[i]);
        let mut y = self.u.transpose() * &rhs;
        for (i, s) in self.s_inv.iter().enumerate() {
            y[(i, 0)] *= s;
        }
        let x = &self.v * &y;
        for (i, out) in b.iter_mut().enumerate() {
            *out = x[(i, 0)];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_deficient_system_gets_the_minimum_norm_solution() {
        // A = [[1, 1], [1, 1]] (rank 1), b = [2, 2]: every x with x0 + x1 = 2 solves it; the
        // one of least norm is [1, 1].
        let solver = MinNorm::factor(&[1.0, 1.0, 1.0, 1.0], 2).unwrap();
        let mut b = [2.0, 2.0];
        solver.solve_in_place(&mut b);
        assert!(
            (b[0] - 1.0).abs() < 1e-12 && (b[1] - 1.0).abs() < 1e-12,
            "{b:?}"
        );
        // Inconsistent right-hand side [1, 3]: the least-squares fit is x0 + x1 = 2, again [1, 1].
        let mut b = [1.0, 3.0];
        solver.solve_in_place(&mut b);
        assert!(
            (b[0] - 1.0).abs() < 1e-12 && (b[1] - 1.0).abs() < 1e-12,
            "{b:?}"
        );
    }

    #[test]
    fn regular_system_gets_the_exact_solution() {
        // [[2, 1], [1, 3]] x = [3, 5] -> x = [4/5, 7/5].
        let solver = MinNorm::factor(&[2.0, 1.0, 1.0, 3.0], 2).unwrap();
        let mut b = [3.0, 5.0];
        solver.solve_in_place(&mut b);
        assert!(
            (b[0] - 0.8).abs() < 1e-12 && (b[1] - 1.4).abs() < 1e-12,
            "{b:?}"
        );
    }
}
