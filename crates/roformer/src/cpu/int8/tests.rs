use super::*;

/// splitmix64: a small deterministic generator for test data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn uniform(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n)
            .map(|_| lo + (hi - lo) * self.unit() as f32)
            .collect()
    }
    /// Standard normal (Box-Muller).
    fn normal(&mut self, n: usize, sd: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let u = 1.0 - self.unit();
                let v = self.unit();
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32 * sd
            })
            .collect()
    }
}

/// Reference quantisation of one row, written out from the definition: the integers and the
/// scale.
fn ref_quant(row: &[f32]) -> (Vec<i64>, f32) {
    let mut max = 0.0f32;
    for &x in row {
        if x.abs() > max {
            max = x.abs();
        }
    }
    if max == 0.0 {
        return (vec![0; row.len()], 0.0);
    }
    let inv = 127.0f32 / max;
    let q = row
        .iter()
        .map(|&x| {
            let y = if inv.is_finite() {
                f64::from((x * inv).round_ties_even())
            } else {
                (f64::from(x) * (127.0 / f64::from(max))).round_ties_even()
            };
            y.clamp(-127.0, 127.0) as i64
        })
        .collect();
    (q, max / 127.0)
}

/// The expected product in f64 from the reference integers and scales: `(value, magnitude)` per
/// output, the magnitude being `|product| + |old|` (what the rounding error scales with).
fn expected(
    a: &[f32],
    m: usize,
    w: &[f32],
    n: usize,
    k: usize,
    old: &[f32],
    accumulate: bool,
) -> Vec<(f64, f64)> {
    let qa: Vec<_> = (0..m).map(|i| ref_quant(&a[i * k..(i + 1) * k])).collect();
    let qw: Vec<_> = (0..n).map(|j| ref_quant(&w[j * k..(j + 1) * k])).collect();
    let mut e = Vec::with_capacity(m * n);
    for (i, (xa, sa)) in qa.iter().enumerate() {
        for (j, (xw, sw)) in qw.iter().enumerate() {
            let acc: i64 = xa.iter().zip(xw).map(|(x, y)| x * y).sum();
            let prod = f64::from(*sa) * f64::from(*sw) * acc as f64;
            let o = if accumulate {
                f64::from(old[i * n + j])
            } else {
                0.0
            };
            e.push((prod + o, prod.abs() + o.abs()));
        }
    }
    e
}

/// Every kernel there is, and whether this CPU runs it.
fn all_paths() -> Vec<(Path, bool)> {
    let p = [
        Path::Portable,
        #[cfg(target_arch = "x86_64")]
        Path::Avx2,
        #[cfg(target_arch = "x86_64")]
        Path::AvxVnni,
        #[cfg(target_arch = "x86_64")]
        Path::Avx512Vnni,
    ];
    p.into_iter().map(|p| (p, p.available())).collect()
}

/// The kernels this CPU runs (the others are reported and skipped).
fn paths() -> Vec<Path> {
    all_paths()
        .into_iter()
        .filter_map(|(p, ok)| {
            if !ok {
                eprintln!("{p:?}: not on this CPU, not tested");
            }
            ok.then_some(p)
        })
        .collect()
}

/// Runs one product on `path` both serially and through the parallel driver and checks it
/// against the f64 reference within f32 rounding.
fn check(path: Path, a: &[f32], m: usize, w: &[f32], n: usize, k: usize, rng: &mut Rng) {
    let wq = Int8Matrix::quantize(w, n, k);
    for j in 0..n {
        let (q, s) = ref_quant(&w[j * k..(j + 1) * k]);
        assert_eq!(wq.scales[j].to_bits(), s.to_bits(), "weight scale {j}");
        for (c, &q) in q.iter().enumerate() {
            assert_eq!(i64::from(wq.q(j, c)), q, "weight ({j}, {c})");
        }
    }
    for accumulate in [false, true] {
        let old = rng.uniform(m * n, -2.0, 2.0);
        let want = expected(a, m, w, n, k, &old, accumulate);
        for parallel in [false, true] {
            let mut out = old.clone();
            matmul_with(a, m, &wq, &mut out, accumulate, path, parallel);
            for (idx, (&got, &(e, mag))) in out.iter().zip(&want).enumerate() {
                let tol = 1e-6 * mag + f64::from(f32::MIN_POSITIVE);
                assert!(
                    (f64::from(got) - e).abs() <= tol,
                    "{path:?} m={m} k={k} n={n} acc={accumulate} par={parallel} at \
                     ({}, {}): got {got}, want {e}",
                    idx / n,
                    idx % n
                );
            }
        }
    }
}

