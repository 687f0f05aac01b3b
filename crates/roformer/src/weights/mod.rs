//! Reading checkpoints: PyTorch zip-pickles (`.ckpt`/`.pth`) and safetensors.
//!
//! [`load_state_dict`] reads every tensor of a checkpoint into CPU memory (floats as `F32`,
//! integers and bools as `I64`). PyTorch pickles are read by a restricted unpickler that only
//! rebuilds tensors and plain containers: a checkpoint that asks for anything else (say
//! `os.system`) is refused, never run. Facebook demucs checkpoints (`.th`, the model class,
//! its constructor arguments and an fp16 state) are read by [`load_demucs_package`].
//!
//! Model code then takes its tensors by name, checking shapes, through [`StateDict::take`] or
//! the prefix-joining [`WeightsView`], and calls [`StateDict::finish`] to reject leftovers:
//!
//! ```ignore
//! let mut sd = load_state_dict(path)?;
//! let mut vb = sd.root();
//! let w = vb.pp("layers").pp(0).take("weight", &[out_dim, in_dim])?;
//! sd.finish()?;
//! ```

mod demucs_package;
mod pickle;
mod safetensors_file;
pub mod save;
mod synthetic;
#[cfg(test)]
mod tests;
mod torch_zip;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use candle_core::Tensor;

pub use demucs_package::{load_demucs_package, DemucsPackage, KwargValue};
pub use save::save_safetensors;
pub use synthetic::SplitMix64;

/// Why a checkpoint could not be read, or does not fit the model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WeightsError {
    /// The file cannot be read.
    #[error("cannot read checkpoint {}: {source}", .file.display())]
    Io {
        /// The file involved.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The file ends early or is not a zip archive.
    #[error("checkpoint {} is truncated or not a zip archive: {reason}", .file.display())]
    Truncated {
        /// The file involved.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },

    #[error(
        "checkpoint {} uses the legacy (pre-1.6) torch.save format, which is not supported: \
         re-save it with torch.save (e.g. `torch.save(torch.load(f), f)` in PyTorch >= 1.6)",
        .file.display()
    )]
    /// A pre-1.6 `torch.save` file.
    LegacyFormat {
        /// The file involved.
        file: PathBuf,
    },

    /// Neither a PyTorch zip nor a safetensors file.
    #[error("{} is neither a PyTorch checkpoint (zip) nor a safetensors file", .file.display())]
    UnknownFormat {
        /// The file involved.
        file: PathBuf,
    },

    /// The archive is damaged.
    #[error("checkpoint {} is corrupt: {reason}", .file.display())]
    Corrupt {
        /// The file involved.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// Saved on a big-endian machine.
    #[error("checkpoint {} was saved on a big-endian machine, which is not supported", .file.display())]
    BigEndian {
        /// The file involved.
        file: PathBuf,
    },

    #[error(
        "checkpoint {} asks pickle to call `{module}.{name}`: only tensor rebuilding and plain \
         containers are allowed",
        .file.display()
    )]
    /// The pickle asks for a callable beyond rebuilding tensors (refused; nothing runs).
    ForbiddenGlobal {
        /// The file involved.
        file: PathBuf,
        /// Module of the refused callable.
        module: String,
        /// Name of the refused callable.
        name: String,
    },

    #[error(
        "checkpoint {} uses pickle opcode {name} (0x{opcode:02x}) at byte {pos} of data.pkl, \
         which this loader does not support",
        .file.display()
    )]
    /// A pickle opcode the restricted reader does not implement.
    UnsupportedOpcode {
        /// The file involved.
        file: PathBuf,
        /// The opcode byte.
        opcode: u8,
        /// The opcode's name.
        name: &'static str,
        /// Byte offset in `data.pkl`.
        pos: usize,
    },

    /// A malformed pickle stream.
    #[error("checkpoint {} has a malformed data.pkl (at byte {pos}): {reason}", .file.display())]
    Pickle {
        /// The file involved.
        file: PathBuf,
        /// Byte offset in `data.pkl`.
        pos: usize,
        /// What is wrong.
        reason: String,
    },

    /// A tensor storage that is missing or does not fit its tensor.
    #[error("checkpoint {}: storage `{key}`: {reason}", .file.display())]
    Storage {
        /// The file involved.
        file: PathBuf,
        /// The storage key.
        key: String,
        /// What is wrong.
        reason: String,
    },

    /// No dictionary of tensors where the state dict should be.
    #[error("checkpoint {} holds no state dict: {reason}", .file.display())]
    NoStateDict {
        /// The file involved.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// Not a demucs checkpoint (`serialize_model`'s dict of `klass`, `args`, `kwargs`, `state`).
    #[error("{} is not a demucs model package: {reason}", .file.display())]
    NotDemucsPackage {
        /// The file involved.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A demucs checkpoint lacks a constructor argument the model needs.
    #[error("demucs checkpoint {} has no `{key}` keyword argument", .file.display())]
    MissingKwarg {
        /// The file involved.
        file: PathBuf,
        /// The argument's name.
        key: String,
    },

    /// A constructor argument of a demucs checkpoint has the wrong type or value.
    #[error(
        "demucs checkpoint {}: keyword argument `{key}` is {found}, expected {expected}",
        .file.display()
    )]
    KwargType {
        /// The file involved.
        file: PathBuf,
        /// The argument's name.
        key: String,
        /// What it should be.
        expected: String,
        /// What it is.
        found: String,
    },

    /// The constructor arguments of a demucs checkpoint do not fit the model's config.
    #[error("demucs checkpoint {}: its keyword arguments do not fit: {reason}", .file.display())]
    KwargsInvalid {
        /// The file involved.
        file: PathBuf,
        /// What is wrong (names the argument).
        reason: String,
    },

    /// An invalid safetensors file.
    #[error("safetensors file {} is invalid: {reason}", .file.display())]
    Safetensors {
        /// The file involved.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A tensor type other than the floating-point ones we read.
    #[error("tensor `{name}` in {} has type {dtype}, which is not supported", .file.display())]
    UnsupportedDtype {
        /// The file involved.
        file: PathBuf,
        /// The tensor's name.
        name: String,
        /// Its type.
        dtype: String,
    },

    /// The file could not be written.
    #[error("cannot write {}: {reason}", .file.display())]
    Write {
        /// The file involved.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The model needs a tensor the checkpoint lacks.
    #[error("missing tensor `{name}` in {}", .file.display())]
    MissingTensor {
        /// The file involved.
        file: PathBuf,
        /// The tensor's name.
        name: String,
    },

    #[error(
        "tensor `{name}` has shape {found:?} in the checkpoint but the config expects {expected:?} \
         ({})",
        .file.display()
    )]
    /// A tensor whose shape differs from the one the config implies.
    ShapeMismatch {
        /// The file involved.
        file: PathBuf,
        /// The tensor's name.
        name: String,
        /// What was found.
        found: Vec<usize>,
        /// What was expected.
        expected: Vec<usize>,
    },

    #[error(
        "unexpected tensors in checkpoint {}: {names}{}; the config does not match these weights",
        .file.display(),
        and_more(.more)
    )]
    /// Tensors the model does not use (the checkpoint does not fit the config).
    UnexpectedTensors {
        /// The file involved.
        file: PathBuf,
        /// Their names (the first few).
        names: String,
        /// How many more there are beyond those named.
        more: usize,
    },
}

