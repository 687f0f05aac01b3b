//! The 256-bit kernels for x86-64 CPUs without AVX-512 VNNI, on the same packed weight:
//! - AVX-VNNI (`vpdpbusd` on ymm, e.g. Intel Alder Lake and later client cores): [`R`] rows x
//!   16 columns (one 64-byte weight vector as two ymm halves) per micro-tile;
//! - plain AVX2: the bytes widened to `i16` and multiplied with `vpmaddwd` (exact: no `i16`
//!   saturation, unlike `vpmaddubsw`), [`R`] rows x 8 columns per micro-tile, the pairs of
//!   partial sums folded with one `vphaddd` at the end.

use std::arch::x86_64::*;

use super::{panel_vectors, quantize_row_u8, Int8Matrix, RowQuant, NC_BYTES, NR};

/// Rows per micro-tile: 6 rows x 2 ymm accumulators, 2 weight registers and a broadcast fill
/// 15 of the 16 ymm registers.
const R: usize = 6;

/// Whether this CPU runs the kernel (`vnni`: the AVX-VNNI one, else the AVX2 one).
pub(super) fn available(vnni: bool) -> bool {
    is_x86_feature_detected!("avx2") && (!vnni || is_x86_feature_detected!("avxvnni"))
}

/// `out[m, n] (+)= a[m, k] . W^T` on the calling thread (`m` up to a block of rows).
pub(super) fn rows(
    a: &[f32],
    m: usize,
    w: &Int8Matrix,
    out: &mut [f32],
    accumulate: bool,
    vnni: bool,
) {
    assert!(available(vnni), "an AVX2 int8 kernel on a CPU without it");
    let (n, k, kp) = (w.rows, w.cols, w.kp);
    assert!(a.len() >= m * k && out.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    // Rows padded to whole tiles: the padding rows stay 128 (zero) and are never stored.
    let mp = m.next_multiple_of(R);
    let mut q = vec![128u8; mp * kp];
    let mut sa = vec![0.0f32; mp];
    for i in 0..m {
        // SAFETY: the CPU has AVX2 (asserted above).
        sa[i] = unsafe { quantize_row(&a[i * k..(i + 1) * k], &mut q[i * kp..(i + 1) * kp]) };
    }
    // `vpmaddwd` takes 16-bit lanes: the same numbers, widened once per block.
    let q16: Vec<i16> = if vnni {
        Vec::new()
    } else {
        q.iter().map(|&x| i16::from(x)).collect()
    };
    let (abase, lda) = if vnni {
        (q.as_ptr(), kp)
    } else {
        (q16.as_ptr().cast::<u8>(), 2 * kp)
    };
    let b = w.packed_bytes();
    let panels = n.div_ceil(NR);
    let per_block = (NC_BYTES / (NR * kp)).max(1);
    for p0 in (0..panels).step_by(per_block) {
        let p1 = (p0 + per_block).min(panels);
        for r0 in (0..m).step_by(R) {
            for p in p0..p1 {
                let vectors = panel_vectors(p, n);
                let c0 = p * NR;
                let panel_cols = (n - c0).min(NR);
                // VNNI: one tile per 64-byte vector (16 columns); AVX2: one per half (8).
                let width = if vnni { 16 } else { 8 };
                for s in 0..panel_cols.div_ceil(width) {
                    let c = s * width;
                    let tile = Tile {
                        // SAFETY (pointer arithmetic): row `r0 < m <= mp` of the buffer.
                        a: unsafe { abase.add(r0 * lda) },
                        lda,
                        b: b[c0 * kp + (c / 16) * 64 + (c % 16) * 4..].as_ptr(),
                        bstride: vectors * 64,
                        groups: kp / 4,
                        out: out[r0 * n + c0 + c..].as_mut_ptr(),
                        ldo: n,
                        rows: R.min(m - r0),
                        cols: (panel_cols - c).min(width),
                        sa: sa[r0..].as_ptr(),
                        sw: w.scales[c0 + c..].as_ptr(),
                        corr: w.corr[c0 + c..].as_ptr(),
                        accumulate,
                    };
                    // SAFETY: `tile` satisfies the kernels' contract:
                    // - `a`: rows `r0..r0 + R` of the (`u8` or `i16`) buffer exist (`mp` is a
                    //   multiple of R), `lda` bytes apart, each `kp == groups * 4` elements;
                    // - `b`: the panel starts at byte `c0 * kp` and holds `groups` strides of
                    //   `vectors * 64` bytes; the tile's 16 (or 8) columns start at byte
                    //   `(c / 16) * 64 + (c % 16) * 4 < vectors * 64` of each stride and take
                    //   64 (or 32) bytes, inside it;
                    // - `out`: rows `r0..r0 + rows` < m and columns `c0 + c + [0, cols)` <= n;
                    // - `sa` has `mp >= r0 + R` entries; `sw`/`corr` are padded to a multiple
                    //   of 16 columns, so the `width` entries from `c0 + c` exist.
                    // The CPU has the features (asserted above).
                    unsafe {
                        if vnni {
                            tile_vnni(&tile);
                        } else {
                            tile_madd(&tile);
                        }
                    }
                }
            }
        }
    }
}

/// Quantises one row like [`quantize_row_u8`] (the same integers), 32 values at a time.
///
/// # Safety
/// The CPU has AVX2.
#[target_feature(enable = "avx2")]
unsafe fn quantize_row(row: &[f32], dst: &mut [u8]) -> f32 {
    let k = row.len();
    assert!(dst.len() >= k);
    let src = row.as_ptr();
    let sign = _mm256_set1_ps(-0.0);
    let mut vmax = _mm256_setzero_ps();
    let full8 = k / 8 * 8;
    for i in (0..full8).step_by(8) {
        // SAFETY: 8 values from `i + 8 <= k`.
        let x = unsafe { _mm256_loadu_ps(src.add(i)) };
        vmax = _mm256_max_ps(vmax, _mm256_andnot_ps(sign, x));
    }
    let mut lanes = [0.0f32; 8];
    // SAFETY: `lanes` holds 8 floats.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), vmax) };
    let max = row[full8..]
        .iter()
        .chain(&lanes)
        .fold(0.0f32, |m, v| m.max(v.abs()));
    let rq = RowQuant::new(max);
    let RowQuant::F32 { scale, inv } = rq else {
        // Zero and tiny rows (rare): the scalar code.
        return quantize_row_u8(row, dst);
    };
    let vinv = _mm256_set1_ps(inv);
    let (lo, hi, bias) = (
        _mm256_set1_epi32(-127),
        _mm256_set1_epi32(127),
        _mm256_set1_epi32(128),
    );
    // `vcvtps2dq` rounds to nearest even under the default MXCSR, like `round_ties_even`.
    let quant = |x: __m256| {
        let q = _mm256_cvtps_epi32(_mm256_mul_ps(x, vinv));
        _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(q, lo), hi), bias)
    };
    // Bytes of 4 vectors after the in-lane packs, back in order.
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let full32 = k / 32 * 32;
    let dp = dst.as_mut_ptr();
    for i in (0..full32).step_by(32) {
        // SAFETY: 32 values of `row` and 32 bytes of `dst` from `i + 32 <= k <= dst.len()`.
        unsafe {
            let v: [__m256i; 4] =
                std::array::from_fn(|j| quant(_mm256_loadu_ps(src.add(i + 8 * j))));
            let p01 = _mm256_packs_epi32(v[0], v[1]);
            let p23 = _mm256_packs_epi32(v[2], v[3]);
            let bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(p01, p23), order);
            _mm256_storeu_si256(dp.add(i).cast(), bytes);
        }
    }
    for (d, &x) in dst[full32..k].iter_mut().zip(&row[full32..]) {
        *d = (rq.quantize(x) + 128) as u8;
    }
    dst[k..].fill(128);
    scale
}

