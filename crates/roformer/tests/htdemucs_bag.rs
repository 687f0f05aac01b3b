//! Bags of HT Demucs models (demucs' `BagOfModels`, as `htdemucs_ft`) against
//! tests/fixtures/htdemucs/bag, made by `tools/gen_htdemucs_fixtures.py --only bag`: three tiny
//! `.th` packages named by signature, a demucs-style `bag.yaml` with a weights matrix and a
//! segment (read back by demucs' own loader), and as reference each model's MSST demix combined
//! with demucs' weighting.

mod common;

use std::path::{Path, PathBuf};

use common::snr_db;
use roformer::bag::{converted, BagError, BagYaml};
use roformer::error::Error;
use roformer::weights::{load_state_dict, save_safetensors};
use roformer::{Audio, Separator};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/htdemucs/bag")
}

/// The bag's three packages, in the order of bag.yaml.
fn packages() -> Vec<PathBuf> {
    [
        "1a2b3c4d-16992b24.th",
        "5e6f7a8b.th",
        "9c0d1e2f-4db22632.th",
    ]
    .iter()
    .map(|f| fixture().join(f))
    .collect()
}

const STEMS: [&str; 4] = ["drums", "bass", "other", "vocals"];

fn mixture() -> Audio {
    roformer::audio::decode_file(&fixture().join("mixture.wav")).unwrap()
}

/// Every stem of `separator`'s output on the fixture, flattened, in `STEMS` order.
fn separate(separator: &Separator) -> Vec<Vec<f32>> {
    assert_eq!(separator.stems(), STEMS);
    let stems = separator.separate(&mixture()).unwrap();
    STEMS
        .iter()
        .map(|s| stems.get(s).unwrap().channels().concat())
        .collect()
}

fn open(model: &Path) -> Separator {
    Separator::builder(model).open().unwrap()
}

/// A YAML file `body` in a fresh folder (kept alive by the returned guard).
fn yaml(body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bag.yaml");
    std::fs::write(&path, body).unwrap();
    (dir, path)
}

/// `models: [...]` naming `files` by absolute path.
fn models_line(files: &[PathBuf]) -> String {
    let names: Vec<String> = files.iter().map(|f| format!("'{}'", f.display())).collect();
    format!("models: [{}]\n", names.join(", "))
}

#[test]
fn a_bag_separates_like_demucs_bag_of_msst_demixes() {
    let reference = load_state_dict(&fixture().join("reference.safetensors")).unwrap();
    let theirs = reference.get("separated").unwrap();
    let ours = separate(&open(&fixture().join("bag.yaml")));
    for (i, (name, ours)) in STEMS.iter().zip(&ours).enumerate() {
        let theirs: Vec<f32> = theirs
            .get(i)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let snr = snr_db(&theirs, ours);
        println!("{name}: {snr:.1} dB");
        assert!(snr >= 60.0, "{name}: SNR {snr:.1} dB against demucs/MSST");
    }
    // The same bag naming its files instead of signatures.
    assert_eq!(separate(&open(&fixture().join("bag_files.yaml"))), ours);
}

/// The bag's segment sets the chunks as demucs' `BagOfModels` does: the 3 s model runs 2 s
/// chunks, the 1 s model keeps its own (the generator's demucs gave segments 2, 2, 1).
#[test]
fn the_segment_follows_demucs_rule() {
    let reference = load_state_dict(&fixture().join("reference.safetensors")).unwrap();
    assert_eq!(reference.metadata["segments"], "2,2,1");
    let bag = roformer::bag::Bag::open(
        &fixture().join("bag.yaml"),
        None,
        &roformer::Device::Cpu,
        roformer::engine::Engine::Reference,
    )
    .unwrap();
    let chunks: Vec<usize> = bag.models.iter().map(|m| m.demix.chunk_size).collect();
    assert_eq!(chunks, [8000, 8000, 4000]);
}

/// `roformer convert`'s layout: one file with every model under `models.N.` separates as the
/// YAML does, to the bit.
#[test]
fn a_converted_bag_separates_like_the_yaml() {
    let yaml = BagYaml::read(&fixture().join("bag.yaml")).unwrap();
    let weights = yaml.weights.clone().unwrap();
    let (tensors, metadata) = converted(&yaml.parts().unwrap(), &weights, yaml.segment).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bag.safetensors");
    save_safetensors(&tensors, &metadata, &file).unwrap();
    assert!(tensors.keys().all(|k| k.starts_with("models.")));
    assert_eq!(
        separate(&open(&file)),
        separate(&open(&fixture().join("bag.yaml")))
    );
}

