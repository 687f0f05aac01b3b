//! An audio file from a stranger, through what `separate` does with it: decode (the container
//! chosen by the first byte: WAV, FLAC, MP3, Ogg, AIFF, M4A), resample to 44.1 kHz and adapt the
//! channels to stereo.
#![no_main]

use libfuzzer_sys::fuzz_target;

const EXTENSIONS: [&str; 6] = ["wav", "flac", "mp3", "ogg", "aiff", "m4a"];

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let ext = EXTENSIONS[usize::from(which) % EXTENSIONS.len()];
    let path = std::env::temp_dir().join(format!("roformer-fuzz-{}.{ext}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    let Ok(audio) = roformer::audio::decode_file(&path) else {
        return;
    };
    // Keep each run short: resampling a long decoded signal is slow, not a finding.
    if audio.frames() > 1 << 20 {
        return;
    }
    if let Ok(audio) = roformer::audio::resample(&audio, 44_100) {
        let _ = roformer::audio::to_channels(audio, 2);
    }
});
