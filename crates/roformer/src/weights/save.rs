//! Writing `.safetensors` files that PyTorch loads unchanged.
//!
//! [`save_safetensors`] writes every tensor under its name as given (the PyTorch state-dict
//! names, after [`load_state_dict`](super::load_state_dict)'s prefix stripping), floats as
//! little-endian `F32` and integers as little-endian `I64`, so that
//! `model.load_state_dict(safetensors.torch.load_file(path), strict=True)` works in PyTorch.
//!
//! The file appears atomically ([`crate::atomic_file`]): it is written under a hidden temporary
//! name next to `path`, synced, then renamed over `path`. On any error nothing is left behind and an existing file
//! at `path` is untouched.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use candle_core::{DType, Tensor};

use super::WeightsError;
use crate::atomic_file::AtomicFile;

/// The largest header the `safetensors` readers accept.
const MAX_HEADER: usize = 100_000_000;

/// Writes `tensors` and the string `metadata` (the safetensors `__metadata__`) to `path`,
/// atomically. Float tensors (`F16`, `BF16`, `F32`, `F64`) are stored as `F32`, integer tensors
/// as `I64`; any other type is an error, and nothing is written.
///
/// The bytes depend only on the arguments (metadata and tensors are written in sorted order),
/// so converting the same checkpoint twice gives identical files. Tensors are converted one at
/// a time while writing, so memory stays at the tensors plus one converted tensor.
pub fn save_safetensors(
    tensors: &BTreeMap<String, Tensor>,
    metadata: &HashMap<String, String>,
    path: &Path,
) -> Result<(), WeightsError> {
    let file = path.to_path_buf();
    let write_err = |reason: String| WeightsError::Write {
        file: file.clone(),
        reason,
    };

    // Integers first (8-byte elements), then floats, each by name: every tensor's data then
    // starts at a multiple of its element size, as the reference writer arranges it.
    let mut entries = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let kind = match tensor.dtype() {
            DType::U8 | DType::U32 | DType::I16 | DType::I32 | DType::I64 => Kind::I64,
            DType::F16 | DType::BF16 | DType::F32 | DType::F64 => Kind::F32,
            other => {
                return Err(WeightsError::UnsupportedDtype {
                    file: file.clone(),
                    name: name.clone(),
                    dtype: format!("{other:?}"),
                })
            }
        };
        entries.push((kind, name.as_str(), tensor));
    }
    entries.sort_by_key(|&(kind, name, _)| (kind, name));
    let header = header(metadata, &entries);
    if header.len() > MAX_HEADER {
        return Err(write_err(format!(
            "the header would take {} bytes, more than the {MAX_HEADER} readers accept",
            header.len()
        )));
    }

    let mut out = AtomicFile::create(path).map_err(|e| write_err(e.to_string()))?;
    let temp = out.temp_path().to_path_buf();
    let io_err = |e: std::io::Error| write_err(format!("{}: {e}", temp.display()));
    let w = out.writer();
    w.write_all(&(header.len() as u64).to_le_bytes())
        .and_then(|()| w.write_all(header.as_bytes()))
        .map_err(io_err)?;
    for &(kind, name, tensor) in &entries {
        let bytes = le_bytes(kind, tensor)
            .map_err(|e| write_err(format!("cannot convert tensor `{name}`: {e}")))?;
        w.write_all(&bytes).map_err(io_err)?;
    }
    out.commit().map_err(|e| write_err(e.to_string()))
}

/// How a tensor is stored; the order is the order in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    I64,
    F32,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::I64 => "I64",
            Kind::F32 => "F32",
        }
    }
    fn size(self) -> usize {
        match self {
            Kind::I64 => 8,
            Kind::F32 => 4,
        }
    }
}

/// The JSON header, padded with spaces to a multiple of 8 bytes (so the data is aligned).
fn header(metadata: &HashMap<String, String>, entries: &[(Kind, &str, &Tensor)]) -> String {
    let mut h = String::from("{");
    if !metadata.is_empty() {
        h.push_str("\"__metadata__\":{");
        let sorted: BTreeMap<&String, &String> = metadata.iter().collect();
        for (i, (k, v)) in sorted.into_iter().enumerate() {
            if i > 0 {
                h.push(',');
            }
            json_string(&mut h, k);
            h.push(':');
            json_string(&mut h, v);
        }
        h.push('}');
    }
    let mut offset = 0usize;
    for (i, &(kind, name, tensor)) in entries.iter().enumerate() {
        if i > 0 || !metadata.is_empty() {
            h.push(',');
        }
        let len = tensor.elem_count() * kind.size();
        json_string(&mut h, name);
        let shape: Vec<String> = tensor.dims().iter().map(usize::to_string).collect();
        h.push_str(&format!(
            ":{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
            kind.name(),
            shape.join(","),
            offset,
            offset + len
        ));
        offset += len;
    }
    h.push('}');
    while h.len() % 8 != 0 {
        h.push(' ');
    }
    h
}