fn and_more(more: &usize) -> String {
    if *more > 0 {
        format!(" (and {more} more)")
    } else {
        String::new()
    }
}

/// All tensors of a checkpoint, by name, on the CPU.
#[derive(Debug, Clone)]
pub struct StateDict {
    /// Tensors by name: floats as `F32`, integers and bools as `I64`.
    pub tensors: BTreeMap<String, Tensor>,
    /// The `__metadata__` of a safetensors file (empty for PyTorch checkpoints).
    pub metadata: HashMap<String, String>,
    /// The file it was read from (for messages).
    pub source: PathBuf,
    /// Set by [`StateDict::synthetic`]: makes up the tensors `take` does not find.
    synthetic: Option<synthetic::Synthetic>,
}

/// Reads a checkpoint: a PyTorch zip (`torch.save`) or a safetensors file, told apart by
/// content. A state dict nested under `state_dict`/`model_state_dict`/`model`/`state` is found,
/// and a `module.`/`model.` prefix shared by all keys is stripped.
pub fn load_state_dict(path: &Path) -> Result<StateDict, WeightsError> {
    let file = path.to_path_buf();
    let mut head = Vec::with_capacity(16);
    std::fs::File::open(path)
        .and_then(|f| f.take(16).read_to_end(&mut head))
        .map_err(|source| WeightsError::Io {
            file: file.clone(),
            source,
        })?;
    let is_safetensors_ext = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));

    let (tensors, metadata) = if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06")
    {
        (torch_zip::load(path)?, HashMap::new())
    } else if head.get(8) == Some(&b'{') || is_safetensors_ext {
        safetensors_file::load(path)?
    } else if head.first() == Some(&0x80) {
        return Err(WeightsError::LegacyFormat { file });
    } else if head.is_empty() {
        return Err(WeightsError::Truncated {
            file,
            reason: "the file is empty".into(),
        });
    } else if head.starts_with(b"PK") {
        return Err(WeightsError::Truncated {
            file,
            reason: "no zip entry at the start".into(),
        });
    } else {
        return Err(WeightsError::UnknownFormat { file });
    };
    let tensors = strip_common_prefixes(tensors);
    tracing::debug!("read {} tensors from {}", tensors.len(), path.display());
    Ok(StateDict::new(tensors, metadata, file))
}

