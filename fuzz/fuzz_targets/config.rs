//! An MSST YAML config from a stranger: parsing, validation and the derived model facts
//! (bands, chunking) that loading a model computes from it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let origin = std::path::Path::new("fuzz.yaml");
    if let Ok(config) = roformer::config::MsstConfig::from_yaml(text, origin) {
        let _ = config.stem_names();
        let _ = config.chunk_size();
        let _ = roformer::model::flops::parameters(&config.model);
    }
});
