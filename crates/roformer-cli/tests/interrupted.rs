//! Work killed half-way (SIGKILL, so nothing gets to clean up): no file under a final output name
//! is ever partial, and running the same command again completes the batch with the bytes of an
//! uninterrupted run.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{final_files, p, roformer, stderr, tree_bytes};

const INPUTS: usize = 8;

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
    let expected = final_files(&whole);
    assert_eq!(expected.len(), INPUTS * 2);

    // Killed as soon as the first output is in place.
    let out = scratch.path().join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_roformer"))
        .args(args(&out))
        .spawn()
        .unwrap();
    let started = Instant::now();
    while final_files(&out).is_empty() {
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
    let partial = final_files(&out);
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
    assert_eq!(final_files(&out), expected);
    // And the killed run's temporary files are gone with it.
    let names: Vec<PathBuf> = tree_bytes(&out).into_keys().collect();
    assert_eq!(names, expected.keys().cloned().collect::<Vec<_>>());
}
