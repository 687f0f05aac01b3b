//! A restricted unpickler for the `data.pkl` of `torch.save` zip checkpoints.
//!
//! It is a small stack machine over the opcodes `torch.save` emits. It never imports or calls
//! anything: `GLOBAL`/`STACK_GLOBAL` resolve against a fixed allowlist (tensor rebuilding,
//! storage classes, dtypes, plain containers and `fractions.Fraction`) and anything else is
//! refused. Classes of the `demucs` package, which Facebook's demucs checkpoints name as their
//! `klass`, are recorded by name but can never be called. Every read is bounds-checked,
//! containers are freed without recursion, and malformed input is an error, never a panic.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Element type of a torch storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PtDtype {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl PtDtype {
    pub(crate) fn size(self) -> usize {
        match self {
            PtDtype::F64 | PtDtype::I64 => 8,
            PtDtype::F32 | PtDtype::I32 => 4,
            PtDtype::F16 | PtDtype::BF16 | PtDtype::I16 => 2,
            PtDtype::I8 | PtDtype::U8 | PtDtype::Bool => 1,
        }
    }
}

/// The only globals a checkpoint may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Global {
    RebuildTensorV2,
    RebuildTensor,
    RebuildParameter,
    RebuildParameterWithState,
    OrderedDict,
    Set,
    Size,
    StorageClass(PtDtype),
    Dtype(PtDtype),
    /// `fractions.Fraction`: demucs keeps its `segment` length as one. Calling it yields a float.
    Fraction,
    /// A class of the `demucs` package (a demucs checkpoint's `klass`): a name only, never
    /// called, built or instantiated.
    DemucsClass {
        module: Rc<str>,
        name: Rc<str>,
    },
}

/// Whether `module.name` may be recorded as a demucs class: a `demucs.` submodule and plain
/// identifiers (so messages and class names stay printable).
fn is_demucs_class(module: &str, name: &str) -> bool {
    let ident = |s: &str| {
        !s.is_empty()
            && !s.starts_with(|c: char| c.is_ascii_digit())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    module
        .strip_prefix("demucs.")
        .is_some_and(|sub| sub.split('.').all(ident))
        && ident(name)
}

fn resolve_global(module: &str, name: &str) -> Option<Global> {
    use PtDtype::*;
    let g = match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("builtins" | "__builtin__", "set" | "frozenset") => Global::Set,
        ("torch", "Size") => Global::Size,
        ("fractions", "Fraction") => Global::Fraction,
        (module, name) if is_demucs_class(module, name) => Global::DemucsClass {
            module: Rc::from(module),
            name: Rc::from(name),
        },
        ("torch", storage) if storage.ends_with("Storage") => {
            let dtype = match storage {
                "FloatStorage" => F32,
                "HalfStorage" => F16,
                "BFloat16Storage" => BF16,
                "DoubleStorage" => F64,
                "LongStorage" => I64,
                "IntStorage" => I32,
                "ShortStorage" => I16,
                "CharStorage" => I8,
                "ByteStorage" => U8,
                "BoolStorage" => Bool,
                _ => return None,
            };
            Global::StorageClass(dtype)
        }
        ("torch", dtype) => Global::Dtype(match dtype {
            "float32" | "float" => F32,
            "float16" | "half" => F16,
            "bfloat16" => BF16,
            "float64" | "double" => F64,
            "int64" | "long" => I64,
            "int32" | "int" => I32,
            "int16" | "short" => I16,
            "int8" => I8,
            "uint8" => U8,
            "bool" => Bool,
            _ => return None,
        }),
        _ => return None,
    };
    Some(g)
}

/// A storage named by a persistent id `('storage', StorageClass, key, location, numel)`.
#[derive(Debug)]
pub(crate) struct StorageRef {
    pub key: String,
    pub dtype: PtDtype,
    pub numel: u64,
}

/// A tensor view on a storage, as `_rebuild_tensor_v2` describes it.
#[derive(Debug)]
pub(crate) struct TensorRef {
    pub storage: Rc<StorageRef>,
    pub offset: u64,
    pub size: Vec<usize>,
    pub stride: Vec<usize>,
}

