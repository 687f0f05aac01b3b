//! The portable kernel: the same integers and the same `f32` epilogue as the fast paths, in plain
//! Rust (any CPU). Activations and one weight panel at a time are widened to `i16` and laid out
//! along `k`, so that the inner loops are plain `i16 x i16 -> i32` dot products, which compilers
//! vectorise well (`pmaddwd` on x86, `smlal` on Arm).

use super::{panel_vectors, quantize_row_u8, Int8Matrix, LANES, NR};

/// Rows quantised together (each weight panel is widened once per block).
const RB: usize = 64;

/// `out[m, n] (+)= a[m, k] . W^T` on the calling thread.
pub(super) fn rows(a: &[f32], m: usize, w: &Int8Matrix, out: &mut [f32], accumulate: bool) {
    let (n, k, kp) = (w.rows, w.cols, w.kp);
    let b = w.packed_bytes();
    // `q + 128` like the fast kernels, widened; rows padded to an even count.
    let mut qa = vec![0i16; (RB + 1) * kp];
    let mut row_u8 = vec![0u8; kp];
    let mut sa = [0.0f32; RB];
    let mut bt = vec![0i16; NR * kp];
    for r0 in (0..m).step_by(RB) {
        let rb = RB.min(m - r0);
        qa.fill(0);
        for r in 0..rb {
            sa[r] = quantize_row_u8(&a[(r0 + r) * k..(r0 + r + 1) * k], &mut row_u8);
            for (d, &x) in qa[r * kp..].iter_mut().zip(&row_u8) {
                *d = i16::from(x);
            }
        }
        for p in 0..n.div_ceil(NR) {
            let width = panel_vectors(p, n) * LANES;
            let panel = &b[p * NR * kp..p * NR * kp + kp * width];
            // Column `c` of the panel along `k`.
            for (g, bg) in panel.chunks_exact(width * 4).enumerate() {
                for (c, quad) in bg.chunks_exact(4).enumerate() {
                    for (t, &v) in quad.iter().enumerate() {
                        bt[c * kp + 4 * g + t] = i16::from(v);
                    }
                }
            }
            let cols = (n - p * NR).min(NR);
            for r in (0..rb).step_by(2) {
                let (a0, a1) = (&qa[r * kp..(r + 1) * kp], &qa[(r + 1) * kp..(r + 2) * kp]);
                for c in (0..cols).step_by(2) {
                    // `width` is a multiple of 16, so column `c + 1` exists (zeros past `cols`).
                    let (b0, b1) = (&bt[c * kp..(c + 1) * kp], &bt[(c + 1) * kp..(c + 2) * kp]);
                    let acc = dot2x2(a0, a1, b0, b1);
                    for (dr, dc) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        let (i, j) = (r + dr, p * NR + c + dc);
                        if i < rb && c + dc < cols {
                            let v = ((acc[dr * 2 + dc] - w.corr[j]) as f32 * w.scales[j]) * sa[i];
                            let o = &mut out[(r0 + i) * n + j];
                            *o = if accumulate { *o + v } else { v };
                        }
                    }
                }
            }
        }
    }
}

/// The four dot products of rows `a0`, `a1` with columns `b0`, `b1` (all the same length).
#[inline]
fn dot2x2(a0: &[i16], a1: &[i16], b0: &[i16], b1: &[i16]) -> [i32; 4] {
    let mut s = [0i32; 4];
    for (((&x0, &x1), &y0), &y1) in a0.iter().zip(a1).zip(b0).zip(b1) {
        let (x0, x1, y0, y1) = (i32::from(x0), i32::from(x1), i32::from(y0), i32::from(y1));
        s[0] += x0 * y0;
        s[1] += x0 * y1;
        s[2] += x1 * y0;
        s[3] += x1 * y1;
    }
    s
}
