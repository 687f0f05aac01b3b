//! PyTorch zip checkpoints (`torch.save`, the zip serialization of PyTorch >= 1.6).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;
use std::rc::Rc;

use candle_core::{Device, Tensor};

use super::pickle::{self, PickleError, PtDtype, TensorRef, Value};
use super::WeightsError;

/// Largest `data.pkl` accepted (real ones are a few hundred KB).
const MAX_PICKLE_BYTES: u64 = 1 << 30;
/// Keys under which training scripts nest the state dict, in the order they are tried.
const WRAPPER_KEYS: [&str; 4] = ["state_dict", "model_state_dict", "model", "state"];
/// How deep wrappers may nest.
const MAX_WRAPPER_DEPTH: usize = 8;
/// A view may repeat storage elements (stride 0), but not blow up beyond this many elements
/// when the storage is smaller.
const MAX_EXPANDED_NUMEL: usize = 1 << 24;

/// The tensors a selector picks from the unpickled object, by name.
pub(super) type Entries = Vec<(String, Rc<TensorRef>)>;

pub(super) fn load(path: &Path) -> Result<BTreeMap<String, Tensor>, WeightsError> {
    let (tensors, ()) = load_with(path, |top| {
        select_tensors(top)
            .map(|entries| (entries, ()))
            .map_err(|reason| WeightsError::NoStateDict {
                file: path.to_path_buf(),
                reason,
            })
    })?;
    Ok(tensors)
}

/// Reads a torch zip whose tensors `select` picks out of the unpickled object, along with
/// whatever else it extracts from it. The storages are read only once `select` succeeds.
pub(super) fn load_with<T>(
    path: &Path,
    select: impl FnOnce(&Value) -> Result<(Entries, T), WeightsError>,
) -> Result<(BTreeMap<String, Tensor>, T), WeightsError> {
    let file = path.to_path_buf();
    let f = File::open(path).map_err(|source| WeightsError::Io {
        file: file.clone(),
        source,
    })?;
    let mut zip = zip::ZipArchive::new(BufReader::new(f)).map_err(|e| WeightsError::Truncated {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    let corrupt = |reason: String| WeightsError::Corrupt {
        file: file.clone(),
        reason,
    };

    // The pickle sits at `<prefix>/data.pkl`; take the shallowest one.
    let pkl_name = zip
        .file_names()
        .filter_map(Result::ok)
        .filter(|n| n.as_ref() == "data.pkl" || n.ends_with("/data.pkl"))
        .min_by_key(|n| (n.matches('/').count(), n.len()))
        .map(|n| n.into_owned())
        .ok_or_else(|| {
            corrupt("the archive has no data.pkl (not a torch.save checkpoint?)".into())
        })?;
    let prefix = pkl_name.strip_suffix("data.pkl").unwrap_or("").to_string();

    let byteorder_name = format!("{prefix}byteorder");
    if zip.index_for_name(&byteorder_name).is_some() {
        let raw = read_entry(&mut zip, &byteorder_name, None, 64).map_err(corrupt)?;
        let order = String::from_utf8_lossy(&raw).trim().to_string();
        match order.as_str() {
            "little" => {}
            "big" => return Err(WeightsError::BigEndian { file }),
            other => return Err(corrupt(format!("unknown byteorder {other:?}"))),
        }
    }

    let pkl = read_entry(&mut zip, &pkl_name, None, MAX_PICKLE_BYTES).map_err(corrupt)?;
    let picked = pickle::unpickle(&pkl, select).map_err(|e| match e {
        PickleError::Forbidden { module, name } => WeightsError::ForbiddenGlobal {
            file: file.clone(),
            module,
            name,
        },
        PickleError::Opcode { opcode, pos } => WeightsError::UnsupportedOpcode {
            file: file.clone(),
            opcode,
            name: pickle::opcode_label(opcode),
            pos,
        },
        PickleError::Malformed { pos, msg } => WeightsError::Pickle {
            file: file.clone(),
            pos,
            reason: msg,
        },
    })?;
    let (entries, extracted) = picked?;

    // Read each storage once and cut every tensor that views it out of it.
    let mut by_storage: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, (_, t)) in entries.iter().enumerate() {
        by_storage
            .entry(t.storage.key.as_str())
            .or_default()
            .push(i);
    }
    let mut out: HashMap<usize, Tensor> = HashMap::with_capacity(entries.len());
    for (key, idxs) in &by_storage {
        let Some(first) = idxs.first().and_then(|&i| entries.get(i)) else {
            continue;
        };
        let storage = &first.1.storage;
        let storage_err = |reason: String| WeightsError::Storage {
            file: file.clone(),
            key: key.to_string(),
            reason,
        };
        let nbytes = storage
            .numel
            .checked_mul(storage.dtype.size() as u64)
            .ok_or_else(|| storage_err(format!("size {} overflows", storage.numel)))?;
        let raw = read_entry(
            &mut zip,
            &format!("{prefix}data/{key}"),
            Some(nbytes),
            nbytes,
        )
        .map_err(storage_err)?;
        for &i in idxs {
            let Some((name, t)) = entries.get(i) else {
                continue;
            };
            if t.storage.dtype != storage.dtype || t.storage.numel != storage.numel {
                return Err(storage_err(format!(
                    "tensor `{name}` disagrees with another tensor on its type or size"
                )));
            }
            let tensor = materialize(&raw, t)
                .map_err(|reason| storage_err(format!("tensor `{name}`: {reason}")))?;
            out.insert(i, tensor);
        }
    }
    let mut tensors = BTreeMap::new();
    for (i, (name, _)) in entries.into_iter().enumerate() {
        if let Some(t) = out.remove(&i) {
            tensors.insert(name, t);
        }
    }
    Ok((tensors, extracted))
}

/// Reads one archive entry whole. `expected`: the size it must have; `limit`: the most to read.
fn read_entry<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    expected: Option<u64>,
    limit: u64,
) -> Result<Vec<u8>, String> {
    let entry = zip.by_name(name).map_err(|e| match e {
        zip::result::ZipError::FileNotFound => format!("the archive has no entry {name}"),
        e => format!("cannot open {name}: {e}"),
    })?;
    let declared = entry.size();
    if let Some(expected) = expected {
        if declared != expected {
            return Err(format!(
                "{name} holds {declared} bytes, expected {expected}"
            ));
        }
    }
    if declared > limit {
        return Err(format!("{name} is too large ({declared} bytes)"));
    }
    let mut buf = Vec::with_capacity(usize::try_from(declared).unwrap_or(0));
    entry
        .take(limit)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read {name}: {e}"))?;
    if buf.len() as u64 != declared {
        return Err(format!(
            "{name} is truncated: {} of {declared} bytes",
            buf.len()
        ));
    }
    Ok(buf)
}

