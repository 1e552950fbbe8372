//! Information extraction to JSON: the reply is decoded under the caller's JSON Schema,
//! so it always parses and validates; the model only chooses the values.

use super::task::{run, Task, TaskOptions, TaskOutput};
use crate::backend::Backend;
use crate::constrain::Constraint;
use crate::engine::{run_now, Engine, FinishReason};
use crate::error::{Error, Result};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Serialize)]
pub struct Extracted {
    pub value: Value,
    #[serde(flatten)]
    pub output: TaskOutput,
}

/// Extracts the fields `schema` describes from `text`.
///
/// Where the schema leaves them open, objects get `additionalProperties: false`, free
/// strings a `maxLength` of 200, numbers a magnitude of at most 10^15 and arrays at most 32
/// items: small models otherwise keep inventing keys, or repeating a phrase or a digit,
/// until they run out of tokens. The result is still valid against the schema as given
/// (this only narrows what the model may write).
pub fn extract<B: Backend>(
    engine: &mut Engine<B>,
    text: &str,
    schema: &Value,
    opts: &TaskOptions,
) -> Result<Extracted> {
    run_now(extract_async(engine, text, schema, opts))
}

/// [`extract`] for callers that must not block (the browser's GPU).
pub async fn extract_async<B: Backend>(
    engine: &mut Engine<B>,
    text: &str,
    schema: &Value,
    opts: &TaskOptions,
) -> Result<Extracted> {
    if !schema.is_object() {
        return Err(Error::InvalidRequest("the JSON Schema must be an object".into()));
    }
    let mut strict = schema.clone();
    close_objects(&mut strict, 0);
    let shown = serde_json::to_string(schema).map_err(|e| Error::InvalidRequest(e.to_string()))?;
    let instruction = format!(
        "Extract information from the user's text as JSON that follows this JSON Schema: {shown}. \
         Copy values from the text; do not invent anything."
    );
    let output = run(
        engine,
        Task {
            instruction,
            input: text,
            constraint: Some(Constraint::JsonSchema { schema: strict }),
        },
        opts,
    )
    .await?;
    if output.finish_reason == FinishReason::Length {
        return Err(Error::Constraint(format!(
            "the JSON was not complete after {} tokens (raise max_tokens): {}",
            output.tokens,
            output.text.chars().take(300).collect::<String>()
        )));
    }
    let value = serde_json::from_str(&output.text)
        .map_err(|e| Error::Constraint(format!("the constrained output did not parse ({e}): {}", output.text)))?;
    Ok(Extracted { value, output })
}

/// Characters allowed in a string field the schema leaves unbounded: a value copied from
/// a text is short, and a looping model must hit the end of the string, not `max_tokens`.
const MAX_STRING: u64 = 200;
/// Likewise for numbers (a model can repeat a digit forever) and arrays.
const MAX_MAGNITUDE: i64 = 1_000_000_000_000_000;
const MAX_ITEMS: u64 = 32;

fn close_objects(schema: &mut Value, depth: usize) {
    // Schemas nest; a pathological one should not exhaust the stack.
    if depth > 64 {
        return;
    }
    let Value::Object(obj) = schema else {
        return;
    };
    let is_object = obj.get("type").and_then(Value::as_str) == Some("object") || obj.contains_key("properties");
    if is_object && !obj.contains_key("additionalProperties") {
        obj.insert("additionalProperties".into(), Value::Bool(false));
    }
    let free_string = obj.get("type").and_then(Value::as_str) == Some("string")
        && !["maxLength", "pattern", "format", "enum", "const"]
            .iter()
            .any(|k| obj.contains_key(*k));
    if free_string {
        obj.insert("maxLength".into(), Value::from(MAX_STRING));
    }
    let numeric = matches!(obj.get("type").and_then(Value::as_str), Some("number" | "integer"));
    if numeric && !obj.contains_key("enum") && !obj.contains_key("const") {
        if !obj.contains_key("maximum") && !obj.contains_key("exclusiveMaximum") {
            obj.insert("maximum".into(), Value::from(MAX_MAGNITUDE));
        }
        if !obj.contains_key("minimum") && !obj.contains_key("exclusiveMinimum") {
            obj.insert("minimum".into(), Value::from(-MAX_MAGNITUDE));
        }
    }
    if obj.get("type").and_then(Value::as_str) == Some("array") && !obj.contains_key("maxItems") {
        obj.insert("maxItems".into(), Value::from(MAX_ITEMS));
    }
    // Only the keywords that hold subschemas: `enum`/`const` values must stay as written.
    for key in ["properties", "$defs", "definitions", "patternProperties"] {
        if let Some(Value::Object(map)) = obj.get_mut(key) {
            map.values_mut().for_each(|v| close_objects(v, depth + 1));
        }
    }
    for key in ["items", "additionalProperties", "not", "if", "then", "else", "contains"] {
        if let Some(v) = obj.get_mut(key) {
            close_objects(v, depth + 1);
        }
    }
    for key in ["anyOf", "oneOf", "allOf", "prefixItems"] {
        if let Some(Value::Array(list)) = obj.get_mut(key) {
            list.iter_mut().for_each(|v| close_objects(v, depth + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::close_objects;
    use serde_json::json;

    #[test]
    fn closes_nested_objects_but_not_values() {
        let mut s = json!({
            "type": "object",
            "properties": {
                "properties": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
                "kind": {"const": {"type": "object"}},
                "open": {"type": "object", "additionalProperties": true}
            }
        });
        close_objects(&mut s, 0);
        assert_eq!(s["additionalProperties"], json!(false));
        assert_eq!(
            s["properties"]["properties"],
            json!({"type": "string", "maxLength": 200})
        );
        assert_eq!(s["properties"]["tags"]["items"]["additionalProperties"], json!(false));
        assert_eq!(s["properties"]["kind"]["const"], json!({"type": "object"}));
        assert_eq!(s["properties"]["open"]["additionalProperties"], json!(true));
    }
}
