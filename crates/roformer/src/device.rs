//! Choosing the compute backend at run time: `cpu`, `cuda[:N]`, `metal[:N]`.

use candle_core::Device;

use crate::error::{Error, Result};

/// Parses a device name and opens it; backends not compiled in give a clear error.
pub fn open_device(name: &str) -> Result<Device> {
    let name = name.trim().to_ascii_lowercase();
    let (kind, index) = match name.split_once(':') {
        Some((k, i)) => {
            let index = i
                .parse::<usize>()
                .map_err(|_| Error::Device(name.clone(), format!("`{i}` is not a device index")))?;
            (k.to_string(), index)
        }
        None => (name.clone(), 0),
    };
    match kind.as_str() {
        "cpu" => Ok(Device::Cpu),
        "cuda" | "gpu" => {
            if !candle_core::utils::cuda_is_available() {
                return Err(Error::Device(
                    name,
                    "this binary was built without CUDA (rebuild with `--features cuda`)".into(),
                ));
            }
            Device::new_cuda(index).map_err(|e| Error::Device(name, e.to_string()))
        }
        "metal" | "mps" => {
            if !candle_core::utils::metal_is_available() {
                return Err(Error::Device(
                    name,
                    "this binary was built without Metal (rebuild with `--features metal`)".into(),
                ));
            }
            Device::new_metal(index).map_err(|e| Error::Device(name, e.to_string()))
        }
        _ => Err(Error::Device(
            name,
            "expected cpu, cuda, cuda:N, metal or metal:N".into(),
        )),
    }
}
