//! A references folder and an estimates folder from strangers, through what `eval` does with
//! them: list the track folders, decode every file, check that they fit together and score them.
//!
//! Input: one flags byte (bit 0: trim to the shortest), then up to 6 files, each a kind byte
//! (bit 0: estimate or reference; bits 1-3: the stem name; bits 4-5: the extension), a
//! little-endian u32 length and the file's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

const STEMS: [&str; 5] = ["vocals", "other", "mixture", "instrumental", "bass"];
const EXTENSIONS: [&str; 3] = ["wav", "flac", "mp3"];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let root = std::env::temp_dir().join(format!("roformer-fuzz-eval-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (refs, ests) = (root.join("ref"), root.join("est"));
    std::fs::create_dir_all(refs.join("track")).unwrap();
    std::fs::create_dir_all(ests.join("track")).unwrap();
    for _ in 0..6 {
        let [kind, a, b, c, d, tail @ ..] = rest else {
            break;
        };
        let len = (u32::from_le_bytes([*a, *b, *c, *d]) as usize).min(tail.len());
        let (bytes, after) = tail.split_at(len);
        rest = after;
        let dir = if kind & 1 == 0 { &refs } else { &ests };
        let stem = STEMS[usize::from(kind >> 1 & 7) % STEMS.len()];
        let ext = EXTENSIONS[usize::from(kind >> 4 & 3) % EXTENSIONS.len()];
        std::fs::write(dir.join("track").join(format!("{stem}.{ext}")), bytes).unwrap();
    }
    if let Ok(listing) = roformer::evaluation::list_reference_tracks(&refs) {
        for track in &listing.tracks {
            let _ =
                roformer::evaluation::score_track(track, &ests.join(&track.name), flags & 1 == 1);
        }
    }
});
