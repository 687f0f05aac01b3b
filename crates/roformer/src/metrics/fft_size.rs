//! FFT lengths that rustfft transforms quickly.

/// The smallest `2^a 3^b 5^c` that is at least `n` (and at least 2).
pub(crate) fn fast_fft_len(n: usize) -> usize {
    let n = n.max(2);
    let mut best = n.next_power_of_two();
    let mut p5 = 1usize;
    while p5 < best {
        let mut p35 = p5;
        while p35 < best {
            let mut m = p35;
            while m < n {
                m *= 2;
            }
            best = best.min(m);
            p35 *= 3;
        }
        p5 *= 5;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_sizes() {
        assert_eq!(fast_fft_len(1), 2);
        assert_eq!(fast_fft_len(1000), 1000);
        assert_eq!(fast_fft_len(1001), 1024);
        assert_eq!(fast_fft_len(44100 + 511), 45000);
        assert_eq!(fast_fft_len(17), 18);
    }
}
