//! Facebook demucs checkpoints: tests/fixtures/htdemucs/htdemucs_4stem/model.th is written by
//! `demucs.states.serialize_model(half=True)` + `torch.save` (tools/gen_htdemucs_fixtures.py);
//! model.ckpt next to it holds the same weights in f32 as a plain state dict.

use std::path::{Path, PathBuf};

use half::f16;
use roformer::model::htdemucs::config::MsstHtDemucsConfig;
use roformer::model::htdemucs::HtDemucsConfig;
use roformer::weights::{load_demucs_package, load_state_dict, KwargValue};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/htdemucs/htdemucs_4stem")
}

#[test]
fn reads_the_package_kwargs() {
    let pkg = load_demucs_package(&dir().join("model.th")).unwrap();
    assert_eq!(pkg.class_name, "demucs.htdemucs.HTDemucs");
    assert!(pkg.args.is_empty());
    assert_eq!(pkg.sources().unwrap(), ["drums", "bass", "other", "vocals"]);
    assert_eq!(pkg.samplerate().unwrap(), 44100);
    assert_eq!(pkg.audio_channels().unwrap(), 2);
    // A pickled Fraction(1, 1).
    assert_eq!(pkg.segment().unwrap(), 1.0);
    assert_eq!(pkg.kwarg("channels"), Some(&KwargValue::Int(8)));
    assert_eq!(pkg.kwarg("nfft"), Some(&KwargValue::Int(4096)));
    assert_eq!(pkg.kwarg("channels_time"), Some(&KwargValue::None));
    assert_eq!(
        pkg.kwarg("t_cape_glob_loc_scale"),
        Some(&KwargValue::List(vec![
            KwargValue::Float(5000.0),
            KwargValue::Float(1.0),
            KwargValue::Float(1.4),
        ]))
    );

    // The kwargs give the config MSST's config.yaml gives.
    let path = dir().join("config.yaml");
    let msst =
        MsstHtDemucsConfig::from_yaml(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
    let from_kwargs: HtDemucsConfig = pkg.deserialize_kwargs().unwrap();
    assert_eq!(from_kwargs, msst.htdemucs);
}

#[test]
fn the_fp16_state_is_the_f32_checkpoint_rounded() {
    let pkg = load_demucs_package(&dir().join("model.th")).unwrap();
    let ckpt = load_state_dict(&dir().join("model.ckpt")).unwrap();
    assert_eq!(
        pkg.state.keys().collect::<Vec<_>>(),
        ckpt.keys().collect::<Vec<_>>()
    );
    // load_state_dict reads the package's `state` too.
    let plain = load_state_dict(&dir().join("model.th")).unwrap();
    assert_eq!(plain.len(), pkg.state.len());
    let mut rounded_away = 0;
    for name in ckpt.keys() {
        let values = |t: &roformer::Tensor| -> Vec<f32> {
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        let (ours, wide) = (pkg.state.get(name).unwrap(), ckpt.get(name).unwrap());
        assert_eq!(ours.dims(), wide.dims(), "{name}");
        let rounded: Vec<u32> = values(wide)
            .into_iter()
            .map(|x| f16::from_f32(x).to_f32().to_bits())
            .collect();
        let got: Vec<u32> = values(ours).into_iter().map(f32::to_bits).collect();
        assert_eq!(got, rounded, "{name}");
        rounded_away += values(wide)
            .iter()
            .zip(&got)
            .filter(|(x, g)| x.to_bits() != **g)
            .count();
        let again: Vec<u32> = values(plain.get(name).unwrap())
            .into_iter()
            .map(f32::to_bits)
            .collect();
        assert_eq!(again, got, "{name}");
    }
    // The f32 weights are not all fp16 values already, so the comparison sees the rounding.
    assert!(rounded_away > 0);
}

#[test]
fn a_plain_checkpoint_is_not_a_package() {
    let e = load_demucs_package(&dir().join("model.ckpt")).unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("model.ckpt is not a demucs model package") && e.contains("klass"),
        "{e}"
    );
}
