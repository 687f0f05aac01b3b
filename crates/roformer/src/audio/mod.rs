//! The library's audio I/O: decoding any supported file to planar `f32`
//! ([`decode_file`], [`Decoder`]), sample-rate conversion ([`resample`],
//! [`StreamResampler`]), channel adaptation to what a model expects
//! ([`to_channels`]), and atomic writing of WAV/FLAC stems
//! ([`write_audio_atomic`], [`StreamWriter`]); each either on a whole signal
//! or block by block ([`TrackReader`], [`StreamWriter`]) with the same samples
//! and bytes.
//!
//! [`Audio`] and [`to_channels`] are always there; the file and resampling
//! code needs the `audio` cargo feature (on by default).
//!
//! Every fallible function returns an [`AudioError`] that names the file
//! involved; none of them panics on bad input.

#![warn(missing_docs)]

#[cfg(feature = "audio")]
mod decode;
#[cfg(feature = "audio")]
mod encode;
mod error;
#[cfg(feature = "audio")]
mod resample;
#[cfg(feature = "audio")]
mod track;

#[cfg(feature = "audio")]
pub use decode::{decode_file, Decoder};
#[cfg(feature = "audio")]
pub use encode::{write_audio_atomic, FlacDepth, OutputFormat, PcmFormat, StreamWriter};
pub use error::AudioError;
#[cfg(feature = "audio")]
pub use resample::{resample, resampled_len, StreamResampler};
#[cfg(feature = "audio")]
pub use track::TrackReader;

/// The extensions (lower case) that a search of a folder takes for audio files; a file named
/// explicitly is tried whatever its extension.
pub const AUDIO_EXTENSIONS: &[&str] = &[
    "wav", "wave", "flac", "mp3", "ogg", "oga", "m4a", "mp4", "aac", "aif", "aiff", "aifc", "caf",
    "mka", "mkv", "webm",
];

/// Whether the file's extension is one of [`AUDIO_EXTENSIONS`] (in any case).
pub fn has_audio_extension(path: &std::path::Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Decoded audio: planar `f32` samples, nominally in `[-1, 1]`.
///
/// Invariants (checked by every constructor): the sample rate is not 0, there
/// is at least one channel, and all channels have the same length (which may
/// be 0).
#[derive(Clone, Debug, PartialEq)]
pub struct Audio {
    /// Sample rate in Hz.
    sample_rate: u32,
    /// One vector of samples per channel, all of equal length.
    channels: Vec<Vec<f32>>,
}

impl Audio {
    /// Builds an `Audio` from planar samples, checking that the sample rate is
    /// non-zero, that there is at least one channel, and that all channels
    /// have the same length.
    pub fn new(sample_rate: u32, channels: Vec<Vec<f32>>) -> Result<Self, AudioError> {
        let audio = Audio {
            sample_rate,
            channels,
        };
        audio.validate()?;
        Ok(audio)
    }

    /// Builds an `Audio` from interleaved samples (frame after frame, one
    /// sample per channel in each): an error when `channels` is 0, when
    /// `samples` is not a whole number of frames, or when the sample rate is 0.
    pub fn from_interleaved(
        sample_rate: u32,
        channels: usize,
        samples: &[f32],
    ) -> Result<Self, AudioError> {
        if channels == 0 {
            return Err(AudioError::Invalid("no channels".into()));
        }
        if !samples.len().is_multiple_of(channels) {
            return Err(AudioError::Invalid(format!(
                "{} interleaved samples are not a whole number of {channels}-channel frames",
                samples.len()
            )));
        }
        let frames = samples.len() / channels;
        let planar = (0..channels)
            .map(|c| samples.iter().skip(c).step_by(channels).copied().collect())
            .collect::<Vec<Vec<f32>>>();
        debug_assert!(planar.iter().all(|c| c.len() == frames));
        Self::new(sample_rate, planar)
    }

    /// Sample rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Number of frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    /// Number of channels.
    pub fn num_channels(&self) -> usize {
        self.channels.len()
    }

    /// The samples, one vector per channel.
    pub fn channels(&self) -> &[Vec<f32>] {
        &self.channels
    }

    /// The samples of channel `i`. Panics if `i >= num_channels()`.
    pub fn channel(&self, i: usize) -> &[f32] {
        &self.channels[i]
    }

    /// The samples, one vector per channel.
    pub fn into_channels(self) -> Vec<Vec<f32>> {
        self.channels
    }

    /// The samples interleaved: frame after frame, one sample per channel in
    /// each (the inverse of [`from_interleaved`](Self::from_interleaved)).
    pub fn to_interleaved(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.frames() * self.num_channels());
        for i in 0..self.frames() {
            out.extend(self.channels.iter().map(|c| c[i]));
        }
        out
    }

    /// Shortens every channel to `frames` frames (no effect when it is not
    /// shorter already).
    pub fn truncate(&mut self, frames: usize) {
        for c in &mut self.channels {
            c.truncate(frames);
        }
    }

    /// Checks the invariants: non-zero sample rate, at least one channel, all
    /// channels of equal length.
    fn validate(&self) -> Result<(), AudioError> {
        let invalid = |m: String| Err(AudioError::Invalid(m));
        if self.sample_rate == 0 {
            return invalid("sample rate is 0 Hz".into());
        }
        if self.channels.is_empty() {
            return invalid("no channels".into());
        }
        let n = self.frames();
        if let Some((i, c)) = self.channels.iter().enumerate().find(|(_, c)| c.len() != n) {
            return invalid(format!(
                "channel {i} has {} samples but channel 0 has {n}",
                c.len()
            ));
        }
        Ok(())
    }
}