/// One micro-tile: up to `R` rows x up to 16 (VNNI) or 8 (AVX2) columns, over all `k`.
struct Tile {
    /// `R` rows of `groups * 4` quantised activations (`q + 128`; `u8` for VNNI, `i16` for
    /// AVX2), `lda` bytes apart.
    a: *const u8,
    lda: usize,
    /// The tile's first column in the panel's first group; groups `bstride` bytes apart.
    b: *const i8,
    bstride: usize,
    groups: usize,
    /// Output of the tile's first row and column, rows `ldo` floats apart.
    out: *mut f32,
    ldo: usize,
    /// Rows (<= R) and columns (<= the tile's width) to store.
    rows: usize,
    cols: usize,
    /// `R` row scales; the tile's column scales and column corrections.
    sa: *const f32,
    sw: *const f32,
    corr: *const i32,
    accumulate: bool,
}

/// `vpdpbusd` (AVX-VNNI) on `R x 2` ymm accumulators: 16 columns.
///
/// # Safety
/// The CPU has AVX2 and AVX-VNNI, and the tile's pointers are valid as its fields describe:
/// `a + r * lda + [0, groups * 4)` readable for `r < R`, `b + g * bstride + [0, 64)` readable
/// for `g < groups`, `out + r * ldo + [0, cols)` writable (and readable when accumulating) for
/// `r < rows`, `sa + [0, rows)`, `sw + [0, 16)` and `corr + [0, 16)` readable.
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn tile_vnni(t: &Tile) {
    let mut acc = [[_mm256_setzero_si256(); 2]; R];
    let (mut a, mut b) = (t.a, t.b);
    for _ in 0..t.groups {
        // SAFETY (all in this loop): inside the 64 bytes of this group's stride and the
        // `groups * 4` bytes of each row, by the contract.
        let (b0, b1) = unsafe {
            (
                _mm256_loadu_si256(b.cast()),
                _mm256_loadu_si256(b.add(32).cast()),
            )
        };
        for (r, acc) in acc.iter_mut().enumerate() {
            let x = _mm256_set1_epi32(unsafe { a.add(r * t.lda).cast::<i32>().read_unaligned() });
            acc[0] = _mm256_dpbusd_avx_epi32(acc[0], x, b0);
            acc[1] = _mm256_dpbusd_avx_epi32(acc[1], x, b1);
        }
        a = a.wrapping_add(4);
        b = b.wrapping_add(t.bstride);
    }
    for (r, acc) in acc.iter().enumerate().take(t.rows) {
        for (h, &acc) in acc.iter().enumerate() {
            let c = 8 * h;
            if c < t.cols {
                // SAFETY: row `r < rows`, columns `c + [0, min(8, cols - c))`, by the contract.
                unsafe { store8(t, acc, r, c) };
            }
        }
    }
}