const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (1, 3, 5),
    (2, 4, 16),
    (3, 7, 17),
    (7, 5, 47),
    (8, 8, 48),
    (9, 12, 49),
    (13, 33, 95),
    (17, 64, 96),
    (5, 100, 97),
    (20, 129, 130),
    (33, 256, 200),
    (1, 512, 1544),
    // Big enough for the parallel driver (> 1M multiply-adds) with odd edges everywhere.
    (131, 261, 99),
    (203, 130, 1544),
];

#[test]
fn exact_on_small_and_odd_shapes() {
    let mut rng = Rng(1);
    for path in paths() {
        for &(m, k, n) in SHAPES {
            let a = rng.normal(m * k, 1.0);
            let w = rng.uniform(n * k, -0.3, 0.3);
            check(path, &a, m, &w, n, k, &mut rng);
        }
    }
}

#[test]
fn exact_with_zeros_subnormals_and_huge_rows() {
    let mut rng = Rng(2);
    let (m, k, n) = (19, 37, 53);
    let mut a = rng.normal(m * k, 1.0);
    let mut w = rng.uniform(n * k, -1.0, 1.0);
    // Zero rows, subnormal rows, rows of tiny normals (127 / max overflows f32), huge rows,
    // and single spikes.
    a[..k].fill(0.0);
    for (i, x) in a[k..2 * k].iter_mut().enumerate() {
        *x = f32::from_bits(i as u32 * 977 % 8_000_000) * if i % 2 == 0 { 1.0 } else { -1.0 };
    }
    for x in &mut a[2 * k..3 * k] {
        *x *= 1e-37;
    }
    for x in &mut a[3 * k..4 * k] {
        *x *= 1e33;
    }
    a[4 * k..5 * k].fill(0.0);
    a[4 * k + 7] = -3.0;
    w[..k].fill(0.0);
    for x in &mut w[k..2 * k] {
        *x *= 1e-39;
    }
    for x in &mut w[2 * k..3 * k] {
        *x *= 1e-37;
    }
    w[3 * k..4 * k].fill(-0.0);
    for path in paths() {
        check(path, &a, m, &w, n, k, &mut rng);
        let wq = Int8Matrix::quantize(&w, n, k);
        let mut out = vec![f32::NAN; m * n];
        matmul_with(&a, m, &wq, &mut out, false, path, true);
        assert!(
            out.iter().all(|v| v.is_finite()),
            "{path:?}: non-finite output"
        );
        assert!(out[..n].iter().all(|&v| v == 0.0), "{path:?}: zero row");
        assert!(
            out.iter().step_by(n).all(|&v| v == 0.0),
            "{path:?}: zero column"
        );
    }
}

