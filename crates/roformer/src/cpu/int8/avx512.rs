//! The AVX-512 VNNI kernel: `vpdpbusd` on [`MR`] rows x up to [`NV`] vectors of 16 columns of
//! `i32` accumulators, chosen at run time.

use std::arch::x86_64::*;

use super::{panel_vectors, quantize_row_u8, Int8Matrix, RowQuant, LANES, MR, NC_BYTES, NR, NV};

/// Whether this CPU runs the kernel.
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vnni")
}

/// `out[m, n] (+)= a[m, k] . W^T` on the calling thread (`m` up to a block of rows).
pub(super) fn rows(a: &[f32], m: usize, w: &Int8Matrix, out: &mut [f32], accumulate: bool) {
    assert!(available(), "the AVX-512 VNNI kernel on a CPU without it");
    assert!(a.len() >= m * w.cols && out.len() >= m * w.rows);
    // SAFETY: the CPU has the features `rows_impl` is compiled for (checked just above).
    unsafe { rows_impl(a, m, w, out, accumulate) }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn rows_impl(a: &[f32], m: usize, w: &Int8Matrix, out: &mut [f32], accumulate: bool) {
    let (n, k, kp) = (w.rows, w.cols, w.kp);
    if m == 0 || n == 0 {
        return;
    }
    // Rows padded to whole tiles: the padding rows stay 128 (zero) and are never stored.
    let mp = m.next_multiple_of(MR);
    let mut q = vec![128u8; mp * kp];
    let mut sa = vec![0.0f32; mp];
    for i in 0..m {
        sa[i] = quantize_row(&a[i * k..(i + 1) * k], &mut q[i * kp..(i + 1) * kp]);
    }
    let b = w.packed_bytes();
    let panels = n.div_ceil(NR);
    // Column blocks of whole panels that stay in L2 while all the rows walk them.
    let per_block = (NC_BYTES / (NR * kp)).max(1);
    for p0 in (0..panels).step_by(per_block) {
        let p1 = (p0 + per_block).min(panels);
        for r0 in (0..m).step_by(MR) {
            for p in p0..p1 {
                let vectors = panel_vectors(p, n);
                let c0 = p * NR;
                let tile = Tile {
                    a: q[r0 * kp..].as_ptr(),
                    lda: kp,
                    b: b[c0 * kp..].as_ptr(),
                    groups: kp / 4,
                    out: out[r0 * n + c0..].as_mut_ptr(),
                    ldo: n,
                    rows: MR.min(m - r0),
                    cols: (n - c0).min(NR),
                    sa: sa[r0..].as_ptr(),
                    sw: w.scales[c0..].as_ptr(),
                    corr: w.corr[c0..].as_ptr(),
                    accumulate,
                };
                // SAFETY: `tile` satisfies `micro`'s contract:
                // - `a`: rows `r0..r0 + MR` of `q` exist (`mp` is a multiple of MR), each `kp`
                //   bytes, and `groups * 4 == kp`;
                // - `b`: the panel starts at byte `c0 * kp` and holds `kp * vectors * 16 ==
                //   groups * vectors * 64` bytes;
                // - `out`: rows `r0..r0 + rows` < m and columns `c0..c0 + cols` <= n of the
                //   `[m, n]` output (`out.len() >= m * n`, asserted by the caller);
                // - `sa` has `mp >= r0 + MR` entries; `sw`/`corr` are padded to a multiple of 16
                //   columns, so `c0 + vectors * 16` entries exist.
                unsafe {
                    match vectors {
                        3 => micro::<MR, 3>(&tile),
                        2 => micro::<MR, 2>(&tile),
                        1 => micro::<MR, 1>(&tile),
                        _ => unreachable!("{vectors} vectors in a panel of {NV}"),
                    }
                }
            }
        }
    }
}

/// Quantises one row like [`quantize_row_u8`] (the same integers), 16 values at a time.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn quantize_row(row: &[f32], dst: &mut [u8]) -> f32 {
    let k = row.len();
    assert!(dst.len() >= k);
    let full = k / LANES * LANES;
    let tail: __mmask16 = (1u32 << (k - full)).wrapping_sub(1) as __mmask16;
    let src = row.as_ptr();
    let mut vmax = _mm512_setzero_ps();
    for i in (0..full).step_by(LANES) {
        // SAFETY: `i + 16 <= full <= k` values of `row`.
        let x = unsafe { _mm512_loadu_ps(src.add(i)) };
        vmax = _mm512_max_ps(vmax, _mm512_abs_ps(x));
    }
    if tail != 0 {
        // SAFETY: the mask keeps the load to the `k - full` values left; masked-off lanes are
        // not read.
        let x = unsafe { _mm512_maskz_loadu_ps(tail, src.add(full)) };
        vmax = _mm512_max_ps(vmax, _mm512_abs_ps(x));
    }
    let RowQuant::F32 { scale, inv } = RowQuant::new(_mm512_reduce_max_ps(vmax)) else {
        // Zero and tiny rows (rare): the scalar code.
        return quantize_row_u8(row, dst);
    };
    let inv = _mm512_set1_ps(inv);
    let (lo, hi, bias) = (
        _mm512_set1_epi32(-127),
        _mm512_set1_epi32(127),
        _mm512_set1_epi32(128),
    );
    let quant = |x: __m512| {
        let q = _mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, inv),
        );
        _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(q, lo), hi), bias)
    };
    let dp = dst.as_mut_ptr();
    for i in (0..full).step_by(LANES) {
        // SAFETY: 16 values of `row` and 16 bytes of `dst` from `i + 16 <= k <= dst.len()`.
        unsafe {
            let q = quant(_mm512_loadu_ps(src.add(i)));
            _mm512_mask_cvtepi32_storeu_epi8(dp.add(i).cast(), 0xffff, q);
        }
    }
    if tail != 0 {
        // SAFETY: the masks keep the load and the store to the `k - full` elements left.
        unsafe {
            let q = quant(_mm512_maskz_loadu_ps(tail, src.add(full)));
            _mm512_mask_cvtepi32_storeu_epi8(dp.add(full).cast(), tail, q);
        }
    }
    dst[k..].fill(128);
    scale
}

