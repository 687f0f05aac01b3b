//! `roformer bench`: the JSON report of a run on made-up weights, and its errors.

mod common;
use common::roformer;

use std::path::{Path, PathBuf};

use roformer::config::MsstConfig;
use roformer::model::flops::{self, ModelFlops};
use serde_json::Value;

fn fixture_config(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/models")
        .join(name)
        .join("config.yaml")
}

fn bench_json(args: &[&str]) -> Value {
    let out = roformer(args);
    assert!(
        out.status.success(),
        "roformer {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn positive(j: &Value, path: &[&str]) -> f64 {
    let v = path.iter().fold(j, |v, k| &v[*k]);
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{path:?} is not a number: {v}"));
    assert!(x > 0.0 && x.is_finite(), "{path:?} = {x}");
    x
}

#[test]
fn json_report_on_made_up_weights() {
    let config = fixture_config("bs_stereo_2stem_hop512");
    let j = bench_json(&[
        "bench",
        "--config",
        config.to_str().unwrap(),
        "--runs",
        "1",
        "--json",
    ]);
    for field in [
        "s_per_chunk",
        "median_s",
        "real_time_factor",
        "gflop_per_chunk",
        "gflop_per_s",
        "floor_s_per_chunk",
        "ours_over_floor",
        "peak_rss_mb",
        "parameters",
        "audio_seconds",
    ] {
        positive(&j, &[field]);
    }
    positive(&j, &["matmul", "f32_gflop_per_s"]);
    assert_eq!(j["runs_s"].as_array().map(Vec::len), Some(1));
    assert_eq!(j["weights"], "synthetic");
    assert_eq!(j["precision"], "f32");
    assert_eq!(j["chunks"], 1);
    assert_eq!(j["stems"], 2);
    assert_eq!(j["channels"], 2);

    // The work reported is the flops module's count for the config's chunk.
    let cfg = MsstConfig::from_file(&config).unwrap();
    let cost = ModelFlops::for_config(&cfg.model, cfg.chunk_size()).unwrap();
    assert_eq!(j["chunk_size"].as_u64(), Some(cfg.chunk_size() as u64));
    assert_eq!(j["flop_per_chunk"].as_u64(), Some(cost.total()));
    assert_eq!(j["gflop_per_chunk"].as_f64(), Some(cost.gflop()));
    assert_eq!(
        j["parameters"].as_u64(),
        Some(flops::parameters(&cfg.model).unwrap() as u64)
    );
    let (k, n) = flops::largest_linear(&cfg.model);
    assert_eq!(j["matmul"]["k"].as_u64(), Some(k as u64));
    assert_eq!(j["matmul"]["n"].as_u64(), Some(n as u64));
    // Consistency of the derived figures.
    let s = j["s_per_chunk"].as_f64().unwrap();
    let rate = j["gflop_per_s"].as_f64().unwrap();
    assert!((rate * s / cost.gflop() - 1.0).abs() < 1e-9);
}

#[test]
fn checkpoint_seconds_and_saved_output() {
    let dir = fixture_config("mel_tiny_mono");
    let model = dir.with_file_name("model.ckpt");
    let tmp = tempfile::tempdir().unwrap();
    let saved = tmp.path().join("out.safetensors");
    let j = bench_json(&[
        "bench",
        "--config",
        dir.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--runs",
        "2",
        "--seconds",
        "0.5",
        "--json",
        "--save-output",
        saved.to_str().unwrap(),
    ]);
    assert_eq!(j["weights"], "checkpoint");
    assert_eq!(j["runs_s"].as_array().map(Vec::len), Some(2));
    // 0.5 s at 44.1 kHz is 22050 samples: two chunks of 16000.
    assert_eq!(j["chunks"], 2);
    assert_eq!(j["chunk_size"], 16000);
    let state = roformer::weights::load_state_dict(&saved).unwrap();
    let input = state.get("input").unwrap();
    let output = state.get("output").unwrap();
    assert_eq!(input.dims(), &[2, 1, 16000]);
    assert_eq!(output.dims(), &[2, 2, 1, 16000]);
    let energy: f32 = output
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v * v)
        .sum();
    assert!(energy > 0.0 && energy.is_finite());
}

#[test]
fn table_output_names_the_figures() {
    let config = fixture_config("bs_mono_hop441");
    let out = roformer(&["bench", "--config", config.to_str().unwrap(), "--runs", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for label in [
        "wall time per chunk",
        "real-time factor",
        "GFLOP/s",
        "floor",
        "ours / floor",
        "peak RSS",
    ] {
        assert!(text.contains(label), "no `{label}` in:\n{text}");
    }
}

#[test]
fn bad_config_path_is_named() {
    let out = roformer(&["bench", "--config", "no/such/config.yaml", "--json"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no/such/config.yaml") && err.contains("cannot read config"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no report on failure");
}

#[test]
fn bad_arguments_are_refused() {
    let config = fixture_config("bs_mono_hop441");
    let c = config.to_str().unwrap();
    let out = roformer(&["bench", "--config", c, "--precision", "f16"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown precision"));
    let out = roformer(&["bench", "--config", c, "--runs", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--runs"));
    let out = roformer(&["bench"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
}

/// HT Demucs on made-up weights: timed and sized like a RoFormer, with no FLOP count; the
/// parameters are those of the fixture's PyTorch checkpoint of the same config (written by
/// tools/gen_htdemucs_fixtures.py), and the reduced precisions run on the fused engine.
#[test]
fn htdemucs_on_made_up_weights() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/htdemucs/htdemucs_4stem");
    let config = dir.join("config.yaml");
    let torch = roformer::weights::load_state_dict(&dir.join("model.ckpt")).unwrap();
    for precision in ["f32", "int8"] {
        let j = bench_json(&[
            "bench",
            "--config",
            config.to_str().unwrap(),
            "--runs",
            "1",
            "--precision",
            precision,
            "--json",
        ]);
        for field in ["s_per_chunk", "real_time_factor", "peak_rss_mb"] {
            positive(&j, &[field]);
        }
        assert!(
            j["architecture"].as_str().unwrap().starts_with("HT Demucs"),
            "{j}"
        );
        assert_eq!(j["engine_used"], format!("fused CPU engine, {precision}"));
        assert_eq!(j["stems"], 4);
        assert_eq!(j["chunk_size"], 44100);
        assert_eq!(
            j["parameters"].as_u64(),
            Some(torch.num_parameters() as u64)
        );
        assert!(j["gflop_per_chunk"].is_null(), "{j}");
    }
}
