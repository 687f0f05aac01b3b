//! `roformer train` end to end on a tiny dataset: checkpoints, log, resume, refusing to overwrite a
//! run, clear errors for bad data; and `separate` with the built-in default model.

mod common;
use common::{p, repo, roformer, stderr, train_dataset};

use std::path::Path;
use std::process::Output;

/// `roformer train --data ROOT/data -o ROOT/run --quiet` plus `extra`.
fn train(root: &Path, extra: &[&str]) -> Output {
    let (data, run) = (root.join("data"), root.join("run"));
    let mut args = vec!["train", "--data", p(&data), "-o", p(&run), "--quiet"];
    args.extend_from_slice(extra);
    roformer(&args)
}

fn log_rows(run: &Path) -> usize {
    std::fs::read_to_string(run.join("log.csv"))
        .unwrap()
        .lines()
        .count()
}

#[test]
fn trains_resumes_and_separates_with_the_result() {
    let tmp = tempfile::tempdir().unwrap();
    let config = train_dataset(tmp.path(), &[]);
    let (data, run) = (tmp.path().join("data"), tmp.path().join("run"));

    let out = train(tmp.path(), &["--config", p(&config), "--epochs", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The fixture config has dropout 0.1, which the trainer says it does not apply.
    assert!(stderr(&out).contains("dropout"), "{}", stderr(&out));
    for f in [
        "last.safetensors",
        "best.safetensors",
        "state.safetensors",
        "log.csv",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    assert_eq!(log_rows(&run), 2);

    // A second start in the same directory is refused; --resume continues.
    let out = train(tmp.path(), &["--config", p(&config)]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already holds a run"),
        "{}",
        stderr(&out)
    );
    let out = train(tmp.path(), &["--resume", "--epochs", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(log_rows(&run), 3);

    // The checkpoint carries its config: separate runs it as is.
    let mix = data.join("valid/track0/vocals.wav");
    let sep = tmp.path().join("sep");
    let out = roformer(&[
        "separate",
        p(&mix),
        "--model",
        p(&run.join("last.safetensors")),
        "-o",
        p(&sep),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(sep.join("vocals/vocals.wav").is_file() && sep.join("vocals/other.wav").is_file());
}

#[test]
fn bad_training_data_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let config = train_dataset(tmp.path(), &[]);
    let data = tmp.path().join("data");
    std::fs::remove_file(data.join("train/track1/other.wav")).unwrap();
    let out = train(tmp.path(), &["--config", p(&config)]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("track1/other.wav"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unsupported_scheduler_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let config = train_dataset(tmp.path(), &[]);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "  optimizer: adam\n",
            "  optimizer: adam\n  scheduler: linear_scheduler\n",
        ),
    )
    .unwrap();
    let out = train(tmp.path(), &["--config", p(&config)]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("training.scheduler `linear_scheduler`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn separate_without_a_model_uses_the_built_in_one() {
    let tmp = tempfile::tempdir().unwrap();
    let demo = repo().join("demo/bach-chorale-bwv438.flac");
    let out = roformer(&["separate", p(&demo), "-o", p(tmp.path())]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("built-in default model"),
        "{}",
        stderr(&out)
    );
    for stem in ["vocals", "drums", "bass", "other"] {
        let f = tmp
            .path()
            .join("bach-chorale-bwv438")
            .join(format!("{stem}.wav"));
        assert!(f.is_file(), "{} missing", f.display());
    }
}