#[test]
fn empty_and_degenerate_sizes() {
    for path in paths() {
        // m = 0: nothing is touched.
        let w = Int8Matrix::quantize(&[1.0, 2.0, 3.0], 1, 3);
        let mut out = vec![5.0f32; 2];
        matmul_with(&[], 0, &w, &mut out, false, path, true);
        assert_eq!(out, [5.0, 5.0]);
        // k = 0: zeros, or the old values when accumulating.
        let w = Int8Matrix::quantize(&[], 3, 0);
        let mut out = vec![5.0f32; 6];
        matmul_with(&[], 2, &w, &mut out, true, path, true);
        assert_eq!(out, [5.0; 6]);
        matmul_with(&[], 2, &w, &mut out, false, path, true);
        assert_eq!(out, [0.0; 6]);
        // n = 0.
        let w = Int8Matrix::quantize(&[], 0, 4);
        let mut out: Vec<f32> = vec![];
        matmul_with(&[1.0; 8], 2, &w, &mut out, false, path, true);
        // Extra room in the buffers is left alone.
        let w = Int8Matrix::quantize(&[1.0, -1.0], 1, 2);
        let mut out = vec![9.0f32; 3];
        matmul_with(&[2.0, 1.0, 7.0], 1, &w, &mut out, false, path, true);
        assert_eq!(out[1..], [9.0, 9.0]);
        assert!((out[0] - 1.0).abs() < 0.02, "{}", out[0]);
    }
}

#[test]
fn every_kernel_matches_portable_bit_for_bit() {
    let mut rng = Rng(3);
    for &(m, k, n) in &[(37, 512, 1544), (64, 2048, 100), (100, 513, 512)] {
        let a = rng.normal(m * k, 1.0);
        let w = Int8Matrix::quantize(&rng.normal(n * k, 0.05), n, k);
        let old = rng.normal(m * n, 1.0);
        for accumulate in [false, true] {
            let mut x = old.clone();
            matmul_with(&a, m, &w, &mut x, accumulate, Path::Portable, true);
            for path in paths() {
                let mut y = old.clone();
                matmul_with(&a, m, &w, &mut y, accumulate, path, true);
                assert!(
                    x.iter().zip(&y).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{path:?} m={m} k={k} n={n} accumulate={accumulate}"
                );
            }
        }
    }
}

#[test]
fn snr_against_the_float_product() {
    let mut rng = Rng(4);
    for &(m, k, n) in &[(256, 512, 512), (256, 2048, 512), (256, 512, 1544)] {
        let a = rng.normal(m * k, 1.0);
        let w = rng.normal(n * k, 1.0 / (k as f32).sqrt());
        let wq = Int8Matrix::quantize(&w, n, k);
        let mut out = vec![0.0f32; m * n];
        matmul(&a, m, &wq, &mut out, false);
        let (mut signal, mut noise) = (0.0f64, 0.0f64);
        for i in 0..m {
            for j in 0..n {
                let r: f64 = (0..k)
                    .map(|c| f64::from(a[i * k + c]) * f64::from(w[j * k + c]))
                    .sum();
                signal += r * r;
                noise += (r - f64::from(out[i * n + j])).powi(2);
            }
        }
        let snr = 10.0 * (signal / noise).log10();
        println!("int8 SNR m={m} k={k} n={n}: {snr:.1} dB");
        assert!(snr >= 35.0, "SNR {snr:.1} dB");
    }
}

/// CPU time of all this process's threads (Linux; `None` elsewhere): with other work on the
/// machine, ops per CPU second tells the kernel's speed where wall time cannot.
fn cpu_seconds() -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 * 1e-9)
}

/// Seconds per call by wall time and by CPU time: the best of 3 rounds (after a warm-up), each
/// repeating the call for at least half a second (CPU time of running threads is only
/// accounted now and then).
fn timed(mut f: impl FnMut()) -> (f64, f64) {
    f();
    let (mut wall, mut cpu) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..3 {
        let c = cpu_seconds();
        let t = std::time::Instant::now();
        let mut calls = 0;
        while calls == 0 || t.elapsed().as_secs_f64() < 0.5 {
            f();
            calls += 1;
        }
        wall = wall.min(t.elapsed().as_secs_f64() / calls as f64);
        if let (Some(c0), Some(c1)) = (c, cpu_seconds()) {
            cpu = cpu.min((c1 - c0) / calls as f64);
        }
    }
    (wall, cpu)
}

