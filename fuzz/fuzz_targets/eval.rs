//! A references folder and an estimates folder from strangers, through what `eval` does with
//! them: list the track folders, decode every file, check that they fit together and score them.
//! The input format is in fuzz/inputs/eval_folders.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../inputs/eval_folders.rs"]
mod eval_folders;

fuzz_target!(|data: &[u8]| {
    let root = std::env::temp_dir().join(format!("roformer-fuzz-eval-{}", std::process::id()));
    if let Some(folders) = eval_folders::write(data, &root) {
        eval_folders::score(&folders);
    }
});