/// -3 dB, the ITU-R BS.775 weight of the centre and surround channels in a
/// stereo downmix.
const MINUS_3DB: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// Adapts `audio` to the `wanted` number of channels (the model's input
/// channel count). Returns the adapted audio and, when the channel layout was
/// changed, a human-readable note for the user.
///
/// * same count: returned unchanged, no note;
/// * mono to N channels: the mono channel is duplicated (note says so);
/// * more than two channels to stereo: standard ITU-R BS.775 downmix, assuming
///   the usual WAV/FLAC channel order for the channel count (3: L R C;
///   4: L R Ls Rs; 5: L R C Ls Rs; 6 (5.1): L R C LFE Ls Rs; 8 (7.1): L R C LFE
///   Lb Rb Ls Rs). Centre and surrounds are added at -3 dB, the LFE is dropped,
///   and each output row is normalised so that its coefficients sum to 1
///   (a full-scale input cannot clip). Other counts (7, more than 8): channels
///   with an even index are averaged into left, odd ones into right;
/// * several channels to mono: stereo is averaged `(L + R) / 2`; more than two
///   channels are first downmixed to stereo as above, then averaged;
/// * anything else (e.g. 6 to 4 channels): input channel `i` is averaged into
///   output channel `i % wanted`, or channels are repeated cyclically when more
///   are wanted.
///
/// `wanted == 0` is returned unchanged with a note.
pub fn to_channels(audio: Audio, wanted: usize) -> (Audio, Option<String>) {
    let have = audio.num_channels();
    if have == wanted {
        return (audio, None);
    }
    if wanted == 0 || have == 0 {
        let note = format!("cannot adapt {have} audio channel(s) to {wanted}; left unchanged");
        return (audio, Some(note));
    }
    let sample_rate = audio.sample_rate;
    if have == 1 {
        let mono = audio.channels.into_iter().next().unwrap_or_default();
        let note = format!("the input is mono: duplicated to {wanted} channels for the model");
        return (
            Audio {
                sample_rate,
                channels: vec![mono; wanted],
            },
            Some(note),
        );
    }
    match wanted {
        1 => {
            let stereo = if have == 2 {
                audio.channels
            } else {
                downmix_to_stereo(&audio.channels)
            };
            let mono = mix(&[(&stereo[0], 0.5), (&stereo[1], 0.5)]);
            let note = if have == 2 {
                "the model is mono: the stereo input was averaged to mono".to_string()
            } else {
                format!("the model is mono: the {have}-channel input was downmixed to mono")
            };
            (
                Audio {
                    sample_rate,
                    channels: vec![mono],
                },
                Some(note),
            )
        }
        2 => {
            let how = match have {
                3 | 4 | 5 | 6 | 8 => "ITU downmix, LFE dropped",
                _ => "even channels to left, odd to right",
            };
            let note = format!("the {have}-channel input was downmixed to stereo ({how})");
            (
                Audio {
                    sample_rate,
                    channels: downmix_to_stereo(&audio.channels),
                },
                Some(note),
            )
        }
        _ => {
            let channels = if wanted < have {
                (0..wanted)
                    .map(|o| {
                        let src: Vec<&Vec<f32>> =
                            audio.channels.iter().skip(o).step_by(wanted).collect();
                        let w = 1.0 / src.len() as f32;
                        mix(&src.iter().map(|c| (&c[..], w)).collect::<Vec<_>>())
                    })
                    .collect()
            } else {
                (0..wanted)
                    .map(|o| audio.channels[o % have].clone())
                    .collect()
            };
            let note = format!("the {have}-channel input was remapped to {wanted} channels");
            (
                Audio {
                    sample_rate,
                    channels,
                },
                Some(note),
            )
        }
    }
}

/// `(channel index, weight)` pairs making up one output channel.
type MixRow = Vec<(usize, f32)>;

