//! A PyTorch checkpoint from a stranger: the zip reader and the restricted unpickler, through
//! the same entry point `separate --model` uses (a file on disk).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("roformer-fuzz-{}.ckpt", std::process::id()));
    std::fs::write(&path, data).unwrap();
    // Any error is fine; a panic, an abort, a hang or unbounded memory is a finding.
    let _ = roformer::weights::load_state_dict(&path);
});