/// `vpmaddwd` (AVX2) on `R x 2` ymm accumulators of pairs: 8 columns.
///
/// # Safety
/// The CPU has AVX2, and the tile's pointers are valid as its fields describe: `a + r * lda +
/// [0, groups * 8)` readable for `r < R` (`i16` activations), `b + g * bstride + [0, 32)`
/// readable for `g < groups`, `out + r * ldo + [0, cols)` writable (and readable when
/// accumulating) for `r < rows`, `sa + [0, rows)`, `sw + [0, 8)` and `corr + [0, 8)` readable.
#[target_feature(enable = "avx2")]
unsafe fn tile_madd(t: &Tile) {
    // Lane pairs (k0 + k1, k2 + k3) of columns 0..4 and 4..8.
    let mut lo = [_mm256_setzero_si256(); R];
    let mut hi = [_mm256_setzero_si256(); R];
    let (mut a, mut b) = (t.a, t.b);
    for _ in 0..t.groups {
        // SAFETY (all in this loop): inside the 32 bytes of this group's stride and the
        // `groups * 8` bytes of each row, by the contract.
        let (b0, b1) = unsafe {
            (
                _mm256_cvtepi8_epi16(_mm_loadu_si128(b.cast())),
                _mm256_cvtepi8_epi16(_mm_loadu_si128(b.add(16).cast())),
            )
        };
        for r in 0..R {
            let x = _mm256_set1_epi64x(unsafe { a.add(r * t.lda).cast::<i64>().read_unaligned() });
            lo[r] = _mm256_add_epi32(lo[r], _mm256_madd_epi16(x, b0));
            hi[r] = _mm256_add_epi32(hi[r], _mm256_madd_epi16(x, b1));
        }
        a = a.wrapping_add(8);
        b = b.wrapping_add(t.bstride);
    }
    for r in 0..t.rows {
        // [c0 c1 c4 c5 | c2 c3 c6 c7] -> columns in order.
        let acc = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_hadd_epi32(lo[r], hi[r]));
        // SAFETY: row `r < rows`, columns `[0, min(8, cols))`, by the contract.
        unsafe { store8(t, acc, r, 0) };
    }
}

/// The epilogue of 8 columns `c..` of row `r`: `(f32(acc - corr) * sw) * sa` (plus the old
/// output), stored to the columns `< cols`.
///
/// # Safety
/// The CPU has AVX2; `r < t.rows`, `c < t.cols`, and `t.sw`/`t.corr` have 8 entries from `c`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn store8(t: &Tile, acc: __m256i, r: usize, c: usize) {
    let left = (t.cols - c).min(8) as i32;
    let mask = _mm256_cmpgt_epi32(
        _mm256_set1_epi32(left),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    );
    // SAFETY: by the contract; the mask keeps the output's loads and stores to the `left`
    // columns that exist (masked-off lanes are not accessed).
    unsafe {
        let corr = _mm256_loadu_si256(t.corr.add(c).cast());
        let sw = _mm256_loadu_ps(t.sw.add(c));
        let sa = _mm256_set1_ps(*t.sa.add(r));
        let x = _mm256_cvtepi32_ps(_mm256_sub_epi32(acc, corr));
        let mut y = _mm256_mul_ps(_mm256_mul_ps(x, sw), sa);
        let o = t.out.add(r * t.ldo + c);
        if t.accumulate {
            y = _mm256_add_ps(y, _mm256_maskload_ps(o, mask));
        }
        _mm256_maskstore_ps(o, mask, y);
    }
}