/// Repeated models, an `avg_wave` ensemble with weights 1, give what the bag of them without
/// weights (nor segment) gives.
#[test]
fn repeated_models_are_an_equal_weight_bag() {
    let files = packages();
    let ensemble = Separator::builder(&files[0])
        .add_model(&files[1], None)
        .add_model(&files[2], None)
        .open()
        .unwrap();
    let (_dir, bag) = yaml(&models_line(&files));
    let from_bag = separate(&open(&bag));
    assert_eq!(separate(&ensemble), from_bag);
    // And the weights matter: the fixture's matrix gives something else.
    assert_ne!(separate(&open(&fixture().join("bag.yaml"))), from_bag);
}

/// The bag error inside `open`'s error.
fn bag_error(model: &Path) -> BagError {
    match Separator::builder(model).open() {
        Err(Error::Bag(e)) => e,
        Err(e) => panic!("not a bag error: {e}"),
        Ok(_) => panic!("{} opened", model.display()),
    }
}

#[test]
fn wrong_weights_are_typed_errors_naming_the_yaml() {
    let models = models_line(&packages());
    for (weights, says) in [
        (
            "[[1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]]",
            "row 1 has 3 weights",
        ),
        ("[[1, 1, 1, 1], [1, 1, 1, 1]]", "2 weight rows for 3 models"),
        ("[[1, -1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]]", "stem `bass`"),
        ("[[1, 1, 0, 1], [1, 1, 0, 1], [1, 1, 0, 1]]", "stem `other`"),
    ] {
        let (_dir, path) = yaml(&format!("{models}weights: {weights}\n"));
        let e = bag_error(&path);
        assert!(matches!(e, BagError::Weights { .. }), "{e}");
        let message = e.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(says), "{message}");
    }
    let (_dir, path) = yaml("weights: [[1, 1, 1, 1]]\n");
    assert!(matches!(bag_error(&path), BagError::Parse { .. }));
    let (_dir, path) = yaml(&format!("{models}segment: -1\n"));
    assert!(matches!(bag_error(&path), BagError::Parse { .. }));
}

#[test]
fn models_that_do_not_fit_together_are_typed_errors_naming_the_file() {
    let htdemucs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/htdemucs");
    // Six stems; then the same four stems at 44.1 kHz.
    for (other, says) in [
        ("htdemucs_6stem_merge/model.th", "writes stems"),
        ("htdemucs_4stem/model.th", "runs at 44100 Hz"),
    ] {
        let other = htdemucs.join(other);
        let (_dir, path) = yaml(&models_line(&[packages()[0].clone(), other.clone()]));
        let e = bag_error(&path);
        let message = e.to_string();
        assert!(
            matches!(&e, BagError::Mismatch { model, .. } if *model == other),
            "{message}"
        );
        assert!(message.contains(says), "{message}");
    }
}

#[test]
fn missing_ambiguous_and_nested_models_are_typed_errors() {
    let (_dir, path) = yaml("models: ['0badc0de']\n");
    let e = bag_error(&path);
    assert!(
        matches!(&e, BagError::ModelNotFound { entry, .. } if entry == "0badc0de"),
        "{e}"
    );

    // demucs' LocalRepo refuses two files of one signature too.
    let (dir, path) = yaml("models: ['5e6f7a8b']\n");
    for name in ["5e6f7a8b.th", "5e6f7a8b-00000000.th"] {
        std::fs::copy(&packages()[1], dir.path().join(name)).unwrap();
    }
    let e = bag_error(&path);
    assert!(matches!(e, BagError::AmbiguousModel { .. }), "{e}");

    let (_dir, path) = yaml(&models_line(&[fixture().join("bag.yaml")]));
    assert!(matches!(bag_error(&path), BagError::Nested { .. }));

    // A bag takes no config: its models carry theirs.
    let e = Separator::builder(fixture().join("bag.yaml"))
        .config(fixture().join("bag.yaml"))
        .open()
        .unwrap_err();
    assert!(e.to_string().contains("give it no config"), "{e}");
}
