//! glibc malloc settings for the binary's large, short-lived buffers.
//!
//! By default glibc serves blocks above a (dynamic, at most 32 MiB) threshold with `mmap` and
//! gives freed heap tops back to the kernel at once, so a network that allocates a few hundred
//! MiB of activations per layer gets them back as fresh pages to fault in and zero: a fifth of
//! HT Demucs' time at its released shape (`perf`). Keeping freed memory in the process makes a
//! chunk about 14% faster there for about 90 MiB more peak RSS (BENCHMARKS.md). Raising the mmap
//! threshold is not enough: it stops at 32 MiB, and HT Demucs' first layers hold 40-190 MiB
//! blocks, so mmap is switched off altogether (a further 10% on Zen 5 for 37 MiB more peak RSS).
//! glibc falls back to the main heap when a thread's arena cannot hold a block.

/// Serves every block from the heap and keeps up to 1 GiB of freed memory.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_memory() {
    const TRIM_THRESHOLD: libc::c_int = 1 << 30;
    const TOP_PAD: libc::c_int = 64 << 20;
    // SAFETY: mallopt only changes allocator parameters; it is called first thing in main,
    // before any other thread exists. A refused value (returns 0) leaves glibc's default.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        libc::mallopt(libc::M_TOP_PAD, TOP_PAD);
    }
}

/// Other allocators keep their defaults.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() {}
