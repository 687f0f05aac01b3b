//! Tests over the fixtures written by `tools/make_weight_fixtures.py` (real `torch.save` and
//! `safetensors` output) and over hand-made hostile pickles.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use candle_core::DType;

use super::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/weights")
        .join(name)
}

fn load(name: &str) -> Result<StateDict, WeightsError> {
    load_state_dict(&fixture(name))
}

fn err(name: &str) -> WeightsError {
    match load(name) {
        Ok(sd) => panic!("{name} loaded {} tensors but should fail", sd.len()),
        Err(e) => e,
    }
}

fn f32s(sd: &StateDict, name: &str) -> Vec<f32> {
    let t = sd.get(name).unwrap_or_else(|| panic!("no tensor {name}"));
    assert_eq!(t.dtype(), DType::F32, "{name}");
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn dims(sd: &StateDict, name: &str) -> Vec<usize> {
    sd.get(name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
        .dims()
        .to_vec()
}

fn range(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32).collect()
}

/// The values `base_dict()` in the fixture script writes.
fn check_base(sd: &StateDict) {
    let keys: Vec<&str> = sd.keys().collect();
    assert_eq!(keys, ["a", "b_t", "bf", "d", "h", "off", "step"]);
    assert_eq!(dims(sd, "a"), [2, 3]);
    assert_eq!(f32s(sd, "a"), range(6));
    // arange(12).reshape(3, 4).T: element [i][j] = 4 j + i.
    assert_eq!(dims(sd, "b_t"), [4, 3]);
    let want: Vec<f32> = (0..4)
        .flat_map(|i| (0..3).map(move |j| (4 * j + i) as f32))
        .collect();
    assert_eq!(f32s(sd, "b_t"), want);
    assert_eq!(f32s(sd, "off"), [3.0, 4.0, 5.0, 6.0]);
    assert_eq!(f32s(sd, "h"), [0.0, 0.5, 1.0, 1.5]);
    assert_eq!(f32s(sd, "bf"), [-2.0, -1.0, 0.0, 1.0, 2.0]);
    assert_eq!(dims(sd, "d"), [2, 2]);
    assert_eq!(f32s(sd, "d"), [0.0, 0.25, 0.5, 0.75]);
    let step = sd.get("step").unwrap();
    assert_eq!(step.dtype(), DType::I64);
    assert_eq!(step.to_vec1::<i64>().unwrap(), [7, 8, 9]);
    assert_eq!(sd.num_parameters(), 6 + 12 + 5 + 4 + 4 + 4 + 3);
}

#[test]
fn plain_state_dict_values() {
    let sd = load("plain.pt").unwrap();
    check_base(&sd);
    assert!(sd.metadata.is_empty());
    assert_eq!(sd.source, fixture("plain.pt"));
}

#[test]
fn parameters_and_module_state_dict() {
    let sd = load("params.pt").unwrap();
    assert_eq!(f32s(&sd, "lin.weight"), [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]);
    assert_eq!(f32s(&sd, "lin.bias"), [-1.0, 1.0]);
    // A module's own state_dict(): OrderedDict + BUILD with `_metadata`.
    let sd = load("module_state.pt").unwrap();
    assert_eq!(sd.keys().collect::<Vec<_>>(), ["bias", "weight"]);
    assert_eq!(dims(&sd, "weight"), [2, 3]);
}

#[test]
fn wrappers_and_prefixes() {
    for name in [
        "wrapped_state_dict.ckpt",
        "wrapped_state_model_prefix.ckpt",
        "module_prefix.pth",
    ] {
        let sd = load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_base(&sd);
    }
}

#[test]
fn safetensors_values_and_metadata() {
    let sd = load("plain.safetensors").unwrap();
    check_base(&sd);
    assert_eq!(sd.metadata.get("config").map(String::as_str), Some("x: 1"));
    let e = err("truncated.safetensors").to_string();
    assert!(
        e.contains("truncated.safetensors") && e.contains("truncated"),
        "{e}"
    );
}

#[test]
fn malicious_pickles_are_refused() {
    // torch.save of an object reducing to os.system: pickled as `posix.system` on Linux.
    let e = err("evil_torch.pt");
    match &e {
        WeightsError::ForbiddenGlobal { name, .. } => assert_eq!(name, "system"),
        other => panic!("{other}"),
    }
    let e = err("evil_os_system.pt").to_string();
    assert!(
        e.contains("`os.system`") && e.contains("evil_os_system.pt"),
        "{e}"
    );
    assert!(
        e.contains("only tensor rebuilding and plain containers are allowed"),
        "{e}"
    );
    let e = err("evil_eval.pt").to_string();
    assert!(e.contains("`builtins.eval`"), "{e}");
    let e = err("bad_opcode.pt").to_string();
    assert!(e.contains("INST") && e.contains("0x69"), "{e}");
}

#[test]
fn broken_files_give_clear_errors() {
    let e = err("truncated.pt").to_string();
    assert!(
        e.contains("truncated.pt is truncated or not a zip archive"),
        "{e}"
    );
    let e = err("legacy.pt").to_string();
    assert!(
        e.contains("legacy") && e.contains("re-save it with torch.save"),
        "{e}"
    );
    let e = err("short_storage.pt");
    assert!(
        matches!(&e, WeightsError::Storage { key, .. } if key == "0"),
        "{e}"
    );
    assert!(e.to_string().contains("storage `0`"), "{e}");
    let e = load_state_dict(&fixture("does_not_exist.pt"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("does_not_exist.pt"), "{e}");
}

#[test]
fn take_checks_names_and_shapes() {
    let mut sd = load("plain.pt").unwrap();
    let n = sd.len();
    let e = sd.take("a", &[3, 2]).unwrap_err().to_string();
    assert!(
        e.contains("tensor `a` has shape [2, 3] in the checkpoint but the config expects [3, 2]"),
        "{e}"
    );
    assert_eq!(sd.len(), n, "a failed take leaves the tensor");
    let e = sd
        .take("layers.0.0.to_qkv.weight", &[1])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "missing tensor `layers.0.0.to_qkv.weight` in {}",
            fixture("plain.pt").display()
        )
    );
    assert!(sd.take_opt("nope", &[1]).unwrap().is_none());
    assert_eq!(sd.take("a", &[2, 3]).unwrap().dims(), [2, 3]);
    assert!(sd.get("a").is_none());
    assert!(sd.take_opt("h", &[4]).unwrap().is_some());
    let e = sd.clone().finish().unwrap_err().to_string();
    assert!(
        e.contains("unexpected tensors in checkpoint") && e.contains(": b_t, bf, d, off, step;"),
        "{e}"
    );
    assert!(
        e.ends_with("the config does not match these weights"),
        "{e}"
    );
    for k in ["b_t", "bf", "d", "off", "step"] {
        sd.take_any(k).unwrap();
    }
    sd.finish().unwrap();
}

