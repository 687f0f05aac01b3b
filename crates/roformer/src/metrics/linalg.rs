//! Dense square solves for BSSEval's distortion filters: LU factorisation with partial pivoting,
//! the method of LAPACK's `dgesv` that `numpy.linalg.solve` calls. Blocked (right-looking, like
//! `dgetrf`): each panel is factorised column by column, and the trailing matrix is updated
//! with one parallel matrix product per panel.

use super::MetricsError;

/// Panel width: the inner dimension of the trailing-matrix products.
const BLOCK: usize = 64;

/// The LU factors of a row-major `n × n` matrix: `P A = L U`, with `L` unit lower triangular
/// (below the diagonal) and `U` upper triangular (on and above it), stored in place.
pub(crate) struct Lu {
    n: usize,
    a: Vec<f64>,
    /// Row `j` was swapped with row `pivots[j] >= j` at step `j`.
    pivots: Vec<usize>,
}

impl Lu {
    /// Factorises the row-major `n × n` matrix `a`.
    pub(crate) fn factor(mut a: Vec<f64>, n: usize) -> Result<Self, MetricsError> {
        assert_eq!(a.len(), n * n, "matrix size");
        let mut pivots = vec![0usize; n];
        let mut k0 = 0;
        while k0 < n {
            let k1 = (k0 + BLOCK).min(n);
            factor_panel(&mut a, n, k0, k1, &mut pivots)?;
            if k1 < n {
                // U12 = L11⁻¹ A12 (rows k0..k1, columns k1..n).
                for j in k0..k1 {
                    let (top, bottom) = a.split_at_mut((j + 1) * n);
                    let u = &top[j * n + k1..j * n + n];
                    for i in j + 1..k1 {
                        let row = &mut bottom[(i - j - 1) * n..(i - j) * n];
                        let l = row[j];
                        if l != 0.0 {
                            for (x, &u) in row[k1..].iter_mut().zip(u) {
                                *x -= l * u;
                            }
                        }
                    }
                }
                // A22 -= L21 U12.
                let m = n - k1;
                let kb = k1 - k0;
                let rs = n as isize;
                let base = a.as_mut_ptr();
                // SAFETY: the three blocks are disjoint regions of `a` (rows k1.. × columns k1..,
                // rows k1.. × columns k0..k1, rows k0..k1 × columns k1..), all in bounds for row
                // stride n; gemm reads lhs/rhs and writes dst only.
                unsafe {
                    gemm::gemm(
                        m,
                        m,
                        kb,
                        base.add(k1 * n + k1),
                        1,
                        rs,
                        true,
                        base.add(k1 * n + k0) as *const f64,
                        1,
                        rs,
                        base.add(k0 * n + k1) as *const f64,
                        1,
                        rs,
                        1.0,
                        -1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::Rayon(rayon::current_num_threads()),
                    );
                }
            }
            k0 = k1;
        }
        Ok(Self { n, a, pivots })
    }

    /// Solves `A x = b` for one right-hand side, in place.
    pub(crate) fn solve_in_place(&self, b: &mut [f64]) {
        let n = self.n;
        assert_eq!(b.len(), n, "right-hand side size");
        for (j, &p) in self.pivots.iter().enumerate() {
            b.swap(j, p);
        }
        for i in 1..n {
            let row = &self.a[i * n..i * n + i];
            b[i] -= dot(row, &b[..i]);
        }
        for i in (0..n).rev() {
            let row = &self.a[i * n..(i + 1) * n];
            let s = dot(&row[i + 1..], &b[i + 1..]);
            b[i] = (b[i] - s) / row[i];
        }
    }
}

/// Unblocked LU with partial pivoting of columns `k0..k1` (rows `k0..n`); row swaps are applied
/// to whole rows.
fn factor_panel(
    a: &mut [f64],
    n: usize,
    k0: usize,
    k1: usize,
    pivots: &mut [usize],
) -> Result<(), MetricsError> {
    for j in k0..k1 {
        let mut p = j;
        let mut best = a[j * n + j].abs();
        for i in j + 1..n {
            let v = a[i * n + j].abs();
            if v > best {
                best = v;
                p = i;
            }
        }
        pivots[j] = p;
        if best == 0.0 || !best.is_finite() {
            return Err(MetricsError::Singular);
        }
        if p != j {
            let (top, bottom) = a.split_at_mut(p * n);
            top[j * n..(j + 1) * n].swap_with_slice(&mut bottom[..n]);
        }
        let (top, bottom) = a.split_at_mut((j + 1) * n);
        let pivot_row = &top[j * n + j..j * n + k1];
        let inv = 1.0 / pivot_row[0];
        for row in bottom.chunks_exact_mut(n) {
            let l = row[j] * inv;
            row[j] = l;
            if l != 0.0 {
                for (x, &u) in row[j + 1..k1].iter_mut().zip(&pivot_row[1..]) {
                    *x -= l * u;
                }
            }
        }
    }
    Ok(())
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    // Four partial sums let the compiler vectorise.
    let mut s = [0.0f64; 4];
    let chunks = a.len() / 4;
    for k in 0..chunks {
        for (l, acc) in s.iter_mut().enumerate() {
            *acc += a[4 * k + l] * b[4 * k + l];
        }
    }
    let mut total = (s[0] + s[1]) + (s[2] + s[3]);
    for k in chunks * 4..a.len() {
        total += a[k] * b[k];
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matvec(a: &[f64], x: &[f64], n: usize) -> Vec<f64> {
        (0..n).map(|i| dot(&a[i * n..(i + 1) * n], x)).collect()
    }

    #[test]
    fn solves_random_systems() {
        for &n in &[1usize, 5, 64, 65, 200] {
            let mut seed = 12345u64 + n as u64;
            let mut rnd = || {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 11) as f64 / (1u64 << 53) as f64) - 0.5
            };
            let a: Vec<f64> = (0..n * n).map(|_| rnd()).collect();
            let x: Vec<f64> = (0..n).map(|_| rnd()).collect();
            let b = matvec(&a, &x, n);
            let lu = Lu::factor(a.clone(), n).unwrap();
            let mut y = b.clone();
            lu.solve_in_place(&mut y);
            let err = x
                .iter()
                .zip(&y)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-9, "n={n}: max error {err}");
        }
    }

    #[test]
    fn singular_is_an_error() {
        assert!(Lu::factor(vec![1.0, 2.0, 2.0, 4.0], 2).is_err());
    }
}
