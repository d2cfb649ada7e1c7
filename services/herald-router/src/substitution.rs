//! A template part made only of text and plain value references (`{{name}}`, `{{a.b}}`,
//! `{{{raw}}}`, comments) renders by substitution, without Handlebars: no context navigation
//! that builds a path per lookup, no value rendered into a fresh string before it is escaped.
//! Anything else (helpers, blocks, `this`, `../`, `@` variables, array indices) and any value
//! that is missing or not a string, number or boolean leaves the part to Handlebars, which
//! renders it or names the error. A test checks that both agree on thousands of generated
//! templates.

use handlebars::template::{Parameter, TemplateElement};
use handlebars::{Handlebars, Path, PathSeg, Template};
use serde_json::Value;

/// One piece of a substitutable part.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// A value reference: the object keys to follow from the data's root, and whether the
    /// value is escaped (`{{ }}`) or written as it is (`{{{ }}}`).
    Value {
        path: Vec<String>,
        escaped: bool,
    },
}

/// A compiled part that renders by substitution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Substitution(Vec<Piece>);

impl Substitution {
    /// The substitution plan of `template` as compiled into `registry`, if it is only text
    /// and plain value references.
    pub fn plan(template: &Template, registry: &Handlebars<'static>) -> Option<Substitution> {
        let mut pieces = Vec::with_capacity(template.elements.len());
        for element in &template.elements {
            let (helper, escaped) = match element {
                TemplateElement::RawString(text) => {
                    pieces.push(Piece::Text(text.clone()));
                    continue;
                }
                TemplateElement::Comment(_) => continue,
                TemplateElement::Expression(helper) => (helper, true),
                TemplateElement::HtmlExpression(helper) => (helper, false),
                _ => return None,
            };
            if helper.block || !helper.params.is_empty() || !helper.hash.is_empty() {
                return None;
            }
            let Parameter::Path(Path::Relative((segments, raw))) = &helper.name else {
                return None;
            };
            let path = segments
                .iter()
                .map(|segment| match segment {
                    PathSeg::Named(name) => Some(name.clone()),
                    _ => None,
                })
                .collect::<Option<Vec<String>>>()?;
            if path.is_empty() || (path.len() == 1 && names_a_helper(registry, raw)) {
                return None;
            }
            pieces.push(Piece::Value { path, escaped });
        }
        Some(Substitution(pieces))
    }

    /// The part rendered from `data` with `escape`, or `None` when a value is missing or not
    /// a string, number or boolean (Handlebars renders the part then).
    pub fn render(&self, data: &Value, escape: fn(&str) -> String) -> Option<String> {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Value { path, escaped } => {
                    let value = path
                        .iter()
                        .try_fold(data, |value, key| value.as_object()?.get(key))?;
                    let number;
                    let text: &str = match value {
                        Value::String(s) => s,
                        Value::Number(n) => {
                            number = n.to_string();
                            &number
                        }
                        Value::Bool(true) => "true",
                        Value::Bool(false) => "false",
                        _ => return None,
                    };
                    if *escaped {
                        out.push_str(&escape(text));
                    } else {
                        out.push_str(text);
                    }
                }
            }
        }
        Some(out)
    }
}

