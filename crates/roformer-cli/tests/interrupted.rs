//! Work killed half-way (SIGKILL, so nothing gets to clean up): no file under a final output name
//! is ever partial, and running the same command again completes the batch with the bytes of an
//! uninterrupted run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{p, roformer, stderr, tree_bytes};

const INPUTS: usize = 8;

/// Outputs under their final names (temporary files start with a dot).
fn final_outputs(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    if !dir.exists() {
        return Default::default();
    }
    tree_bytes(dir)
        .into_iter()
        .filter(|(rel, _)| {
            !rel.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect()
}

#[test]
fn a_killed_separate_batch_leaves_no_partial_output_and_resumes() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/models/bs_stereo_2stem_hop512");
    let scratch = tempfile::tempdir().unwrap();
    let inputs = scratch.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    for i in 0..INPUTS {
        std::fs::copy(
            fixture.join("mixture.wav"),
            inputs.join(format!("song{i}.wav")),
        )
        .unwrap();
    }
    let (model, config) = (fixture.join("model.ckpt"), fixture.join("config.yaml"));
    let args = |out: &Path| -> Vec<String> {
        [
            "separate",
            p(&inputs),
            "--model",
            p(&model),
            "--config",
            p(&config),
            "--threads",
            "1",
            "-q",
            "-o",
            p(out),
        ]
        .map(String::from)
        .to_vec()
    };

    // The truth: one uninterrupted run.
    let whole = scratch.path().join("whole");
    let a: Vec<String> = args(&whole);
    let o = roformer(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = final_outputs(&whole);
    assert_eq!(expected.len(), INPUTS * 2);

    // Killed as soon as the first output is in place.
    let out = scratch.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_roformer"))
        .args(args(&out))
        .spawn()
        .unwrap();
    let started = Instant::now();
    while final_outputs(&out).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no output appeared"
        );
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = final_outputs(&out);
    assert!(
        partial.len() < expected.len(),
        "the batch finished before it could be killed"
    );
    for (rel, bytes) in &partial {
        assert!(
            expected.get(rel) == Some(bytes),
            "{} is under its final name but not complete",
            rel.display()
        );
    }

    // The same command again completes the batch.
    let a = args(&out);
    let o = roformer(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(final_outputs(&out), expected);
    // And the killed run's temporary files are gone with it.
    let names: Vec<PathBuf> = tree_bytes(&out).into_keys().collect();
    assert_eq!(names, expected.keys().cloned().collect::<Vec<_>>());
}
