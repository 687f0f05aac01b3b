//! A safetensors file from a stranger (header JSON, offsets, dtypes, our config metadata).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let name = std::path::Path::new("fuzz.safetensors");
    if let Ok(state) = roformer::weights::state_dict_from_safetensors_bytes(data, name) {
        // The embedded MSST config, as `separate --model x.safetensors` reads it.
        if let Some(text) = state.metadata.get(roformer::model::CONFIG_METADATA_KEY) {
            let _ = roformer::config::MsstConfig::from_yaml(text, name);
        }
    }
});