#[test]
fn finish_lists_ten_and_counts_the_rest() {
    let t = candle_core::Tensor::zeros(1, DType::F32, &candle_core::Device::Cpu).unwrap();
    let tensors = (0..13).map(|i| (format!("k{i:02}"), t.clone())).collect();
    let sd = StateDict::new(tensors, HashMap::new(), "x.ckpt".into());
    let e = sd.finish().unwrap_err().to_string();
    assert_eq!(
        e,
        "unexpected tensors in checkpoint x.ckpt: k00, k01, k02, k03, k04, k05, k06, k07, k08, k09 \
         (and 3 more); the config does not match these weights"
    );
}

#[test]
fn weights_view_joins_prefixes() {
    let t = |shape: &[usize]| {
        candle_core::Tensor::zeros(shape, DType::F32, &candle_core::Device::Cpu).unwrap()
    };
    let mut tensors = BTreeMap::new();
    tensors.insert("layers.0.to_qkv.weight".to_string(), t(&[6, 2]));
    tensors.insert("layers.0.norm.gamma".to_string(), t(&[2]));
    tensors.insert("final_norm.gamma".to_string(), t(&[2]));
    let mut sd = StateDict::new(tensors, HashMap::new(), "m.ckpt".into());
    {
        let mut vb = sd.root();
        let mut layer = vb.pp("layers").pp(0);
        assert_eq!(layer.key("norm"), "layers.0.norm");
        assert!(layer.contains("to_qkv.weight"));
        assert_eq!(layer.keys(), ["norm.gamma", "to_qkv.weight"]);
        assert_eq!(layer.get("norm.gamma").unwrap().dims(), [2]);
        fn load_linear(vb: &mut WeightsView<'_>) -> Result<Tensor, WeightsError> {
            vb.take("weight", &[6, 2])
        }
        assert_eq!(load_linear(&mut layer.pp("to_qkv")).unwrap().dims(), [6, 2]);
        let e = layer
            .pp("norm")
            .take("gamma", &[3])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`layers.0.norm.gamma` has shape [2]"), "{e}");
        layer.pp("norm").take("gamma", &[2]).unwrap();
        assert!(layer.take_opt("bias", &[2]).unwrap().is_none());
        vb.pp("final_norm").take("gamma", &[2]).unwrap();
        assert!(vb.keys().is_empty());
    }
    sd.finish().unwrap();
}

