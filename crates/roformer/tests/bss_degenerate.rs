//! BSSEval v4 on degenerate tracks against museval 0.4.1 (fixtures from
//! `tools/gen_degenerate_bss_fixtures.py`): stems whose channels are bit-identical (museval's
//! solve fails and it falls back to least squares), references band-limited at 16 kHz, and a
//! reference silent in some windows. Every value within 1e-3 dB, NaN exactly where museval
//! has NaN.

use std::path::{Path, PathBuf};

use roformer::audio::decode_file;
use roformer::metrics::{bss_eval_v4, BssEvalOptions};
use serde_json::Value;

const STEMS: [&str; 2] = ["vocals", "accompaniment"];
const TOLERANCE_DB: f64 = 1e-3;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/metrics/degenerate")
}

fn stems(case: &str, kind: &str) -> Vec<Vec<Vec<f32>>> {
    STEMS
        .iter()
        .map(|s| {
            decode_file(&dir().join(case).join(kind).join(format!("{s}.flac")))
                .unwrap()
                .into_channels()
        })
        .collect()
}

fn check(case: &str) {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap())
            .unwrap();
    let refs = stems(case, "references");
    let ests = stems(case, "estimates");
    let r: Vec<&[Vec<f32>]> = refs.iter().map(|s| s.as_slice()).collect();
    let e: Vec<&[Vec<f32>]> = ests.iter().map(|s| s.as_slice()).collect();
    let frames = bss_eval_v4(&r, &e, &BssEvalOptions::museval(44100)).unwrap();
    let mut worst = 0.0f64;
    for (stem, ours) in STEMS.iter().zip(&frames) {
        let want = &expected["cases"][case][stem];
        for (metric, got) in [
            ("sdr", &ours.sdr),
            ("isr", &ours.isr),
            ("sir", &ours.sir),
            ("sar", &ours.sar),
        ] {
            let want = want[metric].as_array().unwrap();
            assert_eq!(want.len(), got.len(), "{case} {stem} {metric}: windows");
            for (w, (x, g)) in want.iter().zip(got).enumerate() {
                match x.as_f64() {
                    None => assert!(g.is_nan(), "{case} {stem} {metric}[{w}]: {g}, museval NaN"),
                    Some(x) => {
                        assert!(
                            (x - g).abs() <= TOLERANCE_DB,
                            "{case} {stem} {metric}[{w}]: {g} vs museval {x}"
                        );
                        worst = worst.max((x - g).abs());
                    }
                }
            }
        }
    }
    println!("{case}: largest difference from museval {worst:.2e} dB");
}

#[test]
fn identical_channel_stems_match_museval_least_squares_fallback() {
    check("identical_channels");
}

#[test]
fn references_low_passed_at_16k_match_museval() {
    check("lowpass_16k");
}

#[test]
fn references_silent_in_some_windows_match_museval() {
    check("silent_windows");
}
