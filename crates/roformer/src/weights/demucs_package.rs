//! Facebook demucs checkpoints (`.th`): `demucs.states.serialize_model` + `torch.save`.
//!
//! Such a file pickles a dict `{'klass': <class>, 'args': (..), 'kwargs': {..}, 'state': {..},
//! 'training_args': {..}}`: the model class (recorded by name, never called), the constructor's
//! arguments, and the state dict (in fp16 when saved with `half=True`). [`load_demucs_package`]
//! reads it into a [`DemucsPackage`]; the model code turns the keyword arguments into its config
//! with [`DemucsPackage::deserialize_kwargs`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::value::{BorrowedStrDeserializer, Error as DeError, SeqDeserializer};
use serde::de::{self, DeserializeOwned, IntoDeserializer, MapAccess, Visitor};
use serde::forward_to_deserialize_any;

use super::pickle::{Global, Pairs, Value};
use super::torch_zip::{self, Entries};
use super::{strip_common_prefixes, StateDict, WeightsError};

/// How deep kwargs may nest.
const MAX_DEPTH: usize = 32;
/// How many values kwargs may hold in all: a pickle can share one list many times over
/// (memo), which converting to owned values would multiply.
const MAX_VALUES: usize = 100_000;

/// A constructor argument of a demucs model, as plain data.
#[derive(Debug, Clone, PartialEq)]
pub enum KwargValue {
    None,
    Bool(bool),
    Int(i64),
    /// A float, or a `fractions.Fraction` (demucs' `segment`) as the nearest float.
    Float(f64),
    Str(String),
    /// A list, tuple or set.
    List(Vec<KwargValue>),
    /// A dict with string keys.
    Map(BTreeMap<String, KwargValue>),
    /// A value this reader does not represent, by description (a tensor, bytes, an int wider
    /// than 64 bits). Kept so that an argument the model does not use cannot fail the load.
    Other(String),
}

impl KwargValue {
    /// The value in a message: `int 3`, `str "sin"`, `list of 4`.
    fn describe(&self) -> String {
        match self {
            KwargValue::None => "None".into(),
            KwargValue::Bool(b) => format!("bool {}", if *b { "True" } else { "False" }),
            KwargValue::Int(i) => format!("int {i}"),
            KwargValue::Float(f) => format!("float {f:?}"),
            KwargValue::Str(s) if s.chars().count() <= 40 => format!("str {s:?}"),
            KwargValue::Str(_) => "a long str".into(),
            KwargValue::List(items) => format!("list of {}", items.len()),
            KwargValue::Map(m) => format!("dict of {}", m.len()),
            KwargValue::Other(what) => what.clone(),
        }
    }
}

/// A demucs checkpoint: the model class, its constructor arguments and its weights.
#[derive(Debug, Clone)]
pub struct DemucsPackage {
    /// `module.Name` of the model class, e.g. `demucs.htdemucs.HTDemucs`.
    pub class_name: String,
    /// Positional constructor arguments (empty in Facebook's released models).
    pub args: Vec<KwargValue>,
    /// Keyword constructor arguments by name.
    pub kwargs: BTreeMap<String, KwargValue>,
    /// The weights, floats as `F32` (fp16 storages widened exactly).
    pub state: StateDict,
}

/// Reads a demucs `.th` checkpoint. Errs with [`WeightsError::NotDemucsPackage`] when the
/// pickled object is not `serialize_model`'s dict (a plain state dict, say); any global besides
/// tensor rebuilding, `fractions.Fraction` and the `demucs.*` class is refused as in
/// [`load_state_dict`](super::load_state_dict).
pub fn load_demucs_package(path: &Path) -> Result<DemucsPackage, WeightsError> {
    let (tensors, (class_name, args, kwargs)) = torch_zip::load_with(path, |top| {
        select_package(top).map_err(|reason| WeightsError::NotDemucsPackage {
            file: path.to_path_buf(),
            reason,
        })
    })?;
    let state = StateDict::new(
        strip_common_prefixes(tensors),
        Default::default(),
        path.to_path_buf(),
    );
    tracing::debug!(
        "read {class_name} with {} tensors from {}",
        state.len(),
        path.display()
    );
    Ok(DemucsPackage {
        class_name,
        args,
        kwargs,
        state,
    })
}

type Picked = (String, Vec<KwargValue>, BTreeMap<String, KwargValue>);