/// A safetensors file already in memory (e.g. built into the binary); `name` stands for its path
/// in messages.
pub fn state_dict_from_safetensors_bytes(
    bytes: &[u8],
    name: &Path,
) -> Result<StateDict, WeightsError> {
    let (tensors, metadata) = safetensors_file::parse(bytes, name)?;
    Ok(StateDict::new(
        strip_common_prefixes(tensors),
        metadata,
        name.to_path_buf(),
    ))
}

/// Strips `module.` / `model.` (repeatedly) when every key carries it.
fn strip_common_prefixes<T>(mut map: BTreeMap<String, T>) -> BTreeMap<String, T> {
    'outer: loop {
        for prefix in ["module.", "model."] {
            let all = !map.is_empty()
                && map
                    .keys()
                    .all(|k| k.len() > prefix.len() && k.starts_with(prefix));
            if all {
                map = map
                    .into_iter()
                    .map(|(k, v)| (k.strip_prefix(prefix).map(str::to_string).unwrap_or(k), v))
                    .collect();
                continue 'outer;
            }
        }
        return map;
    }
}

impl StateDict {
    pub fn new(
        tensors: BTreeMap<String, Tensor>,
        metadata: HashMap<String, String>,
        source: PathBuf,
    ) -> Self {
        Self {
            tensors,
            metadata,
            source,
            synthetic: None,
        }
    }

    /// A state dict without a checkpoint, for benchmarks: every tensor `take` asks for is made up
    /// on the spot with the requested shape (PyTorch-like initial values, deterministic from
    /// `seed` and the tensor's name; see the `synthetic` module), so any config builds. Optional
    /// tensors (`take_opt`) are absent.
    pub fn synthetic(seed: u64) -> Self {
        Self {
            synthetic: Some(synthetic::Synthetic::new(seed)),
            ..Self::new(
                BTreeMap::new(),
                HashMap::new(),
                PathBuf::from(format!("<synthetic weights, seed {seed}>")),
            )
        }
    }

    /// A [`synthetic`](Self::synthetic) dict that keeps what it makes up, for
    /// [`take_made`](Self::take_made): how a model gets initial weights for training.
    pub fn synthetic_recorded(seed: u64) -> Self {
        let mut state = Self::synthetic(seed);
        if let Some(s) = &mut state.synthetic {
            s.made = Some(BTreeMap::new());
        }
        state
    }

    /// The tensors a [`synthetic_recorded`](Self::synthetic_recorded) dict has made up, by name.
    pub fn take_made(&mut self) -> BTreeMap<String, Tensor> {
        self.synthetic
            .as_mut()
            .and_then(|s| s.made.take())
            .unwrap_or_default()
    }

    /// Scalars a [`synthetic`](Self::synthetic) dict has made up so far (0 for a checkpoint).
    pub fn fabricated_parameters(&self) -> usize {
        self.synthetic.as_ref().map_or(0, |s| s.fabricated())
    }

    /// Removes and returns tensor `name`, checking its shape.
    pub fn take(&mut self, name: &str, expected_shape: &[usize]) -> Result<Tensor, WeightsError> {
        if let Some(t) = self.take_opt(name, expected_shape)? {
            return Ok(t);
        }
        match &mut self.synthetic {
            Some(synthetic) => Ok(synthetic.tensor(name, expected_shape)),
            None => Err(WeightsError::MissingTensor {
                file: self.source.clone(),
                name: name.to_string(),
            }),
        }
    }

    /// Like [`take`](Self::take), but a missing tensor is `Ok(None)` (a wrong shape is still
    /// an error, and the tensor is left in place).
    pub fn take_opt(
        &mut self,
        name: &str,
        expected_shape: &[usize],
    ) -> Result<Option<Tensor>, WeightsError> {
        let Some(t) = self.tensors.get(name) else {
            return Ok(None);
        };
        if t.dims() != expected_shape {
            return Err(WeightsError::ShapeMismatch {
                file: self.source.clone(),
                name: name.to_string(),
                found: t.dims().to_vec(),
                expected: expected_shape.to_vec(),
            });
        }
        Ok(self.tensors.remove(name))
    }