/// Items of a tuple or list. Dropped without recursion (see [`drain`]).
#[derive(Default)]
pub(crate) struct Seq(pub Vec<Value>);

/// Entries of a dict, in insertion order (a repeated key: the later one wins).
#[derive(Default)]
pub(crate) struct Pairs(pub Vec<(Value, Value)>);

#[derive(Clone)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits (kept opaque).
    BigInt,
    Float(f64),
    Str(Rc<str>),
    /// A bytes object (its value is never needed).
    Bytes,
    Tuple(Rc<Seq>),
    List(Rc<RefCell<Seq>>),
    Dict(Rc<RefCell<Pairs>>),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

impl Value {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl Drop for Seq {
    fn drop(&mut self) {
        drain(std::mem::take(&mut self.0));
    }
}

impl Drop for Pairs {
    fn drop(&mut self) {
        let mut work = Vec::with_capacity(self.0.len() * 2);
        for (k, v) in self.0.drain(..) {
            work.push(k);
            work.push(v);
        }
        drain(work);
    }
}

/// Frees nested containers with an explicit work list, so that a pickle of a million nested
/// tuples cannot overflow the stack when it is dropped.
fn drain(mut work: Vec<Value>) {
    while let Some(v) = work.pop() {
        match v {
            Value::Tuple(rc) => {
                if let Ok(mut seq) = Rc::try_unwrap(rc) {
                    work.append(&mut seq.0);
                }
            }
            Value::List(rc) => {
                if let Ok(cell) = Rc::try_unwrap(rc) {
                    work.append(&mut cell.into_inner().0);
                }
            }
            Value::Dict(rc) => {
                if let Ok(cell) = Rc::try_unwrap(rc) {
                    for (k, v) in cell.into_inner().0.drain(..) {
                        work.push(k);
                        work.push(v);
                    }
                }
            }
            _ => {}
        }
    }
}

#[derive(Debug)]
pub(crate) enum PickleError {
    Forbidden { module: String, name: String },
    Opcode { opcode: u8, pos: usize },
    Malformed { pos: usize, msg: String },
}

pub(crate) fn opcode_label(op: u8) -> &'static str {
    match op {
        b'I' => "INT",
        b'L' => "LONG",
        b'F' => "FLOAT",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'P' => "PERSID",
        b'i' => "INST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'g' => "GET",
        b'0' => "POP",
        b'1' => "DUP",
        b'2' => "POP_MARK",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x8b => "LONG4",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "unknown",
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    /// Position of the opcode being run (for messages).
    op_pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

type R<T> = Result<T, PickleError>;

impl<'a> Machine<'a> {
    fn err<T>(&self, msg: impl Into<String>) -> R<T> {
        Err(PickleError::Malformed {
            pos: self.op_pos,
            msg: msg.into(),
        })
    }

    fn bytes(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.data.get(self.pos..end)) {
            Some(b) => {
                self.pos += n;
                Ok(b)
            }
            None => self.err(format!(
                "wants {n} more bytes but data.pkl ends after {}",
                self.data.len().saturating_sub(self.pos)
            )),
        }
    }

    fn array<const N: usize>(&mut self) -> R<[u8; N]> {
        let b = self.bytes(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn u8(&mut self) -> R<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn len_u64(&mut self) -> R<usize> {
        let n = u64::from_le_bytes(self.array()?);
        match usize::try_from(n) {
            Ok(n) => Ok(n),
            Err(_) => self.err(format!("length {n} is too large")),
        }
    }

    fn line(&mut self) -> R<&'a str> {
        let rest = self.data.get(self.pos..).unwrap_or(&[]);
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return self.err("GLOBAL name is not terminated by a newline");
        };
        let raw = self.bytes(n + 1)?;
        let raw = raw.get(..n).unwrap_or(&[]);
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s),
            Err(_) => self.err("GLOBAL name is not UTF-8"),
        }
    }

    fn string(&mut self, n: usize) -> R<Value> {
        let raw = self.bytes(n)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(Value::Str(Rc::from(s))),
            Err(_) => self.err("string is not valid UTF-8"),
        }
    }

    /// Lowest stack index the current frame (since the last MARK) may pop to.
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> R<Value> {
        if self.stack.len() <= self.floor() {
            return self.err("stack underflow");
        }
        match self.stack.pop() {
            Some(v) => Ok(v),
            None => self.err("stack underflow"),
        }
    }

    fn top(&self) -> R<&Value> {
        if self.stack.len() <= self.floor() {
            return self.err("stack underflow");
        }
        match self.stack.last() {
            Some(v) => Ok(v),
            None => self.err("stack underflow"),
        }
    }

    fn pop_mark(&mut self) -> R<Vec<Value>> {
        let Some(mark) = self.marks.pop() else {
            return self.err("no MARK on the stack");
        };
        if mark > self.stack.len() {
            return self.err("MARK beyond the stack");
        }
        Ok(self.stack.split_off(mark))
    }

    fn memo_put(&mut self, idx: u32) -> R<()> {
        let v = self.top()?.clone();
        self.memo.insert(idx, v);
        Ok(())
    }

    fn memo_get(&mut self, idx: u32) -> R<()> {
        match self.memo.get(&idx) {
            Some(v) => {
                let v = v.clone();
                self.stack.push(v);
                Ok(())
            }
            None => self.err(format!("memo entry {idx} is not defined")),
        }
    }

    fn global(&mut self, module: &str, name: &str) -> R<()> {
        match resolve_global(module, name) {
            Some(g) => {
                self.stack.push(Value::Global(g));
                Ok(())
            }
            None => Err(PickleError::Forbidden {
                module: module.to_string(),
                name: name.to_string(),
            }),
        }
    }

    fn with_list(&mut self, items: Vec<Value>) -> R<()> {
        match self.top()? {
            Value::List(list) => match list.try_borrow_mut() {
                Ok(mut l) => {
                    l.0.extend(items);
                    Ok(())
                }
                Err(_) => self.err("list is in use"),
            },
            other => {
                let kind = other.kind();
                self.err(format!("APPEND to a {kind}, not a list"))
            }
        }
    }

    fn with_dict(&mut self, items: Vec<Value>) -> R<()> {
        if !items.len().is_multiple_of(2) {
            return self.err("SETITEMS with an odd number of items");
        }
        let mut pairs = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        match self.top()? {
            Value::Dict(dict) => match dict.try_borrow_mut() {
                Ok(mut d) => {
                    d.0.extend(pairs);
                    Ok(())
                }
                Err(_) => self.err("dict is in use"),
            },
            other => {
                let kind = other.kind();
                self.err(format!("SETITEM on a {kind}, not a dict"))
            }
        }
    }

    fn int(&self, v: &Value, what: &str) -> R<i64> {
        match v {
            Value::Int(i) => Ok(*i),
            Value::Bool(b) => Ok(i64::from(*b)),
            other => self.err(format!("{what} is a {}, not an int", other.kind())),
        }
    }

    fn dims(&self, v: &Value, what: &str) -> R<Vec<usize>> {
        let items: Vec<Value> = match v {
            Value::Tuple(t) => t.0.clone(),
            Value::List(l) => match l.try_borrow() {
                Ok(l) => l.0.clone(),
                Err(_) => return self.err("list is in use"),
            },
            other => return self.err(format!("{what} is a {}, not a tuple", other.kind())),
        };
        let mut out = Vec::with_capacity(items.len());
        for item in &items {
            let i = self.int(item, what)?;
            match usize::try_from(i) {
                Ok(u) => out.push(u),
                Err(_) => return self.err(format!("{what} has a negative entry {i}")),
            }
        }
        Ok(out)
    }

    /// Calls an allowlisted global (REDUCE / NEWOBJ).
    fn call(&mut self, callable: Value, args: Value) -> R<Value> {
        let Value::Global(g) = callable else {
            return self.err(format!(
                "REDUCE on a {}, which is not callable",
                callable.kind()
            ));
        };
        let args: Vec<Value> = match &args {
            Value::Tuple(t) => t.0.clone(),
            other => {
                return self.err(format!(
                    "REDUCE arguments are a {}, not a tuple",
                    other.kind()
                ))
            }
        };
        match g {
            Global::RebuildTensorV2 | Global::RebuildTensor => {
                if args.len() < 4 {
                    return self.err(format!("_rebuild_tensor with {} arguments", args.len()));
                }
                let storage = match args.first() {
                    Some(Value::Storage(s)) => s.clone(),
                    Some(other) => {
                        return self.err(format!(
                            "_rebuild_tensor on a {}, not a storage",
                            other.kind()
                        ))
                    }
                    None => return self.err("_rebuild_tensor without a storage"),
                };
                let offset = self.int(args.get(1).unwrap_or(&Value::None), "storage offset")?;
                let Ok(offset) = u64::try_from(offset) else {
                    return self.err(format!("negative storage offset {offset}"));
                };
                let size = self.dims(args.get(2).unwrap_or(&Value::None), "tensor size")?;
                let stride = self.dims(args.get(3).unwrap_or(&Value::None), "tensor stride")?;
                if size.len() != stride.len() {
                    return self.err(format!(
                        "tensor size {size:?} and stride {stride:?} have different ranks"
                    ));
                }
                Ok(Value::Tensor(Rc::new(TensorRef {
                    storage,
                    offset,
                    size,
                    stride,
                })))
            }
            Global::RebuildParameter | Global::RebuildParameterWithState => {
                match args.into_iter().next() {
                    Some(t @ Value::Tensor(_)) => Ok(t),
                    Some(other) => self.err(format!(
                        "_rebuild_parameter on a {}, not a tensor",
                        other.kind()
                    )),
                    None => self.err("_rebuild_parameter without arguments"),
                }
            }
            Global::OrderedDict => {
                let mut pairs = Vec::new();
                if let Some(items) = args.first() {
                    let items: Vec<Value> = match items {
                        Value::List(l) => match l.try_borrow() {
                            Ok(l) => l.0.clone(),
                            Err(_) => return self.err("list is in use"),
                        },
                        Value::Tuple(t) => t.0.clone(),
                        other => {
                            return self
                                .err(format!("OrderedDict({}) is not supported", other.kind()))
                        }
                    };
                    for item in items {
                        let Value::Tuple(kv) = item else {
                            return self.err("OrderedDict item is not a (key, value) tuple");
                        };
                        match (kv.0.first(), kv.0.get(1), kv.0.len()) {
                            (Some(k), Some(v), 2) => pairs.push((k.clone(), v.clone())),
                            _ => return self.err("OrderedDict item is not a (key, value) tuple"),
                        }
                    }
                }
                Ok(Value::Dict(Rc::new(RefCell::new(Pairs(pairs)))))
            }
            Global::Set | Global::Size => {
                let items = match args.first() {
                    None => Vec::new(),
                    Some(Value::List(l)) => match l.try_borrow() {
                        Ok(l) => l.0.clone(),
                        Err(_) => return self.err("list is in use"),
                    },
                    Some(Value::Tuple(t)) => t.0.clone(),
                    Some(other) => return self.err(format!("set/Size of a {}", other.kind())),
                };
                if g == Global::Size {
                    Ok(Value::Tuple(Rc::new(Seq(items))))
                } else {
                    Ok(Value::List(Rc::new(RefCell::new(Seq(items)))))
                }
            }
            Global::StorageClass(_) | Global::Dtype(_) => {
                self.err("a storage class or dtype is called as a function")
            }
            Global::Fraction => self.fraction(&args),
            Global::DemucsClass { module, name } => Err(PickleError::Forbidden {
                module: module.to_string(),
                name: name.to_string(),
            }),
        }
    }

    /// `Fraction(p, q)`, `Fraction(n)`, `Fraction(x)` or `Fraction('p/q')` as a float: pickles
    /// store either the pair (Python >= 3.12) or `str(fraction)` (older Pythons).
    fn fraction(&self, args: &[Value]) -> R<Value> {
        let number = |v: &Value| match v {
            Value::Int(i) => Some(*i as f64),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Float(f) if f.is_finite() => Some(*f),
            _ => None,
        };
        let value = match args {
            [Value::Str(s)] => parse_fraction(s),
            [v] => number(v),
            [p @ (Value::Int(_) | Value::Bool(_)), q @ (Value::Int(_) | Value::Bool(_))] => {
                match (number(p), number(q)) {
                    (Some(p), Some(q)) if q != 0.0 => Some(p / q),
                    _ => None,
                }
            }
            _ => None,
        };
        match value {
            Some(v) => Ok(Value::Float(v)),
            None => {
                let shown: Vec<String> = args.iter().map(describe_arg).collect();
                self.err(format!(
                    "Fraction({}) is not a finite rational number",
                    shown.join(", ")
                ))
            }
        }
    }

    fn persistent_load(&self, pid: Value) -> R<Value> {
        let Value::Tuple(t) = &pid else {
            return self.err(format!("persistent id is a {}, not a tuple", pid.kind()));
        };
        let items = &t.0;
        if items.first().and_then(Value::as_str) != Some("storage") || items.len() < 5 {
            return self.err("persistent id is not ('storage', class, key, location, numel)");
        }
        let dtype = match items.get(1) {
            Some(Value::Global(Global::StorageClass(d))) => *d,
            Some(Value::Global(Global::Dtype(d))) => *d,
            _ => return self.err("persistent id does not name a storage class"),
        };
        let Some(key) = items.get(2).and_then(Value::as_str) else {
            return self.err("storage key is not a string");
        };
        if key.is_empty() || key.contains(['/', '\\']) || key.contains("..") {
            return self.err(format!("storage key {key:?} is not a plain name"));
        }
        let numel = self.int(items.get(4).unwrap_or(&Value::None), "storage size")?;
        let Ok(numel) = u64::try_from(numel) else {
            return self.err(format!("negative storage size {numel}"));
        };
        Ok(Value::Storage(Rc::new(StorageRef {
            key: key.to_string(),
            dtype,
            numel,
        })))
    }

    fn run(&mut self) -> R<Value> {
        loop {
            self.op_pos = self.pos;
            if self.pos >= self.data.len() {
                return self.err("data.pkl ends without STOP");
            }
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    let v = self.u8()?;
                    if v > 5 {
                        return self.err(format!("pickle protocol {v} is not supported"));
                    }
                }
                0x95 => {
                    // FRAME: a length hint only.
                    self.bytes(8)?;
                }
                b'.' => return self.pop(),
                b'}' => self.stack.push(Value::Dict(Rc::default())),
                b']' => self.stack.push(Value::List(Rc::default())),
                b')' => self.stack.push(Value::Tuple(Rc::default())),
                b'(' => self.marks.push(self.stack.len()),
                b'q' => {
                    let i = self.u8()?;
                    self.memo_put(u32::from(i))?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let Ok(i) = u32::try_from(self.memo.len()) else {
                        return self.err("memo is full");
                    };
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()?;
                    self.memo_get(u32::from(i))?;
                }
                b'j' => {
                    let i = self.u32()?;
                    self.memo_get(i)?;
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.array()?);
                    self.stack.push(Value::Int(i64::from(v)));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(i64::from(v)));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.array()?);
                    self.stack.push(Value::Int(i64::from(v)));
                }
                0x8a => {
                    // LONG1: little-endian two's complement.
                    let n = usize::from(self.u8()?);
                    let raw = self.bytes(n)?;
                    if n > 8 {
                        self.stack.push(Value::BigInt);
                    } else {
                        let mut buf = [0u8; 8];
                        let negative = raw.last().is_some_and(|&b| b & 0x80 != 0);
                        if negative {
                            buf = [0xff; 8];
                        }
                        for (dst, src) in buf.iter_mut().zip(raw) {
                            *dst = *src;
                        }
                        self.stack.push(Value::Int(i64::from_le_bytes(buf)));
                    }
                }
                b'G' => {
                    // BINFLOAT: big-endian IEEE 754.
                    let v = f64::from_be_bytes(self.array()?);
                    self.stack.push(Value::Float(v));
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = self.string(n)?;
                    self.stack.push(s);
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    let s = self.string(n)?;
                    self.stack.push(s);
                }
                0x8d => {
                    let n = self.len_u64()?;
                    let s = self.string(n)?;
                    self.stack.push(s);
                }
                b'C' | b'B' | 0x8e => {
                    let n = match op {
                        b'C' => usize::from(self.u8()?),
                        b'B' => self.u32()? as usize,
                        _ => self.len_u64()?,
                    };
                    self.bytes(n)?;
                    self.stack.push(Value::Bytes);
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::new(Seq(items))));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < self.floor() + n {
                        return self.err("stack underflow");
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(Rc::new(Seq(items))));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack
                        .push(Value::List(Rc::new(RefCell::new(Seq(items)))));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Dict(Rc::default()));
                    self.with_dict(items)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.with_list(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.with_list(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.with_dict(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.with_dict(items)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module.as_str(), name.as_str()) {
                        (Some(m), Some(n)) => self.global(m, n)?,
                        _ => return self.err("STACK_GLOBAL names are not strings"),
                    }
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.call(callable, args)?;
                    self.stack.push(v);
                }
                b'b' => {
                    // BUILD: the state (`_metadata` of a state dict, tensor state) is ignored.
                    let _state = self.pop()?;
                    match self.top()? {
                        Value::Dict(_) | Value::List(_) | Value::Tensor(_) => {}
                        // Building a class would set attributes on it: refused like a call.
                        Value::Global(Global::DemucsClass { module, name }) => {
                            return Err(PickleError::Forbidden {
                                module: module.to_string(),
                                name: name.to_string(),
                            });
                        }
                        other => {
                            let kind = other.kind();
                            return self.err(format!("BUILD on a {kind}"));
                        }
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.stack.push(v);
                }
                _ => {
                    return Err(PickleError::Opcode {
                        opcode: op,
                        pos: self.op_pos,
                    })
                }
            }
        }
    }
}