/// `cargo test -p roformer --release --lib cpu::int8 -- --ignored --nocapture --test-threads=1`
///
/// Prints GOP/s (2 ops per multiply-add) by wall time and per CPU second (the per-core rate,
/// which stays meaningful when other processes share the cores).
#[test]
#[ignore]
fn throughput() {
    use crate::cpu::{Precision, Weight};

    let mut rng = Rng(5);
    let m = 8192;
    let all = rayon::current_num_threads();
    println!("int8 kernel: {:?}", Path::detect());
    // Both pools live through the whole test: a pool's threads winding down would take their
    // CPU time out of the sum while another measurement runs.
    let pools: Vec<_> = [1, all]
        .into_iter()
        .map(|t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
        })
        .collect();
    for &(k, n) in &[(512, 2048), (2048, 512), (512, 1544), (512, 512)] {
        let a = rng.normal(m * k, 1.0);
        let w = rng.normal(n * k, 0.05);
        let wq = Int8Matrix::quantize(&w, n, k);
        let wf = Weight::new(w.clone(), n, k, Precision::F32);
        let mut out = vec![0.0f32; m * n];
        let gop = 2.0 * (m * n * k) as f64 * 1e-9;
        for pool in &pools {
            let threads = pool.current_num_threads();
            let ((iw, ic), (fw, fc)) = pool.install(|| {
                (
                    timed(|| matmul(&a, m, &wq, &mut out, false)),
                    timed(|| wf.matmul(&a, m, &mut out, false)),
                )
            });
            println!(
                "m={m} k={k} n={n} threads={threads}: int8 {:.0} GOP/s ({:.0} per CPU second), \
                 f32 {:.0} GFLOP/s ({:.0} per CPU second)",
                gop / iw,
                gop / ic,
                gop / fw,
                gop / fc,
            );
        }
    }
    // Every kernel on one thread (the portable one on fewer rows).
    let (k, n) = (512, 2048);
    let wq = Int8Matrix::quantize(&rng.normal(n * k, 0.05), n, k);
    for path in paths() {
        let m = if path == Path::Portable { 256 } else { 4096 };
        let a = rng.normal(m * k, 1.0);
        let mut out = vec![0.0f32; m * n];
        let (wall, cpu) = timed(|| matmul_with(&a, m, &wq, &mut out, false, path, false));
        let gop = 2.0 * (m * n * k) as f64 * 1e-9;
        println!(
            "{path:?} m={m} k={k} n={n} threads=1: {:.1} GOP/s ({:.1} per CPU second)",
            gop / wall,
            gop / cpu
        );
    }
}

/// The AVX-512 micro-kernel alone on a tile and panel that stay in L1 (k = 512): the ceiling
/// the whole product approaches.
#[cfg(target_arch = "x86_64")]
#[test]
#[ignore]
fn micro_kernel_peak() {
    if !avx512::available() {
        eprintln!("no AVX-512 VNNI here: skipped");
        return;
    }
    let kp = 512;
    let q = vec![130u8; MR * kp];
    let b = vec![3i8; kp * NR];
    let mut out = vec![0.0f32; MR * NR];
    let (sa, sw, corr) = (vec![1.0f32; MR], vec![1.0f32; NR], vec![0i32; NR]);
    let tile = avx512::Tile {
        a: q.as_ptr(),
        lda: kp,
        b: b.as_ptr(),
        groups: kp / 4,
        out: out.as_mut_ptr(),
        ldo: NR,
        rows: MR,
        cols: NR,
        sa: sa.as_ptr(),
        sw: sw.as_ptr(),
        corr: corr.as_ptr(),
        accumulate: false,
    };
    let (wall, cpu) = timed(|| {
        for _ in 0..10_000 {
            // SAFETY: the CPU has the features (checked above); `tile` describes MR rows of
            // `kp` bytes, one full panel of `kp * NR` bytes and an `MR x NR` output.
            unsafe { avx512::micro::<MR, NV>(&tile) };
        }
    });
    let gop = 2.0 * (MR * NR * kp * 10_000) as f64 * 1e-9;
    println!(
        "micro-kernel {MR}x{NR}: {:.0} GOP/s ({:.0} per CPU second)",
        gop / wall,
        gop / cpu
    );
    assert_eq!(out[0], (130 * 3 * kp) as f32);
}
