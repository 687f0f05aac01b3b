//! Runtime dispatch for our element-wise kernels.
//!
//! The binary targets plain x86-64, so loops compiled normally only get SSE2. [`simd_dispatch!`]
//! compiles a kernel body again inside `#[target_feature]` functions (AVX-512, AVX2+FMA) and picks
//! the best one the running CPU has; the compiler then vectorises the same Rust code with wide
//! registers. Kernel bodies are written as plain loops over fixed-width lanes so they vectorise.

/// Lanes the element-wise kernels accumulate in (one AVX-512 register of `f32`).
pub const LANES: usize = 16;

#[cfg(target_arch = "x86_64")]
pub fn has_avx512() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512dq")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("fma")
    })
}

#[cfg(target_arch = "x86_64")]
pub fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// `simd_dispatch!(pub fn name(a: A, b: B) -> R => body_fn);` defines `name`, which runs
/// `body_fn` (an `#[inline(always)]` function) compiled for the widest vector unit available.
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:path) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn narrow($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if $crate::cpu::simd::has_avx512() {
                    // SAFETY: the CPU reports every feature `wide` is compiled for.
                    return unsafe { wide($($arg),*) };
                }
                if $crate::cpu::simd::has_avx2() {
                    // SAFETY: the CPU reports every feature `narrow` is compiled for.
                    return unsafe { narrow($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

pub(crate) use simd_dispatch;