/// What `Fraction('…')` accepts: `[sign]digits/digits` or a decimal (`7.8`, `1e3`), with
/// surrounding whitespace. Not infinities or NaN, which Python refuses too.
fn parse_fraction(s: &str) -> Option<f64> {
    let s = s.trim();
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if let Some((p, q)) = s.split_once('/') {
        let unsigned = p.strip_prefix(['+', '-']).unwrap_or(p);
        if !digits(unsigned) || !digits(q) {
            return None;
        }
        let (p, q) = (p.parse::<f64>().ok()?, q.parse::<f64>().ok()?);
        return (q != 0.0).then_some(p / q);
    }
    if !s.bytes().any(|b| b.is_ascii_digit())
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// An argument in a message: its value when short, else its type.
fn describe_arg(v: &Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::Str(s) if s.len() <= 40 => format!("{:?}", &**s),
        other => format!("<{}>", other.kind()),
    }
}

/// Runs the restricted unpickler over `data` and hands the pickled object to `inspect`.
/// Afterwards every container is emptied, so reference cycles a hostile pickle may build
/// (a list appended to itself) are broken and nothing leaks.
pub(crate) fn unpickle<T>(
    data: &[u8],
    inspect: impl FnOnce(&Value) -> T,
) -> Result<T, PickleError> {
    let mut m = Machine {
        data,
        pos: 0,
        op_pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    let out = m.run().map(|v| {
        let t = inspect(&v);
        (t, v)
    });
    let mut roots: Vec<Value> = m.memo.drain().map(|(_, v)| v).collect();
    roots.append(&mut m.stack);
    let out = out.map(|(t, v)| {
        roots.push(v);
        t
    });
    dispose(roots);
    out
}

/// Empties every list and dict reachable from `roots` (iteratively, visiting each once).
fn dispose(mut work: Vec<Value>) {
    let mut seen = std::collections::HashSet::new();
    while let Some(v) = work.pop() {
        match v {
            Value::Tuple(t) if seen.insert(Rc::as_ptr(&t) as *const ()) => {
                work.extend(t.0.iter().cloned());
            }
            Value::List(l) if seen.insert(Rc::as_ptr(&l) as *const ()) => {
                if let Ok(mut l) = l.try_borrow_mut() {
                    work.append(&mut l.0);
                }
            }
            Value::Dict(d) if seen.insert(Rc::as_ptr(&d) as *const ()) => {
                if let Ok(mut d) = d.try_borrow_mut() {
                    for (k, v) in d.0.drain(..) {
                        work.push(k);
                        work.push(v);
                    }
                }
            }
            _ => {}
        }
    }
}
