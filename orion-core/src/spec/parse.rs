//! Reading documents into JSON values before they meet a spec type: JSON that
//! refuses duplicate keys (as YAML does), and YAML with the 1.2 core schema
//! (`y`, `yes`, `on` stay strings; only `true` and `false` are booleans).

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses JSON, refusing a key given twice in one object (serde_json alone keeps
/// the last one silently).
///
/// ```
/// assert!(orion_core::spec::parse_json_strict(r#"{"a": 1}"#).is_ok());
/// let e = orion_core::spec::parse_json_strict(r#"{"a": 1, "a": 2}"#).unwrap_err();
/// assert!(e.to_string().contains(r#"duplicate key "a""#));
/// ```
pub fn parse_json_strict(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Parses YAML with the YAML 1.2 core schema's booleans and refusing duplicate
/// keys.
///
/// ```
/// let v = orion_core::spec::parse_yaml_value("values: [x, y, yes, on]\nok: true").unwrap();
/// assert_eq!(v["values"], serde_json::json!(["x", "y", "yes", "on"]));
/// assert_eq!(v["ok"], serde_json::json!(true));
/// ```
pub fn parse_yaml_value(text: &str) -> Result<Value, serde_saphyr::Error> {
    serde_saphyr::from_str_with_options(text, yaml_options())
}

/// Parses a YAML stream of one or more documents (`---` between them).
pub fn parse_yaml_documents(text: &str) -> Result<Vec<Value>, serde_saphyr::Error> {
    serde_saphyr::from_multiple_with_options(text, yaml_options())
}

fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::Options {
        strict_booleans: true,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        ..serde_saphyr::Options::default()
    }
}

/// Parses one or many job specs: a JSON object or array of objects, or a YAML
/// stream of documents (`---` between them; empty documents are skipped). Says
/// too whether the text held a list (an array, or several documents). Every
/// problem of every spec is reported, under `[i]` for the i-th when there are
/// several; nothing is returned unless all are valid.
///
/// ```
/// use orion_core::spec::{parse_specs, Format};
/// let (specs, list) = parse_specs("name: a\ntask: {image: x}\n---\nname: b\ntask: {image: y}\n", Format::Yaml).unwrap();
/// assert_eq!((specs.len(), list), (2, true));
/// ```
pub fn parse_specs(
    text: &str,
    format: super::Format,
) -> Result<(Vec<super::JobSpec>, bool), super::SpecError> {
    use super::{Format, JobSpec, SpecError};
    let (values, list) = match format {
        Format::Json => match parse_json_strict(text) {
            Ok(Value::Array(items)) => (items, true),
            Ok(v) => (vec![v], false),
            Err(e) => return Err(SpecError::one("", format!("malformed JSON: {e}"))),
        },
        Format::Yaml => {
            let docs = parse_yaml_documents(text)
                .map_err(|e| SpecError::one("", format!("malformed YAML: {e}")))?;
            let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
            let list = docs.len() > 1;
            (docs, list)
        }
    };
    if values.is_empty() {
        return Err(SpecError::one("", "no job spec in the document"));
    }
    let mut specs = Vec::with_capacity(values.len());
    let mut errors = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, v) in values.into_iter().enumerate() {
        match JobSpec::from_value(v) {
            Ok(spec) if !seen.insert(spec.name.clone()) => errors.push(super::FieldError {
                field: if list {
                    format!("[{i}].name")
                } else {
                    "name".into()
                },
                problem: format!("job {:?} is given twice", spec.name),
            }),
            Ok(spec) => specs.push(spec),
            Err(e) if list => errors.extend(e.within(&format!("[{i}]")).errors),
            Err(e) => errors.extend(e.errors),
        }
    }
    if errors.is_empty() {
        Ok((specs, list))
    } else {
        Err(SpecError { errors })
    }
}

/// A JSON value whose objects may not repeat a key.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let v = map.next_value_seed(Strict)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_duplicates_are_refused_and_the_rest_reads_as_serde_json_does() {
        let text = r#"{"a": [1, -2, 2.5, "s", null, true], "b": {"c": {}}}"#;
        assert_eq!(
            parse_json_strict(text).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
        let e = parse_json_strict(r#"{"b": {"c": 1, "c": 2}}"#).unwrap_err();
        assert!(e.to_string().contains(r#"duplicate key "c""#), "{e}");
        assert!(parse_json_strict(r#"{"a": 1} trailing"#).is_err());
    }

    #[test]
    fn many_specs_parse_together_or_not_at_all() {
        use crate::spec::Format;
        let two =
            r#"[{"name": "a", "task": {"image": "x"}}, {"name": "b", "task": {"image": "y"}}]"#;
        let (specs, list) = parse_specs(two, Format::Json).unwrap();
        assert_eq!((specs.len(), list), (2, true));
        let (one, list) =
            parse_specs(r#"{"name": "a", "task": {"image": "x"}}"#, Format::Json).unwrap();
        assert_eq!((one.len(), list), (1, false));
        let bad = "name: a\ntask: {image: x}\n---\nname: B_ad\ntask: {image: y, nope: 1}\n---\nname: a\ntask: {image: z}\n";
        let e = parse_specs(bad, Format::Yaml).unwrap_err();
        let fields: Vec<&str> = e.errors.iter().map(|f| f.field.as_str()).collect();
        assert!(fields.contains(&"[1].task.nope"), "{e}");
        assert!(fields.contains(&"[2].name"), "the duplicate: {e}");
        assert!(parse_specs("", Format::Yaml).is_err());
        assert!(parse_specs("[]", Format::Json).is_err());
    }

    #[test]
    fn yaml_refuses_duplicates_and_keeps_yaml_11_booleans_as_strings() {
        let v = parse_yaml_value("a: [y, n, no, off, True]\nb: 1").unwrap();
        assert_eq!(v["a"], serde_json::json!(["y", "n", "no", "off", true]));
        assert!(parse_yaml_value("a: 1\na: 2").is_err());
        let docs = parse_yaml_documents("a: 1\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
    }
}