/// Downmixes more than two channels to stereo (see [`to_channels`]).
fn downmix_to_stereo(ch: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let c = MINUS_3DB;
    // (channel index, weight) lists for left and right, by channel count.
    let (left, right): (MixRow, MixRow) = match ch.len() {
        // L R C
        3 => (vec![(0, 1.0), (2, c)], vec![(1, 1.0), (2, c)]),
        // L R Ls Rs (quad)
        4 => (vec![(0, 1.0), (2, c)], vec![(1, 1.0), (3, c)]),
        // L R C Ls Rs (5.0)
        5 => (
            vec![(0, 1.0), (2, c), (3, c)],
            vec![(1, 1.0), (2, c), (4, c)],
        ),
        // L R C LFE Ls Rs (5.1)
        6 => (
            vec![(0, 1.0), (2, c), (4, c)],
            vec![(1, 1.0), (2, c), (5, c)],
        ),
        // L R C LFE Lb Rb Ls Rs (7.1)
        8 => (
            vec![(0, 1.0), (2, c), (4, c), (6, c)],
            vec![(1, 1.0), (2, c), (5, c), (7, c)],
        ),
        n => {
            let even: Vec<usize> = (0..n).step_by(2).collect();
            let odd: Vec<usize> = (1..n).step_by(2).collect();
            let we = 1.0 / even.len() as f32;
            let wo = 1.0 / odd.len() as f32;
            (
                even.into_iter().map(|i| (i, we)).collect(),
                odd.into_iter().map(|i| (i, wo)).collect(),
            )
        }
    };
    let row = |spec: &[(usize, f32)]| {
        let total: f32 = spec.iter().map(|&(_, w)| w).sum();
        let terms: Vec<(&[f32], f32)> =
            spec.iter().map(|&(i, w)| (&ch[i][..], w / total)).collect();
        mix(&terms)
    };
    vec![row(&left), row(&right)]
}

