//! `-t '{{…}}'`: a list or status printed through a Go template (the
//! `gtmpl` crate), as `nomad … -t` and `docker … --format` do. The template sees
//! the API's JSON as `.`: `{{range .}}{{.name}} {{.health}}{{"\n"}}{{end}}`.

use anyhow::{anyhow, Result};
use gtmpl_value::{Number, Value as Tv};
use serde_json::Value;

/// A parsed template, checked before anything is asked of the node.
pub struct Template(gtmpl::Template);

impl Template {
    /// Parses `text`; a template that does not parse is an error naming why.
    pub fn parse(text: &str) -> Result<Template> {
        let mut t = gtmpl::Template::default();
        t.parse(text)
            .map_err(|e| anyhow!("-t {text:?}: the template does not parse: {e}"))?;
        Ok(Template(t))
    }

    /// Renders `data` (the API's JSON).
    pub fn render(&self, data: &Value) -> Result<String> {
        self.0
            .render(&gtmpl::Context::from(convert(data)))
            .map_err(|e| anyhow!("-t: the template failed on this data: {e}"))
    }
}

/// JSON as the template engine's values.
fn convert(v: &Value) -> Tv {
    match v {
        Value::Null => Tv::Nil,
        Value::Bool(b) => Tv::Bool(*b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Tv::Number(Number::from(u)),
            (_, Some(i), _) => Tv::Number(Number::from(i)),
            (_, _, Some(f)) => Tv::Number(Number::from(f)),
            _ => Tv::Nil,
        },
        Value::String(s) => Tv::String(s.clone()),
        Value::Array(items) => Tv::Array(items.iter().map(convert).collect()),
        Value::Object(m) => Tv::Object(m.iter().map(|(k, v)| (k.clone(), convert(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_see_the_json_as_dot() {
        let jobs = serde_json::json!([
            {"name": "web", "health": "running", "running": 2},
            {"name": "db", "health": "pending", "running": 0}
        ]);
        let t =
            Template::parse(r#"{{range .}}{{.name}}={{.health}}/{{.running}};{{end}}"#).unwrap();
        assert_eq!(t.render(&jobs).unwrap(), "web=running/2;db=pending/0;");
        let one = Template::parse("{{.name}} v{{.version}}").unwrap();
        assert_eq!(
            one.render(&serde_json::json!({"name": "web", "version": 3}))
                .unwrap(),
            "web v3"
        );
        let e = Template::parse("{{range .}").err().unwrap().to_string();
        assert!(e.contains("does not parse"), "{e}");
    }
}
