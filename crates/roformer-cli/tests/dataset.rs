//! The dataset builder `tools/render-dataset`: a tiny build has MUSDB18-style folders whose
//! mixture is the exact sum of its stems, at sane levels, and is reproducible from its seed.
//! Needs the packages that `tools/install-dataset-deps.sh` installs (CI runs it first).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const STEMS: [&str; 4] = ["vocals", "drums", "bass", "other"];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/render-dataset")
}

fn build(out: &Path, jobs: &str) {
    let o = Command::new(script())
        .args(["--out", out.to_str().unwrap()])
        .args([
            "--tracks",
            "3",
            "--seconds",
            "4",
            "--seed",
            "7",
            "--jobs",
            jobs,
        ])
        .output()
        .expect("tools/render-dataset runs");
    assert!(
        o.status.success(),
        "tools/render-dataset failed (are its dependencies installed? run \
         tools/install-dataset-deps.sh):\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Interleaved 16-bit samples of a 44.1 kHz stereo PCM file.
fn read(path: &Path) -> Vec<i16> {
    let r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let s = r.spec();
    assert_eq!(
        (
            s.channels,
            s.sample_rate,
            s.bits_per_sample,
            s.sample_format
        ),
        (2, 44100, 16, hound::SampleFormat::Int),
        "{}",
        path.display()
    );
    r.into_samples::<i16>().map(Result::unwrap).collect()
}

fn rms_dbfs(x: &[i16]) -> f64 {
    let p = x.iter().map(|&v| (v as f64 / 32768.0).powi(2)).sum::<f64>() / x.len() as f64;
    10.0 * p.log10()
}

/// Rows of tracks.tsv as column -> value.
fn tracks(dir: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(dir.join("tracks.tsv")).expect("tracks.tsv");
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split('\t').collect();
    lines
        .map(|l| {
            head.iter()
                .zip(l.split('\t'))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn tiny_dataset_is_exact_sane_and_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    build(&a, "2");

    let rows = tracks(&a);
    assert_eq!(rows.len(), 3);
    let splits: Vec<&str> = rows.iter().map(|r| r["split"].as_str()).collect();
    assert_eq!(splits, ["train", "valid", "test"]);
    let kinds: Vec<&str> = rows.iter().map(|r| r["kind"].as_str()).collect();
    assert!(
        kinds.contains(&"openmsx") && kinds.contains(&"bach"),
        "{kinds:?}"
    );

    for row in &rows {
        let track = a.join(&row["split"]).join(&row["name"]);
        let mix = read(&track.join("mixture.wav"));
        assert_eq!(
            mix.len(),
            2 * 4 * 44100,
            "{}: 4 s of stereo",
            track.display()
        );
        let mut sum = vec![0i32; mix.len()];
        for stem in STEMS {
            let x = read(&track.join(format!("{stem}.wav")));
            assert_eq!(x.len(), mix.len(), "{}/{stem}.wav length", track.display());
            for (s, &v) in sum.iter_mut().zip(&x) {
                *s += v as i32;
            }
            let peak = x.iter().map(|&v| (v as i32).abs()).max().unwrap();
            assert!(peak < 32767, "{}/{stem}.wav clips", track.display());
            // A stem is silent exactly when its source has none of it in the excerpt.
            let listed = row["excerpt_stems"].split(',').any(|s| s == stem);
            if listed {
                let db = rms_dbfs(&x);
                assert!(
                    (-50.0..-8.0).contains(&db),
                    "{}/{stem}.wav RMS {db:.1} dBFS",
                    track.display()
                );
            } else {
                assert!(x.iter().all(|&v| v == 0), "{}/{stem}.wav", track.display());
            }
        }
        // The source's stems all sound in the excerpt; songs and chorales always have these.
        assert_eq!(row["source_stems"], row["excerpt_stems"], "{}", row["name"]);
        for stem in ["vocals", "drums", "other"] {
            assert!(
                row["excerpt_stems"].contains(stem),
                "{}: no {stem}",
                row["name"]
            );
        }
        if row["kind"] == "bach" {
            assert_eq!(row["excerpt_stems"], "vocals,drums,bass,other");
        }
        // mixture = vocals + drums + bass + other, to the last bit.
        let exact = sum.iter().zip(&mix).all(|(&s, &m)| s == m as i32);
        assert!(exact, "{}: mixture != sum of stems", track.display());
        let peak = mix.iter().map(|&v| (v as i32).abs()).max().unwrap();
        assert!(peak < 32767, "{}: mixture clips", track.display());
        let db = rms_dbfs(&mix);
        assert!(
            (-35.0..-8.0).contains(&db),
            "{}: mixture RMS {db:.1} dBFS",
            track.display()
        );
    }

    let licences = std::fs::read_to_string(a.join("LICENSES.md")).expect("LICENSES.md");
    for needle in [
        "OpenMSX",
        "GPL-2.0",
        "Bach",
        "music21",
        "FluidSynth",
        "eSpeak NG",
    ] {
        assert!(licences.contains(needle), "LICENSES.md lacks {needle}");
    }
    assert!(a.join("manifest.json").is_file());

    // The same seed gives the same bytes, whatever the parallelism.
    let b = tmp.path().join("b");
    build(&b, "1");
    for row in &rows {
        for f in ["mixture", "vocals", "drums", "bass", "other"] {
            let rel = Path::new(&row["split"])
                .join(&row["name"])
                .join(format!("{f}.wav"));
            let (x, y) = (
                std::fs::read(a.join(&rel)).unwrap(),
                std::fs::read(b.join(&rel)).unwrap(),
            );
            assert!(x == y, "{} differs between two builds", rel.display());
        }
    }
}