    /// Removes and returns tensor `name` whatever its shape.
    pub fn take_any(&mut self, name: &str) -> Result<Tensor, WeightsError> {
        self.tensors
            .remove(name)
            .ok_or_else(|| WeightsError::MissingTensor {
                file: self.source.clone(),
                name: name.to_string(),
            })
    }

    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Tensor names, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.tensors.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Total number of elements over all (remaining) tensors.
    pub fn num_parameters(&self) -> usize {
        self.tensors.values().map(Tensor::elem_count).sum()
    }

    pub fn source(&self) -> &Path {
        &self.source
    }

    /// A view at the root: `root().pp("a").take("b", ..)` takes `a.b`.
    pub fn root(&mut self) -> WeightsView<'_> {
        WeightsView {
            dict: Rc::new(RefCell::new(self)),
            prefix: String::new(),
        }
    }

    /// A view under `prefix` (joined with `.`).
    pub fn prefixed(&mut self, prefix: &str) -> WeightsView<'_> {
        WeightsView {
            dict: Rc::new(RefCell::new(self)),
            prefix: prefix.to_string(),
        }
    }

    /// Errs if tensors are left over: they mean the config does not match the weights.
    pub fn finish(self) -> Result<(), WeightsError> {
        if self.tensors.is_empty() {
            return Ok(());
        }
        const SHOWN: usize = 10;
        let names: Vec<&str> = self
            .tensors
            .keys()
            .take(SHOWN)
            .map(String::as_str)
            .collect();
        Err(WeightsError::UnexpectedTensors {
            file: self.source.clone(),
            names: names.join(", "),
            more: self.tensors.len().saturating_sub(SHOWN),
        })
    }
}

/// A [`StateDict`] seen under a dotted prefix, like candle's `VarBuilder`:
/// `vb.pp("layers").pp(0).take("weight", &[o, i])` takes `layers.0.weight`.
///
/// Views are cheap (a shared handle and a prefix) and independent of each other: a view made by
/// `pp` does not borrow its parent, so `let mut layer = vb.pp("layers").pp(i);` and
/// `Linear::load(&mut vb.pp("to_qkv"), ..)` both work. The dict stays borrowed until every
/// view is gone, then [`StateDict::finish`] checks for leftovers.
#[derive(Debug, Clone)]
pub struct WeightsView<'a> {
    dict: Rc<RefCell<&'a mut StateDict>>,
    prefix: String,
}

impl<'a> WeightsView<'a> {
    /// A view one level down (`name` may be a number: `pp(0)`).
    pub fn pp<S: Display>(&mut self, name: S) -> WeightsView<'a> {
        WeightsView {
            dict: Rc::clone(&self.dict),
            prefix: self.key(&name.to_string()),
        }
    }

    /// The full key of `name` under this view.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else if name.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Removes and returns `<prefix>.<name>`, checking its shape.
    pub fn take(&mut self, name: &str, expected_shape: &[usize]) -> Result<Tensor, WeightsError> {
        let key = self.key(name);
        self.dict.borrow_mut().take(&key, expected_shape)
    }

    /// Like [`take`](Self::take); a missing tensor is `Ok(None)`.
    pub fn take_opt(
        &mut self,
        name: &str,
        expected_shape: &[usize],
    ) -> Result<Option<Tensor>, WeightsError> {
        let key = self.key(name);
        self.dict.borrow_mut().take_opt(&key, expected_shape)
    }

    /// Removes and returns `<prefix>.<name>` whatever its shape.
    pub fn take_any(&mut self, name: &str) -> Result<Tensor, WeightsError> {
        let key = self.key(name);
        self.dict.borrow_mut().take_any(&key)
    }

    /// A (cheap, shared) copy of `<prefix>.<name>`, left in the dict.
    pub fn get(&self, name: &str) -> Option<Tensor> {
        self.dict.borrow().get(&self.key(name)).cloned()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.dict.borrow().contains(&self.key(name))
    }

    /// Names (relative to this view) of the tensors still under it, sorted.
    pub fn keys(&self) -> Vec<String> {
        let dict = self.dict.borrow();
        if self.prefix.is_empty() {
            return dict.keys().map(str::to_string).collect();
        }
        let start = format!("{}.", self.prefix);
        dict.keys()
            .filter_map(|k| k.strip_prefix(start.as_str()))
            .map(str::to_string)
            .collect()
    }

    /// The file the weights come from (for messages).
    pub fn source(&self) -> PathBuf {
        self.dict.borrow().source.clone()
    }
}