/// Whether Handlebars takes `{{name}}` for a helper call rather than a value: it does when
/// the registry has a helper of that name, which the registry does not say publicly, so ask
/// it to render one.
fn names_a_helper(registry: &Handlebars<'static>, name: &str) -> bool {
    let data = serde_json::json!({ name: "v" });
    registry
        .render_template(&format!("{{{{{name}}}}}"), &data)
        .map_or(true, |rendered| rendered != "v")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::json_string_escape;

    fn registry(escape: fn(&str) -> String) -> Handlebars<'static> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(escape);
        registry
    }

    fn plan(source: &str) -> Option<Substitution> {
        let template = Template::compile(source).ok()?;
        Substitution::plan(&template, &registry(handlebars::html_escape))
    }

    #[test]
    fn text_and_value_references_are_substituted_and_the_rest_is_not() {
        assert!(plan("Hi {{name}}, {{{order.id}}} {{! note }}").is_some());
        // A bracketed segment is a key like any other (an array on the way is left to
        // Handlebars when rendering).
        assert!(plan("{{a.[0]}}").is_some());
        for source in [
            "{{#if a}}x{{/if}}",
            "{{lookup a b}}",
            "{{len items}}",
            "{{this}}",
            "{{../a}}",
            "{{@root.a}}",
            "{{lookup}}",
            "{{each}}",
        ] {
            assert_eq!(plan(source), None, "{source}");
        }
    }

    #[test]
    fn missing_and_non_scalar_values_are_left_to_handlebars() {
        let plan = plan("{{a.b}}").unwrap();
        let escape: fn(&str) -> String = handlebars::html_escape;
        assert_eq!(
            plan.render(&serde_json::json!({"a": {"b": 1.5}}), escape)
                .as_deref(),
            Some("1.5")
        );
        for data in [
            serde_json::json!({}),
            serde_json::json!({"a": 1}),
            serde_json::json!({"a": {"b": null}}),
            serde_json::json!({"a": {"b": [1]}}),
            serde_json::json!({"a": {"b": {"c": 1}}}),
        ] {
            assert_eq!(plan.render(&data, escape), None, "{data}");
        }
    }

    /// A small deterministic generator (xorshift), so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    const TEXTS: [&str; 10] = [
        "Hello ", "<b>", " & ", "\"q\" ", "'s ", "`=` ", "é ✓ ", "\n", "  ", "}",
    ];
    const PATHS: [&str; 8] = ["name", "a.b", "a.c", "n", "f", "t", "missing", "a.b.c"];
    const VALUES: [&str; 10] = [
        r#""Ada <x> & \"y\" 'z' `=`""#,
        r#""é\u0001\n\t""#,
        "42",
        "-7",
        "1.5",
        "1e300",
        "true",
        "false",
        "null",
        "[1, 2]",
    ];

    fn template(rng: &mut Rng) -> String {
        let mut source = String::new();
        for _ in 0..rng.below(6) + 1 {
            match rng.below(9) {
                0..=2 => source.push_str(rng.pick(&TEXTS)),
                3..=5 => source.push_str(&format!("{{{{{}}}}}", rng.pick(&PATHS))),
                6 => source.push_str(&format!("{{{{{{{}}}}}}}", rng.pick(&PATHS))),
                7 => source.push_str(&format!("{{{{ {} }}}}", rng.pick(&PATHS))),
                _ => source.push_str(&format!("{{{{~{}~}}}}", rng.pick(&PATHS))),
            }
        }
        source
    }

    fn data(rng: &mut Rng) -> Value {
        let value = |rng: &mut Rng| -> Value {
            serde_json::from_str(rng.pick(&VALUES)).unwrap_or(Value::Null)
        };
        let mut a = serde_json::Map::new();
        a.insert("b".into(), value(rng));
        if rng.below(2) == 0 {
            a.insert("c".into(), value(rng));
        }
        let mut root = serde_json::Map::new();
        root.insert("a".into(), Value::Object(a));
        for key in ["name", "n", "f", "t"] {
            if rng.below(5) != 0 {
                root.insert(key.into(), value(rng));
            }
        }
        Value::Object(root)
    }

    #[test]
    fn substitution_agrees_with_handlebars_on_generated_templates() {
        let escapes: [fn(&str) -> String; 3] = [
            handlebars::html_escape,
            handlebars::no_escape,
            json_string_escape,
        ];
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let mut substituted = 0;
        for round in 0..6000 {
            let escape = escapes[round % 3];
            let registry = registry(escape);
            let source = template(&mut rng);
            let data = data(&mut rng);
            let Ok(template) = Template::compile(&source) else {
                continue;
            };
            let Some(plan) = Substitution::plan(&template, &registry) else {
                continue;
            };
            let Some(ours) = plan.render(&data, escape) else {
                continue;
            };
            substituted += 1;
            let theirs = registry.render_template(&source, &data);
            assert_eq!(
                Ok(ours),
                theirs.map_err(|e| e.to_string()),
                "template {source:?} with {data}"
            );
        }
        // Most generated templates substitute: the comparison is not vacuous.
        assert!(substituted > 1000, "only {substituted} substituted");
    }
}
