//! The portable kernel: the same integers and the same `f32` epilogue as the fast path, in plain
//! Rust on the packed weight (any CPU).

use super::{panel_vectors, quantize_row_u8, Int8Matrix, LANES, NR};

/// Rows quantised and multiplied together (each weight panel is read once per tile).
const RT: usize = 4;

/// `out[m, n] (+)= a[m, k] . W^T` on the calling thread.
pub(super) fn rows(a: &[f32], m: usize, w: &Int8Matrix, out: &mut [f32], accumulate: bool) {
    let (n, k, kp) = (w.rows, w.cols, w.kp);
    let b = w.packed_bytes();
    let mut q = vec![128u8; RT * kp];
    let mut sa = [0.0f32; RT];
    for r0 in (0..m).step_by(RT) {
        let rt = RT.min(m - r0);
        for r in 0..rt {
            let row = &a[(r0 + r) * k..(r0 + r + 1) * k];
            sa[r] = quantize_row_u8(row, &mut q[r * kp..(r + 1) * kp]);
        }
        for p in 0..n.div_ceil(NR) {
            let width = panel_vectors(p, n) * LANES;
            let panel = &b[p * NR * kp..p * NR * kp + kp * width];
            let mut acc = [[0i32; NR]; RT];
            for (g, bg) in panel.chunks_exact(width * 4).enumerate() {
                for (r, acc) in acc.iter_mut().enumerate().take(rt) {
                    let x = &q[r * kp + 4 * g..r * kp + 4 * g + 4];
                    let x = [x[0] as i32, x[1] as i32, x[2] as i32, x[3] as i32];
                    for (acc, bc) in acc.iter_mut().zip(bg.chunks_exact(4)) {
                        *acc += x[0] * bc[0] as i32
                            + x[1] * bc[1] as i32
                            + x[2] * bc[2] as i32
                            + x[3] * bc[3] as i32;
                    }
                }
            }
            let cols = (n - p * NR).min(NR);
            for (r, acc) in acc.iter().enumerate().take(rt) {
                let o = &mut out[(r0 + r) * n + p * NR..(r0 + r) * n + p * NR + cols];
                for (c, o) in o.iter_mut().enumerate() {
                    let j = p * NR + c;
                    let v = ((acc[c] - w.corr[j]) as f32 * w.scales[j]) * sa[r];
                    *o = if accumulate { *o + v } else { v };
                }
            }
        }
    }
}
