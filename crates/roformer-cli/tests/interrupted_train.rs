//! `roformer train` killed half-way (SIGKILL, so nothing gets to clean up): every file under a
//! final name in the run directory is complete, and `--resume` ends with the bytes of an
//! uninterrupted run (weights, optimiser state, EMA, scheduler, log).
// Inodes and signals: Unix only.
#![cfg(unix)]

mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{final_files, p, stderr, train_dataset};

const EPOCHS: usize = 4;

/// `log.csv` without its last column (the seconds each epoch took).
fn log_without_times(bytes: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(bytes).unwrap();
    text.lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string())
        .collect()
}

/// `roformer ARGS --quiet` on one compute thread and one loader thread. The weights do not
/// depend on the thread counts, but the loss's parallel sums (logged, not trained on) may add in
/// another order on several threads.
fn train<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_roformer"));
    c.args(args)
        .args(["--data-threads", "1", "--quiet"])
        .env("RAYON_NUM_THREADS", "1");
    c
}

/// The inode of `path`, if it exists: it changes whenever a new version is renamed over it.
fn inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

#[test]
fn a_killed_training_run_leaves_complete_files_and_resumes_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    // 3 batches per epoch with accumulation over 2 (so an epoch ends on a partial accumulation),
    // clipping, EMA (the fixture's 0.999) and patience 0, so that the learning rate drops on the
    // first epoch whose SDR does not improve: every piece of state a resume must restore.
    let config = train_dataset(
        tmp.path(),
        &[
            ("num_steps: 2", "num_steps: 3"),
            (
                "gradient_accumulation_steps: 1",
                "gradient_accumulation_steps: 2",
            ),
            ("grad_clip: 0", "grad_clip: 0.5"),
            ("patience: 2", "patience: 0"),
            ("num_epochs: 1000", &format!("num_epochs: {EPOCHS}")),
        ],
    );
    let data = tmp.path().join("data");
    let start = |out: &Path| -> Vec<String> {
        let args = [
            "train",
            "--config",
            p(&config),
            "--data",
            p(&data),
            "-o",
            p(out),
        ];
        args.map(String::from).to_vec()
    };

    // The truth: one uninterrupted run.
    let whole = tmp.path().join("whole");
    let o = train(&start(&whole)).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = final_files(&whole);

    // Killed while it saves its second epoch: as soon as the second `last.safetensors` is in
    // place (`best`, the log and the resume state are being written, or just were).
    let out = tmp.path().join("out");
    let mut child = train(&start(&out)).stderr(Stdio::null()).spawn().unwrap();
    let (last, state) = (out.join("last.safetensors"), out.join("state.safetensors"));
    let began = Instant::now();
    let mut first_last = None;
    loop {
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "no second checkpoint appeared"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before it could be killed");
        }
        match (first_last, inode(&last)) {
            (None, Some(ino)) if inode(&state).is_some() => first_last = Some(ino),
            (Some(first), Some(ino)) if ino != first => break,
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "the run was not killed: {status}");

    // Every file under a final name is whole: the checkpoints load, the log has full rows.
    let killed = final_files(&out);
    for (rel, bytes) in &killed {
        let path = out.join(rel);
        match rel.extension().and_then(|e| e.to_str()) {
            Some("safetensors") => {
                roformer::weights::load_state_dict(&path)
                    .unwrap_or_else(|e| panic!("{} is partial: {e}", rel.display()));
            }
            Some("csv") => {
                let text = std::str::from_utf8(bytes).unwrap();
                assert!(text.ends_with('\n'), "log.csv ends mid-row");
                let header = text.lines().next().unwrap().split(',').count();
                assert!(
                    text.lines().all(|l| l.split(',').count() == header),
                    "log.csv has a partial row:\n{text}"
                );
            }
            _ => panic!("unexpected file {}", rel.display()),
        }
    }
    let saved = roformer::weights::load_state_dict(&state).unwrap();
    let epoch: usize = saved.metadata["epoch"].parse().unwrap();
    assert!(
        (1..EPOCHS).contains(&epoch),
        "the resume state is at epoch {epoch}"
    );

    // --resume finishes the run as if nothing had happened.
    let o = train(&["train", "--resume", "--data", p(&data), "-o", p(&out)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let resumed = final_files(&out);
    assert_eq!(
        resumed.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (rel, bytes) in &expected {
        if rel == Path::new("log.csv") {
            assert_eq!(log_without_times(&resumed[rel]), log_without_times(bytes));
        } else {
            assert!(
                &resumed[rel] == bytes,
                "{} differs from the uninterrupted run's",
                rel.display()
            );
        }
    }
    assert_eq!(
        log_without_times(&expected[Path::new("log.csv")]).len(),
        EPOCHS + 1
    );
}