#[test]
fn prefix_stripping() {
    let m: BTreeMap<String, u8> = [("module.model.a", 1), ("module.model.b", 2)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(
        strip_common_prefixes(m).keys().collect::<Vec<_>>(),
        ["a", "b"]
    );
    // Only when every key shares it.
    let m: BTreeMap<String, u8> = [("model.a", 1), ("b", 2)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(
        strip_common_prefixes(m).keys().collect::<Vec<_>>(),
        ["b", "model.a"]
    );
}

// ---- hostile and malformed input: errors, never panics -----------------------------------

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("roformer-weights-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Writes a torch-style zip around `pkl` (plus optional storages) and loads it.
fn load_pickle(
    name: &str,
    pkl: &[u8],
    storages: &[(&str, &[u8])],
) -> Result<StateDict, WeightsError> {
    load_pickle_with(name, pkl, storages, load_state_dict)
}

/// Like [`load_pickle`], reading the zip with `load`.
fn load_pickle_with<T>(
    name: &str,
    pkl: &[u8],
    storages: &[(&str, &[u8])],
    load: impl FnOnce(&Path) -> T,
) -> T {
    let path = temp_path(name);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", opts).unwrap();
    zip.write_all(pkl).unwrap();
    for (key, data) in storages {
        zip.start_file(format!("archive/data/{key}"), opts).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
    let out = load(&path);
    let _ = std::fs::remove_file(&path);
    out
}

fn data_pkl(name: &str) -> Vec<u8> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(fixture(name)).unwrap()).unwrap();
    let stem = name.split('.').next().unwrap();
    let mut out = Vec::new();
    zip.by_name(&format!("{stem}/data.pkl"))
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `{'w': _rebuild_tensor_v2(storage('0', numel), offset, size, stride, False, OrderedDict())}`
fn tensor_pickle(numel: u8, offset: u8, size: &[u8], stride: &[u8]) -> Vec<u8> {
    let mut p = b"\x80\x02}(X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK".to_vec();
    p.extend([numel, b't', b'Q', b'K', offset, b'(']);
    for &s in size {
        p.extend([b'K', s]);
    }
    p.extend(b"t(");
    for &s in stride {
        p.extend([b'K', s]);
    }
    p.extend(b"t\x89ccollections\nOrderedDict\n)RtRu.");
    p
}

#[test]
fn hand_made_tensor_views() {
    let storage = f32_bytes(&range(10));
    // Strided view with an offset: size (2, 2), stride (3, 2), offset 1 -> [1, 3, 4, 6].
    let sd = load_pickle(
        "view.pt",
        &tensor_pickle(10, 1, &[2, 2], &[3, 2]),
        &[("0", &storage)],
    )
    .unwrap();
    assert_eq!(f32s(&sd, "w"), [1.0, 3.0, 4.0, 6.0]);
    // Broadcast (stride 0).
    let sd = load_pickle(
        "bcast.pt",
        &tensor_pickle(10, 2, &[3], &[0]),
        &[("0", &storage)],
    )
    .unwrap();
    assert_eq!(f32s(&sd, "w"), [2.0, 2.0, 2.0]);
    // A view reaching past its storage.
    let e = load_pickle(
        "oob.pt",
        &tensor_pickle(10, 5, &[2, 3], &[3, 1]),
        &[("0", &storage)],
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("storage `0`") && e.to_string().contains("tensor `w`"),
        "{e}"
    );
    // A storage shorter than its numel.
    let e = load_pickle(
        "short.pt",
        &tensor_pickle(10, 0, &[2], &[1]),
        &[("0", &storage[..12])],
    )
    .unwrap_err();
    assert!(e.to_string().contains("holds 12 bytes, expected 40"), "{e}");
    // A missing storage.
    let e = load_pickle("nostorage.pt", &tensor_pickle(10, 0, &[2], &[1]), &[]).unwrap_err();
    assert!(e.to_string().contains("no entry archive/data/0"), "{e}");
}

#[test]
fn hostile_structures_do_not_panic_or_overflow() {
    // A million nested tuples: dropped without recursion.
    let mut deep = b"\x80\x02N".to_vec();
    deep.extend(std::iter::repeat_n(0x85u8, 1_000_000));
    deep.push(b'.');
    let e = load_pickle("deep.pt", &deep, &[]).unwrap_err().to_string();
    assert!(
        e.contains("holds no state dict") && e.contains("tuple"),
        "{e}"
    );
    // A list that contains itself, and a dict wrapping itself under "state_dict".
    let e = load_pickle("cycle.pt", b"\x80\x02]q\x00h\x00a.", &[]).unwrap_err();
    assert!(matches!(e, WeightsError::NoStateDict { .. }), "{e}");
    let e = load_pickle(
        "selfdict.pt",
        b"\x80\x02}q\x00X\x0a\x00\x00\x00state_dicth\x00s.",
        &[],
    )
    .unwrap_err();
    assert!(matches!(e, WeightsError::NoStateDict { .. }), "{e}");
    // Huge declared lengths, a bad memo index, stack underflow, no STOP.
    for pkl in [
        &b"\x80\x02X\xff\xff\xff\xffab."[..],
        b"\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xffab.",
        b"\x80\x02h\x07.",
        b"\x80\x02R.",
        b"\x80\x02(\x85.",
        b"\x80\x02}",
        b"",
    ] {
        let e = load_pickle("bad.pt", pkl, &[]).unwrap_err();
        assert!(matches!(e, WeightsError::Pickle { .. }), "{e}");
    }
    // A huge size product overflows cleanly.
    let e = load_pickle(
        "huge.pt",
        &tensor_pickle(1, 0, &[255; 9], &[0; 9]),
        &[("0", &[0; 4])],
    )
    .unwrap_err();
    assert!(matches!(e, WeightsError::Storage { .. }), "{e}");
}

/// A tiny deterministic generator (no extra dependency).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
}

#[test]
fn fuzzed_pickles_never_panic() {
    let pkl = data_pkl("wrapped_state_dict.ckpt");
    // Every truncation.
    for n in 0..pkl.len() {
        let _ = pickle::unpickle(&pkl[..n], |v| v.kind());
    }
    // Random byte changes.
    let mut rng = Lcg(7);
    for _ in 0..3000 {
        let mut p = pkl.clone();
        for _ in 0..1 + rng.next() % 4 {
            let i = rng.next() % p.len();
            p[i] = rng.next() as u8;
        }
        let _ = pickle::unpickle(&p, |v| v.kind());
    }
}

#[test]
fn fuzzed_files_never_panic() {
    let original = std::fs::read(fixture("plain.pt")).unwrap();
    let path = temp_path("fuzz.pt");
    let mut rng = Lcg(11);
    let mut loaded = 0;
    for round in 0..200 {
        let mut data = original.clone();
        if round % 4 == 0 {
            data.truncate(rng.next() % data.len());
        } else {
            for _ in 0..1 + rng.next() % 3 {
                let i = rng.next() % data.len();
                data[i] = rng.next() as u8;
            }
        }
        std::fs::write(&path, &data).unwrap();
        if load_state_dict(&path).is_ok() {
            loaded += 1;
        }
    }
    let st = std::fs::read(fixture("plain.safetensors")).unwrap();
    for round in 0..200 {
        let mut data = st.clone();
        let i = rng.next() % data.len();
        if round % 2 == 0 {
            data.truncate(i);
        } else {
            data[i] = rng.next() as u8;
        }
        std::fs::write(&path, &data).unwrap();
        let _ = load_state_dict(&path);
    }
    let _ = std::fs::remove_file(&path);
    assert!(loaded < 200);
}

// ---- demucs packages: `fractions.Fraction` and `demucs.*` class globals ---------------------

/// A BINUNICODE string.
fn pkl_str(s: &str) -> Vec<u8> {
    let mut out = vec![b'X'];
    out.extend((s.len() as u32).to_le_bytes());
    out.extend(s.as_bytes());
    out
}

/// Unpickles `body` (after PROTO 2, before STOP) down to a float, or the message of the error.
fn unpickle_float(body: &[u8]) -> Result<f64, String> {
    let mut pkl = b"\x80\x02".to_vec();
    pkl.extend(body);
    pkl.push(b'.');
    match pickle::unpickle(&pkl, |v| match v {
        pickle::Value::Float(f) => Ok(*f),
        other => Err(format!("a {}", other.kind())),
    }) {
        Ok(out) => out,
        Err(pickle::PickleError::Malformed { msg, .. }) => Err(msg),
        Err(e) => Err(format!("{e:?}")),
    }
}

const FRACTION: &[u8] = b"cfractions\nFraction\n";

fn fraction_of(args: &[u8]) -> Result<f64, String> {
    let mut body = FRACTION.to_vec();
    body.extend(args);
    body.push(b'R');
    unpickle_float(&body)
}

#[test]
fn fraction_reduces_to_a_float() {
    // The pair (Python >= 3.12's __reduce__), and str(fraction) (older Pythons).
    assert_eq!(fraction_of(b"K\x27K\x05\x86"), Ok(7.8));
    assert_eq!(fraction_of(b"J\xd9\xff\xff\xffK\x05\x86"), Ok(-7.8));
    for (text, want) in [
        ("39/5", 7.8),
        (" -39/5 ", -7.8),
        ("10", 10.0),
        ("7.8", 7.8),
        ("1e3", 1000.0),
    ] {
        let mut args = pkl_str(text);
        args.push(0x85);
        assert_eq!(fraction_of(&args), Ok(want), "{text}");
    }
    assert_eq!(fraction_of(b"K\x03\x85"), Ok(3.0));
    // Not rational numbers.
    for args in [
        &b"K\x01K\x00\x86"[..],
        b"X\x03\x00\x00\x001/0\x85",
        b"X\x03\x00\x00\x00inf\x85",
        b"X\x04\x00\x00\x001 /2\x85",
        b"X\x03\x00\x00\x00abc\x85",
        b"N\x85",
        b")",
        b"K\x01K\x02K\x03\x87",
    ] {
        let e = fraction_of(args).unwrap_err();
        assert!(e.contains("is not a finite rational number"), "{e}");
    }
}

#[test]
fn demucs_classes_are_names_never_called() {
    // REDUCE, NEWOBJ and BUILD on the class are refused as calls, naming it.
    for (file, tail) in [
        ("reduce.th", &b")R."[..]),
        ("newobj.th", b")\x81."),
        ("build.th", b"}b."),
    ] {
        let mut pkl = b"\x80\x02cdemucs.htdemucs\nHTDemucs\n".to_vec();
        pkl.extend(tail);
        let e = load_pickle(file, &pkl, &[]).unwrap_err();
        match &e {
            WeightsError::ForbiddenGlobal { module, name, .. } => {
                assert_eq!(
                    (module.as_str(), name.as_str()),
                    ("demucs.htdemucs", "HTDemucs")
                )
            }
            other => panic!("{file}: {other}"),
        }
        assert!(
            e.to_string().contains("`demucs.htdemucs.HTDemucs`"),
            "{file}: {e}"
        );
    }
    // Other modules stay refused, with the same message as before.
    for (global, shown) in [
        (&b"cos\nsystem\n"[..], "`os.system`"),
        (b"cdemucs\nHTDemucs\n", "`demucs.HTDemucs`"),
        (
            b"cdemucsx.htdemucs\nHTDemucs\n",
            "`demucsx.htdemucs.HTDemucs`",
        ),
        (b"cdemucs..x\nHTDemucs\n", "`demucs..x.HTDemucs`"),
        (b"cfractions\nGcd\n", "`fractions.Gcd`"),
    ] {
        let mut pkl = b"\x80\x02".to_vec();
        pkl.extend(global);
        pkl.extend(b")R.");
        let e = load_pickle("evil.th", &pkl, &[]).unwrap_err();
        assert!(matches!(e, WeightsError::ForbiddenGlobal { .. }), "{e}");
        let e = e.to_string();
        assert!(
            e.contains(shown) && e.contains("only tensor rebuilding and plain containers"),
            "{e}"
        );
    }
}

/// `serialize_model`'s dict around `kwargs` (SETITEMS body) and a one-tensor state:
/// `{'klass': HTDemucs, 'args': (), 'kwargs': {..}, 'state': {'w': tensor(2)}}`.
fn package_pickle(kwargs: &[u8]) -> Vec<u8> {
    let mut p = b"\x80\x02}(".to_vec();
    p.extend(pkl_str("klass"));
    p.extend(b"cdemucs.htdemucs\nHTDemucs\n");
    p.extend(pkl_str("args"));
    p.push(b')');
    p.extend(pkl_str("kwargs"));
    p.extend(b"}(");
    p.extend(kwargs);
    p.push(b'u');
    p.extend(pkl_str("state"));
    let state = tensor_pickle(2, 0, &[2], &[1]);
    p.extend(&state[2..state.len() - 1]);
    p.extend(b"u.");
    p
}

fn load_package(name: &str, kwargs: &[u8]) -> Result<DemucsPackage, WeightsError> {
    let storage = f32_bytes(&[1.5, -2.0]);
    load_pickle_with(
        name,
        &package_pickle(kwargs),
        &[("0", &storage)],
        load_demucs_package,
    )
}

fn kw(key: &str, value: &[u8]) -> Vec<u8> {
    let mut out = pkl_str(key);
    out.extend(value);
    out
}

#[test]
fn hand_made_demucs_package() {
    let mut kwargs = kw("sources", b"](");
    kwargs.extend(pkl_str("drums"));
    kwargs.extend(pkl_str("bass"));
    kwargs.push(b'e');
    kwargs.extend(kw("samplerate", b"MD\xac"));
    kwargs.extend(kw("audio_channels", b"K\x02"));
    kwargs.extend(kw("segment", &[FRACTION, b"K\x27K\x05\x86R"].concat()));
    kwargs.extend(kw("t_emb", &pkl_str("sin")));
    kwargs.extend(kw("freq_emb", b"G\x3f\xc9\x99\x99\x99\x99\x99\x9a"));
    kwargs.extend(kw("channels_time", b"N"));
    kwargs.extend(kw("cac", b"\x88"));
    kwargs.extend(kw("multi_freqs", b"]"));
    kwargs.extend(kw("pair", b"K\x01K\x02\x86"));
    let pkg = load_package("package.th", &kwargs).unwrap();
    assert_eq!(pkg.class_name, "demucs.htdemucs.HTDemucs");
    assert!(pkg.args.is_empty());
    assert_eq!(pkg.sources().unwrap(), ["drums", "bass"]);
    assert_eq!(pkg.samplerate().unwrap(), 44100);
    assert_eq!(pkg.audio_channels().unwrap(), 2);
    assert_eq!(pkg.segment().unwrap(), 7.8);
    assert_eq!(pkg.kwarg("freq_emb"), Some(&KwargValue::Float(0.2)));
    assert_eq!(
        pkg.kwarg("pair"),
        Some(&KwargValue::List(vec![
            KwargValue::Int(1),
            KwargValue::Int(2)
        ]))
    );
    assert_eq!(pkg.state.keys().collect::<Vec<_>>(), ["w"]);
    assert_eq!(f32s(&pkg.state, "w"), [1.5, -2.0]);

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Config {
        sources: Vec<String>,
        samplerate: u32,
        segment: f64,
        channels_time: Option<usize>,
        t_emb: String,
        freq_emb: f32,
        multi_freqs: Vec<f64>,
        pair: (u8, u8),
        #[serde(default)]
        absent: Option<bool>,
    }
    let want = Config {
        sources: vec!["drums".into(), "bass".into()],
        samplerate: 44100,
        segment: 7.8,
        channels_time: None,
        t_emb: "sin".into(),
        freq_emb: 0.2,
        multi_freqs: vec![],
        pair: (1, 2),
        absent: None,
    };
    assert_eq!(pkg.deserialize_kwargs::<Config>().unwrap(), want);
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Wrong {
        t_emb: usize,
    }
    let e = pkg.deserialize_kwargs::<Wrong>().unwrap_err();
    assert!(matches!(e, WeightsError::KwargsInvalid { .. }), "{e}");
    let e = e.to_string();
    assert!(
        e.contains("package.th") && e.contains("`t_emb`") && e.contains("\"sin\""),
        "{e}"
    );

    // load_state_dict reads the same file as a plain state dict (under `state`).
    let sd = load_pickle(
        "package.th",
        &package_pickle(&kwargs),
        &[("0", &f32_bytes(&[1.5, -2.0]))],
    )
    .unwrap();
    assert_eq!(f32s(&sd, "w"), [1.5, -2.0]);
}

#[test]
fn demucs_package_errors_name_file_and_key() {
    let mut kwargs = kw("sources", b"](K\x01e");
    kwargs.extend(kw("samplerate", &pkl_str("44100")));
    kwargs.extend(kw("segment", b"K\x00"));
    kwargs.extend(kw("blob", b"C\x02ab"));
    let pkg = load_package("bad_kwargs.th", &kwargs).unwrap();
    assert_eq!(
        pkg.kwarg("blob"),
        Some(&KwargValue::Other("a bytes".into()))
    );
    let e = pkg.sources().unwrap_err();
    assert!(matches!(e, WeightsError::KwargType { .. }), "{e}");
    let e = e.to_string();
    assert!(
        e.contains("bad_kwargs.th") && e.contains("`sources` is int 1"),
        "{e}"
    );
    let e = pkg.samplerate().unwrap_err().to_string();
    assert!(
        e.contains("`samplerate` is str \"44100\", expected a positive int"),
        "{e}"
    );
    let e = pkg.segment().unwrap_err().to_string();
    assert!(e.contains("`segment` is int 0"), "{e}");
    let e = pkg.audio_channels().unwrap_err();
    match &e {
        WeightsError::MissingKwarg { key, file } => {
            assert_eq!(key, "audio_channels");
            assert!(file.ends_with("bad_kwargs.th"));
        }
        other => panic!("{other}"),
    }
    // An unused `Other` value does not fail deserialization, a used one does.
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Blob {
        blob: Vec<u8>,
    }
    let e = pkg.deserialize_kwargs::<Blob>().unwrap_err().to_string();
    assert!(e.contains("`blob`: a bytes is not a plain value"), "{e}");
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Segment {
        segment: u32,
    }
    pkg.deserialize_kwargs::<Segment>().unwrap();

    // Not a package: a plain state dict, a package without kwargs or with a quantized state.
    let e = load_demucs_package(&fixture("plain.pt")).unwrap_err();
    assert!(matches!(e, WeightsError::NotDemucsPackage { .. }), "{e}");
    assert!(e.to_string().contains("no `klass` entry"), "{e}");
    let mut pkl = b"\x80\x02}(".to_vec();
    pkl.extend(pkl_str("klass"));
    pkl.extend(b"cdemucs.demucs\nDemucs\n");
    pkl.extend(pkl_str("state"));
    pkl.extend(b"}u.");
    let e = load_pickle_with("nokwargs.th", &pkl, &[], load_demucs_package).unwrap_err();
    assert!(e.to_string().contains("no `kwargs` entry"), "{e}");
    let mut pkl = b"\x80\x02}(".to_vec();
    pkl.extend(pkl_str("klass"));
    pkl.extend(b"cdemucs.demucs\nDemucs\n");
    pkl.extend(pkl_str("kwargs"));
    pkl.push(b'}');
    pkl.extend(pkl_str("state"));
    pkl.push(b'}');
    pkl.extend(pkl_str("__quantized"));
    pkl.extend(b"]su.");
    let e = load_pickle_with("quantized.th", &pkl, &[], load_demucs_package).unwrap_err();
    assert!(e.to_string().contains("quantized (diffq)"), "{e}");
}

#[test]
fn shared_kwargs_cannot_blow_up() {
    // Pairs of the previous pair, 24 deep through the memo: 2^24 values if expanded.
    let mut value = b"]q\x00".to_vec();
    for i in 1..=24u8 {
        // The pair on the stack and its memo copy make the next pair.
        value.extend([b'h', i - 1, 0x86, b'q', i]);
    }
    let e = load_package("blowup.th", &kw("x", &value)).unwrap_err();
    assert!(matches!(e, WeightsError::NotDemucsPackage { .. }), "{e}");
    assert!(e.to_string().contains("more than 100000 values"), "{e}");
    // A list that contains itself.
    let e = load_package("cyclic.th", &kw("x", b"]q\x00h\x00a")).unwrap_err();
    assert!(e.to_string().contains("deeper than"), "{e}");
}

#[test]
fn fuzzed_demucs_package_never_panics() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/htdemucs/htdemucs_4stem/model.th");
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut pkl = Vec::new();
    zip.by_name("model/data.pkl")
        .unwrap()
        .read_to_end(&mut pkl)
        .unwrap();
    let select = |v: &pickle::Value| demucs_package::select_package(v).map(|_| ());
    assert_eq!(pickle::unpickle(&pkl, select).ok(), Some(Ok(())));
    // Truncations inside the klass/kwargs part, and random byte changes anywhere.
    for n in 0..1600.min(pkl.len()) {
        let _ = pickle::unpickle(&pkl[..n], select);
    }
    let mut rng = Lcg(13);
    for _ in 0..1000 {
        let mut p = pkl.clone();
        for _ in 0..1 + rng.next() % 4 {
            // Mostly the kwargs (the first 1.5 KB), sometimes the state.
            let i = if rng.next().is_multiple_of(4) {
                rng.next() % p.len()
            } else {
                rng.next() % 1600.min(p.len())
            };
            p[i] = rng.next() as u8;
        }
        let _ = pickle::unpickle(&p, select);
    }
}