/// Takes the class name, arguments and state tensors out of the unpickled package.
pub(super) fn select_package(top: &Value) -> Result<(Entries, Picked), String> {
    let Value::Dict(dict) = top else {
        return Err(format!(
            "the pickled object is a {}, not a dict",
            top.kind()
        ));
    };
    let dict = dict
        .try_borrow()
        .map_err(|_| "the top-level dict is in use".to_string())?;
    let entry = |key: &str| {
        dict.0
            .iter()
            .rev() // a repeated key: the later one wins, as in Python
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    };
    let class_name = match entry("klass") {
        Some(Value::Global(Global::DemucsClass { module, name })) => format!("{module}.{name}"),
        Some(other) => {
            return Err(format!(
                "`klass` is a {}, not a class of the demucs package",
                other.kind()
            ))
        }
        None => return Err("it has no `klass` entry (a plain state dict?)".into()),
    };
    let mut convert = Converter { budget: MAX_VALUES };
    let args = match entry("args") {
        None => Vec::new(),
        Some(Value::Tuple(t)) => convert.items(&t.0, 0)?,
        Some(other) => return Err(format!("`args` is a {}, not a tuple", other.kind())),
    };
    let kwargs = match entry("kwargs") {
        Some(Value::Dict(d)) => {
            let d = d
                .try_borrow()
                .map_err(|_| "`kwargs` is in use".to_string())?;
            convert
                .map(&d, 0)?
                .ok_or("`kwargs` has keys that are not strings")?
        }
        Some(other) => return Err(format!("`kwargs` is a {}, not a dict", other.kind())),
        None => return Err("it has no `kwargs` entry".into()),
    };
    let Some(state) = entry("state") else {
        return Err("it has no `state` entry".into());
    };
    let entries = match torch_zip::find_state_dict(state, 0) {
        Some(entries) => entries,
        None => return Err(describe_state(state)),
    };
    Ok((entries, (class_name, args, kwargs)))
}

/// Why `state` is no state dict. diffq-quantized models store their weights packed with
/// a `__quantized` entry, which we do not unpack.
fn describe_state(state: &Value) -> String {
    if let Value::Dict(d) = state {
        let quantized = d
            .try_borrow()
            .is_ok_and(|d| d.0.iter().any(|(k, _)| k.as_str() == Some("__quantized")));
        if quantized {
            return "its `state` is quantized (diffq), which is not supported".into();
        }
        return "its `state` holds no tensors".into();
    }
    format!("its `state` is a {}, not a dict of tensors", state.kind())
}

/// Turns pickled values into owned [`KwargValue`]s within [`MAX_DEPTH`] and [`MAX_VALUES`].
struct Converter {
    budget: usize,
}

impl Converter {
    fn value(&mut self, v: &Value, depth: usize) -> Result<KwargValue, String> {
        if depth > MAX_DEPTH {
            return Err(format!("kwargs nest deeper than {MAX_DEPTH} levels"));
        }
        self.budget = self
            .budget
            .checked_sub(1)
            .ok_or_else(|| format!("kwargs hold more than {MAX_VALUES} values"))?;
        let in_use = || "a container is in use".to_string();
        Ok(match v {
            Value::None => KwargValue::None,
            Value::Bool(b) => KwargValue::Bool(*b),
            Value::Int(i) => KwargValue::Int(*i),
            Value::Float(f) => KwargValue::Float(*f),
            Value::Str(s) => KwargValue::Str(s.to_string()),
            Value::Tuple(t) => KwargValue::List(self.items(&t.0, depth)?),
            Value::List(l) => {
                KwargValue::List(self.items(&l.try_borrow().map_err(|_| in_use())?.0, depth)?)
            }
            Value::Dict(d) => {
                let pairs = d.try_borrow().map_err(|_| in_use())?;
                match self.map(&pairs, depth)? {
                    Some(map) => KwargValue::Map(map),
                    None => KwargValue::Other("a dict with keys that are not strings".into()),
                }
            }
            Value::Global(Global::DemucsClass { module, name }) => {
                KwargValue::Other(format!("the class {module}.{name}"))
            }
            Value::BigInt => KwargValue::Other("an int wider than 64 bits".into()),
            other => KwargValue::Other(format!("a {}", other.kind())),
        })
    }

    /// The items of a sequence at `depth`.
    fn items(&mut self, items: &[Value], depth: usize) -> Result<Vec<KwargValue>, String> {
        items.iter().map(|v| self.value(v, depth + 1)).collect()
    }

    /// The entries of a dict at `depth`; `None` when a key is not a string.
    fn map(
        &mut self,
        pairs: &Pairs,
        depth: usize,
    ) -> Result<Option<BTreeMap<String, KwargValue>>, String> {
        let mut map = BTreeMap::new();
        for (k, v) in &pairs.0 {
            let Some(k) = k.as_str() else {
                return Ok(None);
            };
            // Insertion order: a repeated key keeps its last value, as in Python.
            map.insert(k.to_string(), self.value(v, depth + 1)?);
        }
        Ok(Some(map))
    }
}

impl DemucsPackage {
    /// The file it was read from.
    pub fn source(&self) -> &Path {
        self.state.source()
    }

    /// Keyword argument `key`, if present.
    pub fn kwarg(&self, key: &str) -> Option<&KwargValue> {
        self.kwargs.get(key)
    }

    fn required(&self, key: &str) -> Result<&KwargValue, WeightsError> {
        self.kwargs
            .get(key)
            .ok_or_else(|| WeightsError::MissingKwarg {
                file: self.source().to_path_buf(),
                key: key.to_string(),
            })
    }

    fn wrong_type(&self, key: &str, expected: &str, found: &KwargValue) -> WeightsError {
        WeightsError::KwargType {
            file: self.source().to_path_buf(),
            key: key.to_string(),
            expected: expected.to_string(),
            found: found.describe(),
        }
    }