/// One micro-tile: up to `MR` rows x up to `NV * 16` columns of one weight panel, over all `k`.
pub(super) struct Tile {
    /// `R` rows of `groups * 4` quantised activations (`q + 128`), `lda` bytes apart.
    pub(super) a: *const u8,
    pub(super) lda: usize,
    /// The panel: `groups` times `V` vectors of 64 bytes.
    pub(super) b: *const i8,
    pub(super) groups: usize,
    /// Output of the tile's first row and column, rows `ldo` floats apart.
    pub(super) out: *mut f32,
    pub(super) ldo: usize,
    /// Rows (<= R) and columns (<= V * 16) to store.
    pub(super) rows: usize,
    pub(super) cols: usize,
    /// `R` row scales; `V * 16` column scales and column corrections.
    pub(super) sa: *const f32,
    pub(super) sw: *const f32,
    pub(super) corr: *const i32,
    pub(super) accumulate: bool,
}

/// The register-blocked product of one [`Tile`] with `R x V` zmm accumulators.
///
/// # Safety
/// The CPU has AVX-512 F/BW/VNNI, and the tile's pointers are valid as its fields describe:
/// `a + r * lda + [0, groups * 4)` readable for `r < R`, `b + [0, groups * V * 64)` readable,
/// `out + r * ldo + [0, cols)` writable (and readable when accumulating) for `r < rows`,
/// `sa + [0, rows)`, `sw + [0, V * 16)` and `corr + [0, V * 16)` readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn micro<const R: usize, const V: usize>(t: &Tile) {
    let mut acc = [[_mm512_setzero_si512(); V]; R];
    let (mut a, mut b) = (t.a, t.b);
    for _ in 0..t.groups {
        let mut bv = [_mm512_setzero_si512(); V];
        for (v, bv) in bv.iter_mut().enumerate() {
            // SAFETY (all in this loop): inside the `groups * V * 64` bytes of the panel and
            // the `groups * 4` bytes of each row, by the contract.
            *bv = unsafe { _mm512_loadu_si512(b.add(64 * v).cast()) };
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            let x = _mm512_set1_epi32(unsafe { a.add(r * t.lda).cast::<i32>().read_unaligned() });
            for (acc, &bv) in acc.iter_mut().zip(&bv) {
                *acc = _mm512_dpbusd_epi32(*acc, x, bv);
            }
        }
        a = a.wrapping_add(4);
        b = b.wrapping_add(64 * V);
    }
    for (r, acc) in acc.iter().enumerate().take(t.rows) {
        // SAFETY (all in this loop): `r < rows`, `c0 < cols <= V * 16`, and the masks keep the
        // output's loads and stores to columns `< cols`.
        let s = _mm512_set1_ps(unsafe { *t.sa.add(r) });
        let orow = unsafe { t.out.add(r * t.ldo) };
        for (v, &acc) in acc.iter().enumerate() {
            let c0 = v * LANES;
            if c0 >= t.cols {
                break;
            }
            let mask: __mmask16 = if t.cols - c0 >= LANES {
                0xffff
            } else {
                (1u16 << (t.cols - c0)) - 1
            };
            let (corr, sw) = unsafe {
                (
                    _mm512_loadu_si512(t.corr.add(c0).cast()),
                    _mm512_loadu_ps(t.sw.add(c0)),
                )
            };
            let x = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, corr));
            let mut y = _mm512_mul_ps(_mm512_mul_ps(x, sw), s);
            let o = unsafe { orow.add(c0) };
            if t.accumulate {
                y = _mm512_add_ps(y, unsafe { _mm512_maskz_loadu_ps(mask, o) });
            }
            unsafe { _mm512_mask_storeu_ps(o, mask, y) };
        }
    }
}
