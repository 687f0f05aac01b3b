//! `.safetensors` files.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};
use safetensors::{Dtype, SafeTensors};

use super::WeightsError;

pub(super) type Loaded = (BTreeMap<String, Tensor>, HashMap<String, String>);

pub(super) fn load(path: &Path) -> Result<Loaded, WeightsError> {
    let buf = std::fs::read(path).map_err(|source| WeightsError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    parse(&buf, path)
}

/// The tensors and metadata of safetensors bytes; `path` names them in errors.
pub(super) fn parse(buf: &[u8], path: &Path) -> Result<Loaded, WeightsError> {
    let file = path.to_path_buf();
    let bad = |reason: String| WeightsError::Safetensors {
        file: file.clone(),
        reason,
    };
    let (_, meta) = SafeTensors::read_metadata(buf).map_err(|e| bad(describe(&e, buf.len())))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(buf).map_err(|e| bad(describe(&e, buf.len())))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let data = view.data();
        let cpu = &Device::Cpu;
        let t = match view.dtype() {
            Dtype::F32 => Tensor::from_vec(
                convert(data, |b: [u8; 4]| f32::from_le_bytes(b)),
                shape,
                cpu,
            ),
            Dtype::F16 => Tensor::from_vec(
                convert(data, |b: [u8; 2]| half::f16::from_le_bytes(b).to_f32()),
                shape,
                cpu,
            ),
            Dtype::BF16 => Tensor::from_vec(
                convert(data, |b: [u8; 2]| half::bf16::from_le_bytes(b).to_f32()),
                shape,
                cpu,
            ),
            Dtype::F64 => Tensor::from_vec(
                convert(data, |b: [u8; 8]| f64::from_le_bytes(b) as f32),
                shape,
                cpu,
            ),
            Dtype::I64 => Tensor::from_vec(convert(data, i64::from_le_bytes), shape, cpu),
            Dtype::I32 => Tensor::from_vec(
                convert(data, |b: [u8; 4]| i64::from(i32::from_le_bytes(b))),
                shape,
                cpu,
            ),
            Dtype::I16 => Tensor::from_vec(
                convert(data, |b: [u8; 2]| i64::from(i16::from_le_bytes(b))),
                shape,
                cpu,
            ),
            Dtype::I8 => Tensor::from_vec(
                convert(data, |b: [u8; 1]| i64::from(i8::from_le_bytes(b))),
                shape,
                cpu,
            ),
            Dtype::U32 => Tensor::from_vec(
                convert(data, |b: [u8; 4]| i64::from(u32::from_le_bytes(b))),
                shape,
                cpu,
            ),
            Dtype::U16 => Tensor::from_vec(
                convert(data, |b: [u8; 2]| i64::from(u16::from_le_bytes(b))),
                shape,
                cpu,
            ),
            Dtype::U8 | Dtype::BOOL => {
                Tensor::from_vec(convert(data, |b: [u8; 1]| i64::from(b[0])), shape, cpu)
            }
            other => {
                return Err(WeightsError::UnsupportedDtype {
                    file,
                    name,
                    dtype: format!("{other:?}"),
                })
            }
        };
        let t = t.map_err(|e| bad(format!("tensor `{name}`: {e}")))?;
        tensors.insert(name, t);
    }
    Ok((tensors, metadata))
}

fn describe(e: &safetensors::SafeTensorError, len: usize) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::MetadataIncompleteBuffer | E::InvalidHeaderLength => {
            format!(
                "the file ({len} bytes) is truncated or its header lies about the data size ({e})"
            )
        }
        e => format!("invalid header: {e}"),
    }
}

/// Decodes little-endian elements. The crate has already checked that `data` matches the
/// tensor's shape and dtype; a trailing partial element (impossible) would be dropped.
fn convert<const N: usize, T>(data: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    data.chunks_exact(N)
        .map(|c| {
            let mut buf = [0u8; N];
            buf.copy_from_slice(c);
            f(buf)
        })
        .collect()
}