/// Appends `s` as a JSON string literal.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The tensor's elements in logical (row-major) order, little-endian.
fn le_bytes(kind: Kind, tensor: &Tensor) -> candle_core::Result<Vec<u8>> {
    let flat = tensor.flatten_all()?;
    Ok(match kind {
        Kind::I64 => flat
            .to_dtype(DType::I64)?
            .to_vec1::<i64>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        Kind::F32 => flat
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::load_state_dict;
    use candle_core::Device;
    use std::path::PathBuf;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("roformer-save-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn sample() -> BTreeMap<String, Tensor> {
        let cpu = &Device::Cpu;
        let mut t = BTreeMap::new();
        let w = Tensor::arange(0f32, 12.0, cpu)
            .unwrap()
            .reshape((3, 4))
            .unwrap();
        // A non-contiguous view is written in logical order.
        t.insert("layers.0.weight".to_string(), w.t().unwrap());
        t.insert(
            "band.indices".to_string(),
            Tensor::new(&[3i64, -1, i64::MAX], cpu).unwrap(),
        );
        t.insert("scalar".to_string(), Tensor::new(0.5f64, cpu).unwrap());
        t
    }

    #[test]
    fn round_trips_tensors_dtypes_and_metadata() {
        let dir = scratch("round-trip");
        let path = dir.join("m.safetensors");
        let tensors = sample();
        let meta = HashMap::from([
            (
                "msst_config".to_string(),
                "a: 1\n\"b\": [2]\t\\ \u{1} é ♪\r\n".to_string(),
            ),
            ("format".to_string(), "pt".to_string()),
            ("ünïcode \"key\"".to_string(), String::new()),
        ]);
        save_safetensors(&tensors, &meta, &path).unwrap();
        let back = load_state_dict(&path).unwrap();
        assert_eq!(back.metadata, meta);
        assert_eq!(
            back.keys().collect::<Vec<_>>(),
            ["band.indices", "layers.0.weight", "scalar"]
        );
        let w = back.get("layers.0.weight").unwrap();
        assert_eq!(w.dtype(), DType::F32);
        assert_eq!(w.dims(), [4, 3]);
        assert_eq!(
            w.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            tensors["layers.0.weight"]
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        );
        let i = back.get("band.indices").unwrap();
        assert_eq!(i.dtype(), DType::I64);
        assert_eq!(i.to_vec1::<i64>().unwrap(), [3, -1, i64::MAX]);
        let s = back.get("scalar").unwrap();
        assert_eq!((s.dtype(), s.dims()), (DType::F32, &[][..]));
        assert_eq!(s.to_scalar::<f32>().unwrap(), 0.5);
        // Deterministic: the same arguments give the same bytes, whatever the map order.
        let again = dir.join("again.safetensors");
        let mut pairs: Vec<_> = meta.clone().into_iter().collect();
        pairs.sort();
        let meta2: HashMap<String, String> = pairs.into_iter().rev().collect();
        save_safetensors(&tensors, &meta2, &again).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&again).unwrap()
        );
        std::fs::remove_file(&again).unwrap();
        // Only the output file is left.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn no_metadata_and_no_tensors_are_valid_files() {
        let dir = scratch("empty");
        let path = dir.join("e.safetensors");
        save_safetensors(&BTreeMap::new(), &HashMap::new(), &path).unwrap();
        let back = load_state_dict(&path).unwrap();
        assert!(back.is_empty() && back.metadata.is_empty());
        save_safetensors(&sample(), &HashMap::new(), &path).unwrap();
        assert_eq!(load_state_dict(&path).unwrap().len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failures_leave_no_file_and_keep_the_old_one() {
        let dir = scratch("failures");
        let path = dir.join("m.safetensors");
        std::fs::write(&path, b"old").unwrap();
        let mut tensors = sample();
        tensors.insert(
            "fp8".to_string(),
            Tensor::zeros(2, DType::F8E4M3, &Device::Cpu).unwrap(),
        );
        let err = save_safetensors(&tensors, &HashMap::new(), &path).unwrap_err();
        assert!(err.to_string().contains("fp8"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

        let missing = dir.join("no/such/dir/m.safetensors");
        let err = save_safetensors(&sample(), &HashMap::new(), &missing).unwrap_err();
        assert!(err.to_string().contains("m.safetensors"), "{err}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
