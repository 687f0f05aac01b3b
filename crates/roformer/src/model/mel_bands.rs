//! Mel-Band RoFormer's band layout: which STFT bins each mel band covers.
//!
//! MSST builds it from `librosa.filters.mel(sr=sample_rate, n_fft=stft_n_fft, n_mels=num_bands)`
//! (Slaney mel scale, Slaney area normalisation, fmin 0, fmax sr/2; float64 arithmetic stored as
//! float32), forces `fb[0][0] = 1` and `fb[-1][-1] = 1`, and takes `fb > 0` as band membership.
//! Bands overlap: every bin belongs to one or more bands, and the masks estimated for a bin are
//! averaged over the bands that contain it.
//!
//! The filterbank below repeats librosa's and numpy's arithmetic operation for operation
//! (`np.linspace`, `np.fft.rfftfreq`, the ramps, the float32 store and the in-place
//! normalisation), so the bins at band edges come out as in Python.

/// librosa's Slaney mel scale constants.
const F_SP: f64 = 200.0 / 3.0;
const MIN_LOG_HZ: f64 = 1000.0;

fn min_log_mel() -> f64 {
    (MIN_LOG_HZ - 0.0) / F_SP
}

fn logstep() -> f64 {
    6.4f64.ln() / 27.0
}

/// `librosa.hz_to_mel(f, htk=False)` for a scalar.
fn hz_to_mel(frequency: f64) -> f64 {
    if frequency >= MIN_LOG_HZ {
        min_log_mel() + (frequency / MIN_LOG_HZ).ln() / logstep()
    } else {
        (frequency - 0.0) / F_SP
    }
}

/// `librosa.mel_to_hz(m, htk=False)`.
fn mel_to_hz(mel: f64) -> f64 {
    if mel >= min_log_mel() {
        MIN_LOG_HZ * (logstep() * (mel - min_log_mel())).exp()
    } else {
        0.0 + F_SP * mel
    }
}

/// `np.linspace(start, stop, num)` (endpoint included) as numpy evaluates it.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 0 {
        return Vec::new();
    }
    if num == 1 {
        return vec![start];
    }
    let div = (num - 1) as f64;
    let delta = stop - start;
    let step = delta / div;
    let mut y: Vec<f64> = (0..num)
        .map(|i| {
            let i = i as f64;
            if step == 0.0 {
                i / div * delta + start
            } else {
                i * step + start
            }
        })
        .collect();
    y[num - 1] = stop;
    y
}

/// `np.fft.rfftfreq(n_fft, d=1.0 / sr)`.
fn fft_frequencies(sample_rate: f64, n_fft: usize) -> Vec<f64> {
    let val = 1.0 / (n_fft as f64 * (1.0 / sample_rate));
    (0..n_fft / 2 + 1).map(|k| k as f64 * val).collect()
}

/// `librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)`: `[n_mels][1 + n_fft / 2]`.
pub fn mel_filterbank(sample_rate: f64, n_fft: usize, n_mels: usize) -> Vec<Vec<f32>> {
    let fft_freqs = fft_frequencies(sample_rate, n_fft);
    let fmax = sample_rate / 2.0;
    let mel_f: Vec<f64> = linspace(hz_to_mel(0.0), hz_to_mel(fmax), n_mels + 2)
        .into_iter()
        .map(mel_to_hz)
        .collect();
    (0..n_mels)
        .map(|i| {
            let (fdiff_lo, fdiff_hi) = (mel_f[i + 1] - mel_f[i], mel_f[i + 2] - mel_f[i + 1]);
            // Slaney area normalisation: `weights *= enorm` computes in float64 and stores float32.
            let enorm = 2.0 / (mel_f[i + 2] - mel_f[i]);
            fft_freqs
                .iter()
                .map(|&f| {
                    let lower = -(mel_f[i] - f) / fdiff_lo;
                    let upper = (mel_f[i + 2] - f) / fdiff_hi;
                    let w = lower.min(upper).max(0.0) as f32;
                    (w as f64 * enorm) as f32
                })
                .collect()
        })
        .collect()
}

/// Band membership of the STFT bins, as MSST's `MelBandRoformer.__init__` derives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MelBands {
    /// Ascending frequency bins of each band.
    pub bands: Vec<Vec<usize>>,
    /// How many bands contain each bin (`num_bands_per_freq`), all at least 1.
    pub bands_per_freq: Vec<usize>,
}