    fn positive_int(&self, key: &str) -> Result<u64, WeightsError> {
        match self.required(key)? {
            KwargValue::Int(i) if *i > 0 => Ok(i.unsigned_abs()),
            other => Err(self.wrong_type(key, "a positive int", other)),
        }
    }

    /// The stem names (`sources`), in output order.
    pub fn sources(&self) -> Result<Vec<String>, WeightsError> {
        const EXPECTED: &str = "a non-empty list of str";
        let value = self.required("sources")?;
        let KwargValue::List(items) = value else {
            return Err(self.wrong_type("sources", EXPECTED, value));
        };
        if items.is_empty() {
            return Err(self.wrong_type("sources", EXPECTED, value));
        }
        items
            .iter()
            .map(|item| match item {
                KwargValue::Str(s) => Ok(s.clone()),
                other => Err(self.wrong_type("sources", EXPECTED, other)),
            })
            .collect()
    }

    /// The sample rate the model works at (`samplerate`), in Hz.
    pub fn samplerate(&self) -> Result<u32, WeightsError> {
        let rate = self.positive_int("samplerate")?;
        u32::try_from(rate).map_err(|_| {
            self.wrong_type(
                "samplerate",
                "a sample rate in Hz",
                &KwargValue::Int(rate as i64),
            )
        })
    }

    /// Channels of the audio the model takes and gives (`audio_channels`).
    pub fn audio_channels(&self) -> Result<usize, WeightsError> {
        let n = self.positive_int("audio_channels")?;
        usize::try_from(n).map_err(|_| {
            self.wrong_type(
                "audio_channels",
                "a channel count",
                &KwargValue::Int(n as i64),
            )
        })
    }

    /// The segment length the model was trained on (`segment`), in seconds.
    pub fn segment(&self) -> Result<f64, WeightsError> {
        let value = self.required("segment")?;
        match *value {
            KwargValue::Int(i) if i > 0 => Ok(i as f64),
            KwargValue::Float(f) if f.is_finite() && f > 0.0 => Ok(f),
            _ => Err(self.wrong_type("segment", "a positive number of seconds", value)),
        }
    }

    /// The keyword arguments as a config struct (say `HtDemucsConfig`). Field names are the
    /// kwargs' names; how unknown keys and absent fields are treated is up to `T`'s serde
    /// attributes. Errors name the file and the offending key.
    pub fn deserialize_kwargs<T: DeserializeOwned>(&self) -> Result<T, WeightsError> {
        T::deserialize(KwargsDeserializer(&self.kwargs)).map_err(|e| WeightsError::KwargsInvalid {
            file: self.source().to_path_buf(),
            reason: e.to_string(),
        })
    }
}

/// The kwargs map as a serde map; a value's error is prefixed with its key.
struct KwargsDeserializer<'a>(&'a BTreeMap<String, KwargValue>);

impl<'de> de::Deserializer<'de> for KwargsDeserializer<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_map(KwargEntries::new(self.0))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

/// Map access over kwargs entries that remembers the current key for messages.
struct KwargEntries<'de> {
    iter: std::collections::btree_map::Iter<'de, String, KwargValue>,
    pending: Option<(&'de str, &'de KwargValue)>,
}

impl<'de> KwargEntries<'de> {
    fn new(map: &'de BTreeMap<String, KwargValue>) -> Self {
        Self {
            iter: map.iter(),
            pending: None,
        }
    }
}

impl<'de> MapAccess<'de> for KwargEntries<'de> {
    type Error = DeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.iter.next() else {
            return Ok(None);
        };
        self.pending = Some((key, value));
        seed.deserialize(BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DeError> {
        let Some((key, value)) = self.pending.take() else {
            return Err(de::Error::custom("a map value without its key"));
        };
        seed.deserialize(value)
            .map_err(|e| de::Error::custom(format_args!("`{key}`: {e}")))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

impl<'de> IntoDeserializer<'de, DeError> for &'de KwargValue {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> de::Deserializer<'de> for &'de KwargValue {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self {
            KwargValue::None => visitor.visit_unit(),
            KwargValue::Bool(b) => visitor.visit_bool(*b),
            KwargValue::Int(i) => visitor.visit_i64(*i),
            KwargValue::Float(f) => visitor.visit_f64(*f),
            KwargValue::Str(s) => visitor.visit_borrowed_str(s),
            KwargValue::List(items) => {
                let mut seq = SeqDeserializer::new(items.iter());
                let out = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(out)
            }
            KwargValue::Map(map) => visitor.visit_map(KwargEntries::new(map)),
            KwargValue::Other(what) => Err(de::Error::custom(format_args!(
                "{what} is not a plain value"
            ))),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self {
            KwargValue::None => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    // A unit enum variant is named by a string.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self {
            KwargValue::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            _ => self.deserialize_any(visitor).map_err(|e| {
                de::Error::custom(format_args!(
                    "{e} (expected one of {variants:?} for {name})"
                ))
            }),
        }
    }

    // Unknown keys are skipped whatever they hold, `Other` values included.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
    }
}