/// Finds the state dict in the unpickled object: either the object itself or a dict nested
/// under a wrapper key. Returns its tensor entries (non-tensor entries are skipped).
fn select_tensors(top: &Value) -> Result<Entries, String> {
    if let Some(entries) = find_state_dict(top, 0) {
        return Ok(entries);
    }
    Err(match top {
        Value::Dict(d) => {
            let keys: Vec<String> = d
                .try_borrow()
                .map(|d| {
                    d.0.iter()
                        .take(12)
                        .map(|(k, _)| {
                            k.as_str()
                                .map_or_else(|| format!("<{}>", k.kind()), |s| format!("{s:?}"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "no tensors found: the top-level dict has keys [{}] and none holds a state dict",
                keys.join(", ")
            )
        }
        other => format!(
            "no tensors found: the top-level object is a {}, not a dict",
            other.kind()
        ),
    })
}

pub(super) fn find_state_dict(v: &Value, depth: usize) -> Option<Entries> {
    if depth > MAX_WRAPPER_DEPTH {
        return None;
    }
    let Value::Dict(d) = v else { return None };
    let d = d.try_borrow().ok()?;
    for wrapper in WRAPPER_KEYS {
        for (k, inner) in &d.0 {
            if k.as_str() == Some(wrapper) {
                if let Some(found) = find_state_dict(inner, depth + 1) {
                    return Some(found);
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut skipped = 0usize;
    for (k, v) in &d.0 {
        match (k.as_str(), v) {
            (Some(name), Value::Tensor(t)) => out.push((name.to_string(), t.clone())),
            _ => skipped += 1,
        }
    }
    if out.is_empty() {
        return None;
    }
    if skipped > 0 {
        tracing::debug!("skipped {skipped} non-tensor entries of the state dict");
    }
    Some(out)
}

/// Cuts a tensor out of its storage bytes (honouring offset and strides) as a CPU tensor:
/// floats become F32, integers and bools I64.
fn materialize(raw: &[u8], t: &TensorRef) -> Result<Tensor, String> {
    let dtype = t.storage.dtype;
    let es = dtype.size();
    let storage_numel = raw.len() / es;
    let mut numel: usize = 1;
    let mut last: u64 = t.offset;
    for (&n, &s) in t.size.iter().zip(&t.stride) {
        numel = numel.checked_mul(n).ok_or("its element count overflows")?;
        if n > 0 {
            let reach = (n as u64 - 1)
                .checked_mul(s as u64)
                .ok_or("its strides overflow")?;
            last = last.checked_add(reach).ok_or("its strides overflow")?;
        }
    }
    let elems = if numel == 0 {
        Elems::Range(0, 0)
    } else {
        if last >= storage_numel as u64 {
            return Err(format!(
                "offset {} with size {:?} and stride {:?} reaches element {last} of a storage of {storage_numel}",
                t.offset, t.size, t.stride
            ));
        }
        if numel > storage_numel.max(MAX_EXPANDED_NUMEL) {
            return Err(format!(
                "{numel} elements from a storage of {storage_numel}"
            ));
        }
        // `last` < storage_numel, so every index below fits in usize.
        let offset = t.offset as usize;
        if is_contiguous(&t.size, &t.stride) {
            Elems::Range(offset, numel)
        } else {
            Elems::List(strided_indices(offset, &t.size, &t.stride, numel))
        }
    };
    let shape = t.size.as_slice();
    let cpu = &Device::Cpu;
    let tensor = match dtype {
        PtDtype::F32 => Tensor::from_vec(
            convert(raw, &elems, |b: [u8; 4]| f32::from_le_bytes(b))?,
            shape,
            cpu,
        ),
        PtDtype::F16 => Tensor::from_vec(
            convert(raw, &elems, |b: [u8; 2]| {
                half::f16::from_le_bytes(b).to_f32()
            })?,
            shape,
            cpu,
        ),
        PtDtype::BF16 => Tensor::from_vec(
            convert(raw, &elems, |b: [u8; 2]| {
                half::bf16::from_le_bytes(b).to_f32()
            })?,
            shape,
            cpu,
        ),
        PtDtype::F64 => Tensor::from_vec(
            convert(raw, &elems, |b: [u8; 8]| f64::from_le_bytes(b) as f32)?,
            shape,
            cpu,
        ),
        PtDtype::I64 => Tensor::from_vec(convert(raw, &elems, i64::from_le_bytes)?, shape, cpu),
        PtDtype::I32 => Tensor::from_vec(
            convert(raw, &elems, |b: [u8; 4]| i64::from(i32::from_le_bytes(b)))?,
            shape,
            cpu,
        ),
        PtDtype::I16 => Tensor::from_vec(
            convert(raw, &elems, |b: [u8; 2]| i64::from(i16::from_le_bytes(b)))?,
            shape,
            cpu,
        ),
        PtDtype::I8 => Tensor::from_vec(
            convert(raw, &elems, |b: [u8; 1]| i64::from(i8::from_le_bytes(b)))?,
            shape,
            cpu,
        ),
        PtDtype::U8 | PtDtype::Bool => Tensor::from_vec(
            convert(raw, &elems, |b: [u8; 1]| i64::from(b[0]))?,
            shape,
            cpu,
        ),
    };
    tensor.map_err(|e| e.to_string())
}

fn is_contiguous(size: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&n, &s) in size.iter().zip(stride).rev() {
        if n != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(n);
    }
    true
}

fn strided_indices(offset: usize, size: &[usize], stride: &[usize], numel: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(numel);
    let mut idx = vec![0usize; size.len()];
    let mut pos = offset;
    for _ in 0..numel {
        out.push(pos);
        // Odometer increment, last dimension fastest.
        for d in (0..size.len()).rev() {
            let (n, s) = (
                size.get(d).copied().unwrap_or(1),
                stride.get(d).copied().unwrap_or(0),
            );
            let Some(i) = idx.get_mut(d) else { break };
            *i += 1;
            pos = pos.wrapping_add(s);
            if *i < n {
                break;
            }
            pos = pos.wrapping_sub(s.wrapping_mul(n));
            *i = 0;
        }
    }
    out
}

/// Which storage elements a tensor reads, in row-major order.
enum Elems {
    /// `(first, count)`: a contiguous run.
    Range(usize, usize),
    List(Vec<usize>),
}

/// Decodes the elements `elems` of `raw`.
fn convert<const N: usize, T>(
    raw: &[u8],
    elems: &Elems,
    f: impl Fn([u8; N]) -> T,
) -> Result<Vec<T>, String> {
    let mut buf = [0u8; N];
    match elems {
        Elems::Range(first, count) => {
            let bytes = first
                .checked_mul(N)
                .zip(first.checked_add(*count).and_then(|end| end.checked_mul(N)))
                .and_then(|(start, end)| raw.get(start..end))
                .ok_or("its elements lie outside the storage")?;
            Ok(bytes
                .chunks_exact(N)
                .map(|c| {
                    buf.copy_from_slice(c);
                    f(buf)
                })
                .collect())
        }
        Elems::List(list) => {
            let mut out = Vec::with_capacity(list.len());
            for &e in list {
                let start = e.checked_mul(N).ok_or("element index overflows")?;
                let bytes = start
                    .checked_add(N)
                    .and_then(|end| raw.get(start..end))
                    .ok_or_else(|| format!("element {e} lies outside the storage"))?;
                buf.copy_from_slice(bytes);
                out.push(f(buf));
            }
            Ok(out)
        }
    }
}