impl MelBands {
    /// The bands of `num_bands` mel filters over an `n_fft`-point STFT at `sample_rate`.
    ///
    /// Errors (with a message for the config) when a bin or a band is left empty.
    pub fn new(sample_rate: u32, n_fft: usize, num_bands: usize) -> Result<Self, String> {
        if num_bands == 0 || n_fft < 2 {
            return Err(format!(
                "cannot build {num_bands} mel bands over an STFT of size {n_fft}"
            ));
        }
        let mut fb = mel_filterbank(sample_rate as f64, n_fft, num_bands);
        let bins = n_fft / 2 + 1;
        // MSST forces the first and last bins in (the filterbank leaves them at 0 or ~1e-18).
        fb[0][0] = 1.0;
        fb[num_bands - 1][bins - 1] = 1.0;
        let bands: Vec<Vec<usize>> = fb
            .iter()
            .map(|row| (0..bins).filter(|&f| row[f] > 0.0).collect())
            .collect();
        let mut bands_per_freq = vec![0usize; bins];
        for band in &bands {
            for &f in band {
                bands_per_freq[f] += 1;
            }
        }
        let uncovered: Vec<usize> = (0..bins).filter(|&f| bands_per_freq[f] == 0).collect();
        if !uncovered.is_empty() {
            return Err(format!(
                "{num_bands} mel bands at {sample_rate} Hz leave {} of the {bins} STFT bins \
                 (n_fft {n_fft}) uncovered (first: {:?}); MSST requires every bin in a band",
                uncovered.len(),
                &uncovered[..uncovered.len().min(8)]
            ));
        }
        if let Some(i) = bands.iter().position(Vec::is_empty) {
            return Err(format!(
                "mel band {i} of {num_bands} covers no STFT bin (n_fft {n_fft}, {sample_rate} Hz): \
                 too many mel bands for this FFT size"
            ));
        }
        Ok(Self {
            bands,
            bands_per_freq,
        })
    }

    pub fn num_bands(&self) -> usize {
        self.bands.len()
    }

    pub fn num_freqs(&self) -> usize {
        self.bands_per_freq.len()
    }

    /// MSST's `freq_indices`: for every band in order, each of its bins and each channel, the row
    /// of the `(f s)` channel-interleaved spectrogram (`f * channels + s`).
    pub fn freq_indices(&self, channels: usize) -> Vec<usize> {
        self.bands
            .iter()
            .flatten()
            .flat_map(|&f| (0..channels).map(move |s| f * channels + s))
            .collect()
    }

    /// Width of each band's input vector: `2 * channels * bins` (`[freq][channel][re, im]`).
    pub fn band_input_dims(&self, channels: usize) -> Vec<usize> {
        self.bands.iter().map(|b| 2 * channels * b.len()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_keeps_its_endpoints() {
        let y = linspace(0.0, 3.0, 4);
        assert_eq!(y, vec![0.0, 1.0, 2.0, 3.0]);
        let y = linspace(0.0, 0.1, 7);
        assert_eq!(y[6], 0.1);
    }

    #[test]
    fn mel_scale_round_trips() {
        for hz in [0.0, 440.0, 999.0, 1000.0, 8000.0, 22050.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9 * hz.max(1.0));
        }
        // Slaney: linear below 1 kHz.
        assert!((hz_to_mel(200.0) - 3.0).abs() < 1e-12);
    }

    #[test]
    fn every_bin_is_covered_and_bands_overlap() {
        let bands = MelBands::new(44100, 2048, 60).unwrap();
        assert_eq!(bands.num_bands(), 60);
        assert_eq!(bands.num_freqs(), 1025);
        assert!(bands.bands_per_freq.iter().all(|&n| n >= 1));
        assert!(bands.bands_per_freq.iter().any(|&n| n >= 2));
        assert!(bands.bands[0].contains(&0));
        assert!(bands.bands[59].contains(&1024));
        // Stereo indices interleave the channels of each bin.
        let idx = bands.freq_indices(2);
        assert_eq!(&idx[..2], &[0, 1]);
        assert_eq!(
            idx.len(),
            2 * bands.bands.iter().map(Vec::len).sum::<usize>()
        );
    }

    #[test]
    fn too_many_bands_for_the_fft_is_an_error() {
        let err = MelBands::new(44100, 64, 60).unwrap_err();
        assert!(
            err.contains("mel band") || err.contains("uncovered"),
            "{err}"
        );
    }
}