/// Weighted sum of equally long channels.
fn mix(terms: &[(&[f32], f32)]) -> Vec<f32> {
    let n = terms.first().map_or(0, |(c, _)| c.len());
    let mut out = vec![0.0f32; n];
    for &(c, w) in terms {
        for (o, &x) in out.iter_mut().zip(c) {
            *o += w * x;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audio(channels: Vec<Vec<f32>>) -> Audio {
        Audio::new(44100, channels).unwrap()
    }

    #[test]
    fn frames_and_channels() {
        let a = audio(vec![vec![0.0; 10], vec![0.0; 10]]);
        assert_eq!(a.frames(), 10);
        assert_eq!(a.num_channels(), 2);
        assert!(Audio::new(44100, vec![vec![0.0; 10], vec![0.0; 9]]).is_err());
        assert!(Audio::new(0, vec![vec![0.0; 10]]).is_err());
        assert!(Audio::new(44100, vec![]).is_err());
        let e = Audio::new(44100, vec![vec![0.0; 10], vec![0.0; 9]]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid audio: channel 1 has 9 samples but channel 0 has 10"
        );
        assert_eq!(a.sample_rate(), 44100);
        assert_eq!(a.channels().len(), 2);
        assert_eq!(a.channel(1), &[0.0; 10][..]);
        assert_eq!(a.into_channels(), vec![vec![0.0; 10]; 2]);
    }

    #[test]
    fn interleave_round_trip() {
        // Three frames of stereo: (L, R) = (1, -1), (2, -2), (3, -3).
        let interleaved = [1.0, -1.0, 2.0, -2.0, 3.0, -3.0];
        let a = Audio::from_interleaved(48000, 2, &interleaved).unwrap();
        assert_eq!(
            (a.sample_rate(), a.num_channels(), a.frames()),
            (48000, 2, 3)
        );
        assert_eq!(a.channel(0), &[1.0, 2.0, 3.0][..]);
        assert_eq!(a.channel(1), &[-1.0, -2.0, -3.0][..]);
        assert_eq!(a.to_interleaved(), interleaved);
        // Three channels, two frames.
        let b = Audio::new(8000, vec![vec![0.1, 0.2], vec![0.3, 0.4], vec![0.5, 0.6]]).unwrap();
        assert_eq!(b.to_interleaved(), vec![0.1, 0.3, 0.5, 0.2, 0.4, 0.6]);
        assert_eq!(
            Audio::from_interleaved(8000, 3, &b.to_interleaved()).unwrap(),
            b
        );
        // Mono is the samples themselves; no samples is zero frames.
        let m = Audio::from_interleaved(22050, 1, &[0.5, -0.25]).unwrap();
        assert_eq!(m.channels(), &[vec![0.5, -0.25]]);
        let empty = Audio::from_interleaved(22050, 2, &[]).unwrap();
        assert_eq!((empty.num_channels(), empty.frames()), (2, 0));
        assert!(empty.to_interleaved().is_empty());
    }

    #[test]
    fn bad_interleaved_input_is_an_error() {
        let e = Audio::from_interleaved(44100, 0, &[1.0]).unwrap_err();
        assert!(matches!(e, AudioError::Invalid(_)), "{e}");
        assert_eq!(e.to_string(), "invalid audio: no channels");
        let e = Audio::from_interleaved(44100, 2, &[1.0, 2.0, 3.0]).unwrap_err();
        assert!(matches!(e, AudioError::Invalid(_)), "{e}");
        assert!(e.to_string().contains("3 interleaved samples"), "{e}");
        let e = Audio::from_interleaved(0, 2, &[1.0, 2.0]).unwrap_err();
        assert_eq!(e.to_string(), "invalid audio: sample rate is 0 Hz");
    }

    #[test]
    fn truncate_shortens_every_channel() {
        let mut a = audio(vec![vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]]);
        a.truncate(5);
        assert_eq!(a.frames(), 3);
        a.truncate(2);
        assert_eq!(a.channels(), &[vec![1.0, 2.0], vec![4.0, 5.0]]);
    }

    #[test]
    fn same_count_is_unchanged() {
        let a = audio(vec![vec![0.1, 0.2], vec![0.3, 0.4]]);
        let (b, note) = to_channels(a.clone(), 2);
        assert_eq!(a, b);
        assert!(note.is_none());
    }

    #[test]
    fn mono_is_duplicated() {
        let (b, note) = to_channels(audio(vec![vec![0.1, -0.2, 0.3]]), 2);
        assert_eq!(b.channels, vec![vec![0.1, -0.2, 0.3]; 2]);
        assert!(note.unwrap().contains("mono"));
    }

    #[test]
    fn stereo_to_mono_averages() {
        let (b, note) = to_channels(audio(vec![vec![1.0, 0.5], vec![0.0, -0.5]]), 1);
        assert_eq!(b.channels, vec![vec![0.5, 0.0]]);
        assert!(note.is_some());
    }

    #[test]
    fn surround_51_itu_downmix() {
        // L R C LFE Ls Rs: impulses in separate frames.
        let mut ch = vec![vec![0.0f32; 6]; 6];
        for (i, c) in ch.iter_mut().enumerate() {
            c[i] = 1.0;
        }
        let (b, note) = to_channels(audio(ch), 2);
        assert!(note.unwrap().contains("6-channel"));
        let norm = 1.0 + 2.0 * MINUS_3DB;
        let (l, r) = (&b.channels[0], &b.channels[1]);
        let close = |a: f32, b: f32| (a - b).abs() < 1e-6;
        // L only left, R only right.
        assert!(close(l[0], 1.0 / norm) && close(r[0], 0.0));
        assert!(close(l[1], 0.0) && close(r[1], 1.0 / norm));
        // Centre at -3 dB on both sides.
        assert!(close(l[2], MINUS_3DB / norm) && close(r[2], MINUS_3DB / norm));
        // LFE dropped.
        assert!(close(l[3], 0.0) && close(r[3], 0.0));
        // Surrounds on their side.
        assert!(close(l[4], MINUS_3DB / norm) && close(r[4], 0.0));
        assert!(close(l[5], 0.0) && close(r[5], MINUS_3DB / norm));
        // Full-scale everywhere cannot exceed 1.
        let (b, _) = to_channels(audio(vec![vec![1.0; 4]; 6]), 2);
        assert!(b.channels.iter().flatten().all(|&x| x <= 1.0 + 1e-6));
    }

    #[test]
    fn unknown_layout_alternates() {
        let ch: Vec<Vec<f32>> = (0..7).map(|i| vec![i as f32]).collect();
        let (b, note) = to_channels(audio(ch), 2);
        assert!(note.is_some());
        // even: 0 2 4 6 -> mean 3; odd: 1 3 5 -> mean 3
        assert!((b.channels[0][0] - 3.0).abs() < 1e-6);
        assert!((b.channels[1][0] - 3.0).abs() < 1e-6);
        // Surround to mono goes via stereo.
        let (m, _) = to_channels(audio(vec![vec![1.0; 3]; 6]), 1);
        assert_eq!(m.num_channels(), 1);
        assert!((m.channels[0][0] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn odd_requests_do_not_panic() {
        let a = audio(vec![vec![1.0; 3]; 6]);
        assert_eq!(to_channels(a.clone(), 4).0.num_channels(), 4);
        assert_eq!(to_channels(a.clone(), 0).0.num_channels(), 6);
        assert_eq!(
            to_channels(audio(vec![vec![1.0; 3]; 2]), 5)
                .0
                .num_channels(),
            5
        );
    }
}
