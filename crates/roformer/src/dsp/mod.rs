//! Signal processing shared by inference and training.

pub mod stft;

pub use stft::{Spectrogram, Stft};
