//! GGUF metadata values and typed accessors.

use crate::error::{Error, Result};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) if v >= 0 => Some(v as u64),
            Value::I16(v) if v >= 0 => Some(v as u64),
            Value::I32(v) if v >= 0 => Some(v as u64),
            Value::I64(v) if v >= 0 => Some(v as u64),
            Value::Bool(v) => Some(v as u64),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => self.as_u64().map(|v| v != 0),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// The key/value section of a GGUF header.
#[derive(Debug, Default, Clone)]
pub struct Metadata(pub HashMap<String, Value>);

impl Metadata {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    fn typed<'a, T>(&'a self, key: &str, what: &str, f: impl FnOnce(&'a Value) -> Option<T>) -> Result<Option<T>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => f(v)
                .map(Some)
                .ok_or_else(|| Error::Metadata(format!("`{key}` is not {what}: {v:?}"))),
        }
    }

    pub fn u64(&self, key: &str) -> Result<Option<u64>> {
        self.typed(key, "an unsigned integer", Value::as_u64)
    }

    pub fn usize(&self, key: &str) -> Result<Option<usize>> {
        Ok(self.u64(key)?.map(|v| v as usize))
    }

    pub fn f64(&self, key: &str) -> Result<Option<f64>> {
        self.typed(key, "a number", Value::as_f64)
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "a boolean", Value::as_bool)
    }

    pub fn str(&self, key: &str) -> Result<Option<&str>> {
        self.typed(key, "a string", Value::as_str)
    }

    pub fn required_usize(&self, key: &str) -> Result<usize> {
        self.usize(key)?
            .ok_or_else(|| Error::Metadata(format!("missing `{key}`")))
    }

    pub fn array(&self, key: &str) -> Result<Option<&[Value]>> {
        self.typed(key, "an array", Value::as_array)
    }

    /// A per-layer value that GGUF stores either as one number or as an array (one per layer).
    pub fn per_layer_usize(&self, key: &str, n_layers: usize) -> Result<Option<Vec<usize>>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => {
                if a.len() != n_layers {
                    return Err(Error::Metadata(format!(
                        "`{key}` has {} entries for {n_layers} layers",
                        a.len()
                    )));
                }
                a.iter()
                    .map(|v| {
                        v.as_u64()
                            .map(|x| x as usize)
                            .ok_or_else(|| Error::Metadata(format!("`{key}` entry {v:?}")))
                    })
                    .collect::<Result<Vec<_>>>()
                    .map(Some)
            }
            Some(v) => {
                let x = v
                    .as_u64()
                    .ok_or_else(|| Error::Metadata(format!("`{key}` is not an integer")))?;
                Ok(Some(vec![x as usize; n_layers]))
            }
        }
    }
}
