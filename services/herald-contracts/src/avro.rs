//! Small helpers to build Avro values for Herald's records and to read them back field by field,
//! with errors that name the field. The codec resolves every decoded value against the
//! compiled-in reader schema first, so readers here see reader-schema shapes only (with
//! `Long` accepted where a writer used a plain long for a timestamp).

use apache_avro::types::Value;
use chrono::{DateTime, Utc};

use crate::time::{from_millis, to_millis};

/// A field that is missing or has the wrong shape after schema resolution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: expected {expected}")]
pub struct FieldError {
    pub field: String,
    pub expected: &'static str,
}

pub(crate) fn field_error(field: &str, expected: &'static str) -> FieldError {
    FieldError {
        field: field.to_owned(),
        expected,
    }
}

// Builders. Unions in Herald's schemas are always ["null", T].

pub fn string(s: &str) -> Value {
    Value::String(s.to_owned())
}

pub fn optional(value: Option<Value>) -> Value {
    match value {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(v)),
    }
}

pub fn optional_string(s: Option<&str>) -> Value {
    optional(s.map(string))
}

pub fn optional_bytes(bytes: Option<&[u8]>) -> Value {
    optional(bytes.map(|b| Value::Bytes(b.to_vec())))
}

pub fn timestamp(at: DateTime<Utc>) -> Value {
    Value::TimestampMillis(to_millis(at))
}

pub fn optional_timestamp(at: Option<DateTime<Utc>>) -> Value {
    optional(at.map(timestamp))
}

/// An enum value; the index is resolved against the schema when the record is encoded.
pub fn symbol(symbols: &[&str], name: &str) -> Value {
    let index = symbols.iter().position(|s| *s == name).unwrap_or(0);
    Value::Enum(index as u32, name.to_owned())
}

pub fn record(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(
        fields
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
    )
}

/// The fields of a decoded record, taken out by name.
#[derive(Debug)]
pub struct Fields {
    path: String,
    fields: Vec<(String, Value)>,
}

impl Fields {
    pub fn of(path: &str, value: Value) -> Result<Self, FieldError> {
        match value {
            Value::Record(fields) => Ok(Self {
                path: path.to_owned(),
                fields,
            }),
            _ => Err(field_error(path, "a record")),
        }
    }

    fn path(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        let index = self.fields.iter().position(|(n, _)| n == name)?;
        Some(self.fields.swap_remove(index).1)
    }

    /// The value with any `["null", T]` union unwrapped; `None` for null or absent.
    fn take_optional(&mut self, name: &str) -> Option<Value> {
        match self.take(name)? {
            Value::Union(_, inner) => match *inner {
                Value::Null => None,
                other => Some(other),
            },
            Value::Null => None,
            other => Some(other),
        }
    }

    pub fn record(&mut self, name: &str) -> Result<Fields, FieldError> {
        let path = self.path(name);
        let value = self
            .take_optional(name)
            .ok_or_else(|| field_error(&path, "a record"))?;
        Fields::of(&path, value)
    }

    pub fn string(&mut self, name: &str) -> Result<String, FieldError> {
        let path = self.path(name);
        self.optional_string(name)?
            .ok_or_else(|| field_error(&path, "a string"))
    }

    pub fn optional_string(&mut self, name: &str) -> Result<Option<String>, FieldError> {
        match self.take_optional(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(field_error(&self.path(name), "a string")),
        }
    }

    pub fn optional_bytes(&mut self, name: &str) -> Result<Option<Vec<u8>>, FieldError> {
        match self.take_optional(name) {
            None => Ok(None),
            Some(Value::Bytes(b)) => Ok(Some(b)),
            Some(_) => Err(field_error(&self.path(name), "bytes")),
        }
    }

    pub fn int(&mut self, name: &str) -> Result<i32, FieldError> {
        let path = self.path(name);
        self.optional_int(name)?
            .ok_or_else(|| field_error(&path, "an int"))
    }

    pub fn optional_int(&mut self, name: &str) -> Result<Option<i32>, FieldError> {
        match self.take_optional(name) {
            None => Ok(None),
            Some(Value::Int(i)) => Ok(Some(i)),
            Some(_) => Err(field_error(&self.path(name), "an int")),
        }
    }

    /// A boolean; absent (written before the field existed) reads as false.
    pub fn boolean(&mut self, name: &str) -> Result<bool, FieldError> {
        match self.take_optional(name) {
            None => Ok(false),
            Some(Value::Boolean(b)) => Ok(b),
            Some(_) => Err(field_error(&self.path(name), "a boolean")),
        }
    }

    pub fn timestamp(&mut self, name: &str) -> Result<DateTime<Utc>, FieldError> {
        let path = self.path(name);
        self.optional_timestamp(name)?
            .ok_or_else(|| field_error(&path, "a timestamp"))
    }

    pub fn optional_timestamp(&mut self, name: &str) -> Result<Option<DateTime<Utc>>, FieldError> {
        let millis = match self.take_optional(name) {
            None => return Ok(None),
            Some(Value::TimestampMillis(ms) | Value::Long(ms)) => ms,
            Some(_) => return Err(field_error(&self.path(name), "a timestamp in milliseconds")),
        };
        from_millis(millis)
            .map(Some)
            .ok_or_else(|| field_error(&self.path(name), "a representable timestamp"))
    }

    /// An enum symbol, mapped through `parse`.
    pub fn symbol<T>(
        &mut self,
        name: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T, FieldError> {
        let path = self.path(name);
        self.optional_symbol(name, parse)?
            .ok_or_else(|| field_error(&path, "an enum symbol"))
    }

    pub fn optional_symbol<T>(
        &mut self,
        name: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, FieldError> {
        match self.take_optional(name) {
            None => Ok(None),
            Some(Value::Enum(_, s)) => parse(&s)
                .map(Some)
                .ok_or_else(|| field_error(&self.path(name), "a known enum symbol")),
            Some(_) => Err(field_error(&self.path(name), "an enum symbol")),
        }
    }

    /// An array, each item mapped through `item`; `None` when the field is null.
    pub fn optional_array<T>(
        &mut self,
        name: &str,
        item: impl Fn(Value) -> Option<T>,
    ) -> Result<Option<Vec<T>>, FieldError> {
        match self.take_optional(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| {
                    item(v).ok_or_else(|| {
                        field_error(&self.path(name), "an array item of the declared type")
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(field_error(&self.path(name), "an array")),
        }
    }

    pub fn array<T>(
        &mut self,
        name: &str,
        item: impl Fn(Value) -> Option<T>,
    ) -> Result<Vec<T>, FieldError> {
        Ok(self.optional_array(name, item)?.unwrap_or_default())
    }
}

/// Array item readers for [`Fields::array`].
pub fn string_item(value: Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s),
        _ => None,
    }
}

pub fn symbol_item<T>(parse: impl Fn(&str) -> Option<T>) -> impl Fn(Value) -> Option<T> {
    move |value| match value {
        Value::Enum(_, s) => parse(&s),
        _ => None,
    }
}
