//! Template rendering: turns one stored template (one version, one channel, one locale) and the
//! notification's data into the content a delivery worker sends.
//!
//! Templates are Handlebars in strict mode, so a variable the data lacks is an error rather than
//! a silently blank line in someone's inbox. Each part is escaped for where it ends up: HTML
//! entities in the html part, JSON string escapes in the json part (which must then parse), and
//! nothing in the subject and text. Compiled parts are cached per [`TemplateKey`], up to a fixed
//! number of keys.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use handlebars::template::TemplateElement;
use handlebars::{Handlebars, RenderErrorReason, Template};
use herald_contracts::{Channel, RenderedContent};
use herald_store::directory::TemplateRow;

use crate::sms::sms_shape;
use crate::substitution::Substitution;

/// The locale every template has, tried after all more specific ones.
pub const DEFAULT_LOCALE: &str = "default";

/// A template's parts as stored (one version, one channel, one locale).
/// Borrowed from the stored row: rendering copies no template body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateSource<'a> {
    pub subject: Option<&'a str>,
    pub text: Option<&'a str>,
    pub html: Option<&'a str>,
    pub json: Option<&'a str>,
}

impl<'a> From<&'a herald_store::directory::TemplateRow> for TemplateSource<'a> {
    fn from(row: &'a herald_store::directory::TemplateRow) -> Self {
        Self {
            subject: row.subject.as_deref(),
            text: row.text.as_deref(),
            html: row.html.as_deref(),
            json: row.json.as_deref(),
        }
    }
}

impl TemplateSource<'_> {
    /// A fingerprint of every part's body: two sources with the same digest compile the same.
    fn digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for part in TemplatePart::ALL {
            self.part(part).hash(&mut hasher);
        }
        hasher.finish()
    }

    /// The stored body of one part, if the template has it.
    pub fn part(&self, part: TemplatePart) -> Option<&str> {
        match part {
            TemplatePart::Subject => self.subject,
            TemplatePart::Text => self.text,
            TemplatePart::Html => self.html,
            TemplatePart::Json => self.json,
        }
    }
}

/// Identifies a compiled template in the cache.
///
/// A key's compiled parts are reused only while its source stays the same: `herald seed`
/// upserts, so a version's body can change under the same key, and the new body must go live
/// once the router's template rows are reloaded (within `router.cache_ttl`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TemplateKey {
    pub tenant: String,
    pub template_id: String,
    pub version: i32,
    pub channel: Channel,
    pub locale: String,
}

impl fmt::Display for TemplateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} v{} ({}, {})",
            self.tenant, self.template_id, self.version, self.channel, self.locale
        )
    }
}

/// One part of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TemplatePart {
    Subject,
    Text,
    Html,
    Json,
}

impl TemplatePart {
    pub const ALL: [TemplatePart; 4] = [
        TemplatePart::Subject,
        TemplatePart::Text,
        TemplatePart::Html,
        TemplatePart::Json,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TemplatePart::Subject => "subject",
            TemplatePart::Text => "text",
            TemplatePart::Html => "html",
            TemplatePart::Json => "json",
        }
    }
}

impl fmt::Display for TemplatePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a template could not be rendered. `template` is the key as `tenant/id vN (channel,
/// locale)`.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template {template} cannot be sent as {channel}: it has no {needs} part")]
    MissingPart {
        template: String,
        channel: Channel,
        needs: &'static str,
    },
    #[error("the {part} part of template {template} does not compile: {reason}")]
    Compile {
        template: String,
        part: TemplatePart,
        reason: String,
    },
    #[error(
        "the {part} part of template {template} includes a partial (`{{{{> name}}}}`); \
         templates must be self-contained, so inline the partial's content"
    )]
    PartialNotAllowed {
        template: String,
        part: TemplatePart,
    },
    #[error(
        "the {part} part of template {template} uses `{variable}`, which the notification \
         data does not provide; add it to the request's data or remove it from the template"
    )]
    MissingVariable {
        template: String,
        part: TemplatePart,
        variable: String,
    },
    #[error("the {part} part of template {template} failed to render: {reason}")]
    Render {
        template: String,
        part: TemplatePart,
        reason: String,
    },
    #[error(
        "the json part of template {template} did not render to valid JSON ({source}); string \
         values belong inside quotes, e.g. \"name\": \"{{{{name}}}}\""
    )]
    InvalidJson {
        template: String,
        #[source]
        source: serde_json::Error,
    },
}

/// What the registries hold for one key.
#[derive(Debug, Default)]
struct Compiled {
    digest: u64,
    /// Each compiled part, its name in its registry (kept: naming a part formats a string)
    /// and, when it is only text and value references, its substitution plan.
    parts: Vec<(TemplatePart, String, Option<Substitution>)>,
}

impl Compiled {
    fn part(&self, part: TemplatePart) -> Option<(&str, Option<&Substitution>)> {
        self.parts
            .iter()
            .find(|(p, _, _)| *p == part)
            .map(|(_, name, plan)| (name.as_str(), plan.as_ref()))
    }

    fn name(&self, part: TemplatePart) -> Option<&str> {
        self.part(part).map(|(name, _)| name)
    }
}

/// Compiled templates, cached by key (bounded: at most `capacity` keys; evict the least
/// recently inserted when full).
#[derive(Debug)]
pub struct Renderer {
    capacity: usize,
    /// Subject and text: sent as they render, no escaping.
    plain: Handlebars<'static>,
    /// Html: Handlebars' default HTML escaping.
    html: Handlebars<'static>,
    /// Json: values escaped as JSON string contents.
    json: Handlebars<'static>,
    /// The parts compiled into the registries for each cached key, and the digest of the
    /// source they were compiled from.
    compiled: HashMap<TemplateKey, Compiled>,
    /// Cached keys, oldest first, for eviction.
    inserted: VecDeque<TemplateKey>,
}

impl Renderer {
    /// A renderer caching at most `capacity` keys; with 0 nothing stays compiled between calls.
    pub fn new(capacity: usize) -> Self {
        Renderer {
            capacity,
            plain: registry(escape_for(TemplatePart::Subject)),
            html: registry(escape_for(TemplatePart::Html)),
            json: registry(escape_for(TemplatePart::Json)),
            compiled: HashMap::new(),
            inserted: VecDeque::new(),
        }
    }

    /// Renders `source` (compiled once per key and part, then reused) with `data` (a JSON
    /// object), copied once into a context for every part.
    pub fn render(
        &mut self,
        key: &TemplateKey,
        source: &TemplateSource,
        data: &serde_json::Value,
    ) -> Result<RenderedContent, RenderError> {
        self.render_context(key, source, &handlebars::Context::from(data.clone()))
    }

    /// Like [`Renderer::render`], with the data already in a context: the router moves an
    /// event's data into one and renders every channel from it, copying nothing.
    pub fn render_context(
        &mut self,
        key: &TemplateKey,
        source: &TemplateSource,
        context: &handlebars::Context,
    ) -> Result<RenderedContent, RenderError> {
        check_channel_parts(key, source)?;
        let digest = source.digest();
        self.forget_if_changed(key, digest);
        let rendered = self.render_parts(key, source, digest, context);
        // After rendering, so a capacity of 0 still renders (and then forgets) the template.
        self.evict_beyond_capacity();
        let mut content = rendered?;
        if key.channel == Channel::Sms
            && let Some(text) = &content.text
        {
            let (encoding, segments) = sms_shape(text);
            content.sms_encoding = Some(encoding);
            content.sms_segments = Some(i32::try_from(segments).unwrap_or(i32::MAX));
        }
        Ok(content)
    }

    /// How many keys have compiled parts cached.
    pub fn cached(&self) -> usize {
        self.compiled.len()
    }

    /// Drops the key's compiled parts if they were compiled from another source.
    fn forget_if_changed(&mut self, key: &TemplateKey, digest: u64) {
        let Some(compiled) = self.compiled.get_mut(key) else {
            return;
        };
        if compiled.digest == digest {
            return;
        }
        let stale = std::mem::take(&mut compiled.parts);
        compiled.digest = digest;
        for (part, name, _) in stale {
            self.registry_for_mut(part).unregister_template(&name);
        }
    }

    fn render_parts(
        &mut self,
        key: &TemplateKey,
        source: &TemplateSource,
        digest: u64,
        context: &handlebars::Context,
    ) -> Result<RenderedContent, RenderError> {
        let mut content = RenderedContent::default();
        for part in TemplatePart::ALL {
            let Some(body) = source.part(part) else {
                continue;
            };
            self.compile(key, part, body, digest)?;
            let (name, plan) = match self.compiled.get(key).and_then(|c| c.part(part)) {
                Some((name, plan)) => (std::borrow::Cow::Borrowed(name), plan),
                // Not reached: `compile` just recorded it.
                None => (std::borrow::Cow::Owned(template_name(key, part)), None),
            };
            let substituted = plan.and_then(|plan| plan.render(context.data(), escape_for(part)));
            let rendered = match substituted {
                Some(rendered) => rendered,
                None => {
                    // Into a buffer that grows as needed: `render` starts every part at 8 KiB.
                    let mut buffer = Vec::new();
                    self.registry_for(part)
                        .render_with_context_to_write(&name, context, &mut buffer)
                        .map_err(|e| render_error(key, part, e))?;
                    String::from_utf8(buffer)
                        .map_err(|e| render_error(key, part, handlebars::RenderError::from(e)))?
                }
            };
            let slot = match part {
                TemplatePart::Subject => &mut content.subject,
                TemplatePart::Text => &mut content.text,
                TemplatePart::Html => &mut content.html,
                TemplatePart::Json => {
                    serde_json::from_str::<serde_json::Value>(&rendered).map_err(|source| {
                        RenderError::InvalidJson {
                            template: key.to_string(),
                            source,
                        }
                    })?;
                    &mut content.json
                }
            };
            *slot = Some(rendered);
        }
        Ok(content)
    }

    /// Compiles and registers `part` of `key` unless it already is.
    fn compile(
        &mut self,
        key: &TemplateKey,
        part: TemplatePart,
        body: &str,
        digest: u64,
    ) -> Result<(), RenderError> {
        if self
            .compiled
            .get(key)
            .is_some_and(|compiled| compiled.name(part).is_some())
        {
            return Ok(());
        }
        let name = template_name(key, part);
        let template = compile_part(body, name.clone()).map_err(|e| match e {
            SourceError::Compile { .. } => RenderError::Compile {
                template: key.to_string(),
                part,
                reason: e.to_string(),
            },
            SourceError::Partial => RenderError::PartialNotAllowed {
                template: key.to_string(),
                part,
            },
        })?;
        let plan = Substitution::plan(&template, self.registry_for(part));
        self.registry_for_mut(part)
            .register_template(&name, template);
        // A key takes a cache slot once it has a compiled part, so one that never compiles
        // does not push working templates out.
        let compiled = self.compiled.entry(key.clone()).or_insert_with(|| {
            self.inserted.push_back(key.clone());
            Compiled {
                digest,
                parts: Vec::new(),
            }
        });
        compiled.parts.push((part, name, plan));
        Ok(())
    }

    fn evict_beyond_capacity(&mut self) {
        while self.compiled.len() > self.capacity {
            let Some(oldest) = self.inserted.pop_front() else {
                break;
            };
            for (part, name, _) in self.compiled.remove(&oldest).unwrap_or_default().parts {
                self.registry_for_mut(part).unregister_template(&name);
            }
        }
    }

    fn registry_for(&self, part: TemplatePart) -> &Handlebars<'static> {
        match part {
            TemplatePart::Subject | TemplatePart::Text => &self.plain,
            TemplatePart::Html => &self.html,
            TemplatePart::Json => &self.json,
        }
    }

    fn registry_for_mut(&mut self, part: TemplatePart) -> &mut Handlebars<'static> {
        match part {
            TemplatePart::Subject | TemplatePart::Text => &mut self.plain,
            TemplatePart::Html => &mut self.html,
            TemplatePart::Json => &mut self.json,
        }
    }
}

/// Why a part's source is not a template the router can render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// Handlebars refused it; `line` and `column` are 1-based, where it knows them.
    #[error("{}", compile_reason(*line, *column, reason))]
    Compile {
        line: Option<usize>,
        column: Option<usize>,
        reason: String,
    },
    #[error(
        "includes a partial (`{{{{> name}}}}`); templates must be self-contained, so inline the \
         partial's content"
    )]
    Partial,
}

fn compile_reason(line: Option<usize>, column: Option<usize>, reason: &str) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!("line {line}, column {column}: {reason}"),
        _ => reason.to_owned(),
    }
}

/// Compiles one part as the router does. Used by the renderer and by `herald api` to refuse a
/// template version that would not render.
pub fn compile_part(body: &str, name: String) -> Result<Template, SourceError> {
    let template = Template::compile_with_name(body, name).map_err(|e| {
        let (line, column) = e.pos().unzip();
        SourceError::Compile {
            line,
            column,
            reason: e.reason().to_string(),
        }
    })?;
    // The registries are shared by every tenant, so a partial could pull in another tenant's
    // template by name.
    if uses_partials(&template) {
        return Err(SourceError::Partial);
    }
    Ok(template)
}

/// How a part's values are escaped: the escape function of its registry.
fn escape_for(part: TemplatePart) -> fn(&str) -> String {
    match part {
        TemplatePart::Subject | TemplatePart::Text => handlebars::no_escape,
        TemplatePart::Html => handlebars::html_escape,
        TemplatePart::Json => json_string_escape,
    }
}

/// A strict-mode registry with the given escaping.
fn registry(escape: fn(&str) -> String) -> Handlebars<'static> {
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    registry.register_escape_fn(escape);
    registry
}

/// The registry name of one part of one key. Strings are written `{:?}`-quoted so that no two
/// keys share a name, whatever characters their fields contain.
fn template_name(key: &TemplateKey, part: TemplatePart) -> String {
    format!(
        "{:?}/{:?}@{}/{}/{:?}/{}",
        key.tenant, key.template_id, key.version, key.channel, key.locale, part
    )
}

/// Checks the template has what its channel sends: text for sms, push and in-app; a subject
/// and a text or html body for email; a json body for webhooks.
fn check_channel_parts(key: &TemplateKey, source: &TemplateSource) -> Result<(), RenderError> {
    let missing = |needs: &'static str| {
        Err(RenderError::MissingPart {
            template: key.to_string(),
            channel: key.channel,
            needs,
        })
    };
    match key.channel {
        Channel::Sms | Channel::Push | Channel::Inapp if source.text.is_none() => missing("text"),
        Channel::Email if source.subject.is_none() => missing("subject"),
        Channel::Email if source.text.is_none() && source.html.is_none() => missing("text or html"),
        Channel::Webhook if source.json.is_none() => missing("json"),
        _ => Ok(()),
    }
}

fn render_error(
    key: &TemplateKey,
    part: TemplatePart,
    error: handlebars::RenderError,
) -> RenderError {
    let template = key.to_string();
    match error.reason() {
        RenderErrorReason::MissingVariable(path) => RenderError::MissingVariable {
            template,
            part,
            variable: path
                .clone()
                .unwrap_or_else(|| "an unnamed value".to_owned()),
        },
        reason => RenderError::Render {
            template,
            part,
            reason: match (error.line_no, error.column_no) {
                (Some(line), Some(column)) => format!("line {line}, column {column}: {reason}"),
                _ => reason.to_string(),
            },
        },
    }
}

/// Whether a compiled template includes a partial anywhere, including inside blocks.
fn uses_partials(template: &Template) -> bool {
    template.elements.iter().any(|element| match element {
        TemplateElement::PartialExpression(_) | TemplateElement::PartialBlock(_) => true,
        TemplateElement::HelperBlock(helper)
        | TemplateElement::Expression(helper)
        | TemplateElement::HtmlExpression(helper) => helper
            .template
            .iter()
            .chain(helper.inverse.iter())
            .any(uses_partials),
        TemplateElement::DecoratorBlock(decorator)
        | TemplateElement::DecoratorExpression(decorator) => {
            decorator.template.iter().any(uses_partials)
        }
        // Raw text, comments, and any element kind newer than handlebars 6.4 (the enum is
        // non-exhaustive); in 6.4 only the two partial kinds include other templates.
        _ => false,
    })
}

/// Escapes a value for use inside a JSON string literal: quotes, backslashes and control
/// characters, which are the characters JSON does not allow there as they are.
pub fn json_string_escape(raw: &str) -> String {
    let mut escaped = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            '\u{08}' => escaped.push_str("\\b"),
            '\u{0C}' => escaped.push_str("\\f"),
            c if c < ' ' => escaped.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The locale fallback chain: "fr-CA" → ["fr-CA", "fr", "default"]; "zh-Hant-TW" →
/// ["zh-Hant-TW", "zh-Hant", "zh", "default"]; "default" → ["default"]. Matching is
/// case-insensitive but the returned strings keep the input's case for the full tag.
///
/// Tags are truncated one subtag at a time as in RFC 4647 lookup, which also drops a
/// single-letter extension or private-use marker (the `x` of `en-x-pirate`) left at the end.
/// `_` separates subtags as well as `-`, for POSIX-style tags such as `pt_BR`.
pub fn locale_chain(locale: &str) -> Vec<String> {
    let tag = locale.trim();
    let mut chain: Vec<String> = Vec::new();
    let mut push = |candidate: &str| {
        if !candidate.is_empty() && !chain.iter().any(|c| c.eq_ignore_ascii_case(candidate)) {
            chain.push(candidate.to_owned());
        }
    };
    push(tag);
    let separators = tag.match_indices(['-', '_']).map(|(at, _)| at).rev();
    for end in separators {
        let prefix = &tag[..end];
        let last_subtag = prefix.rsplit(['-', '_']).next().unwrap_or(prefix);
        if last_subtag.len() > 1 {
            push(prefix);
        }
    }
    push(DEFAULT_LOCALE);
    chain
}

/// The template row that renders `channel`: of the pinned version, or else of the newest
/// version that has a part for this channel in a locale of the chain (a new version published
/// for one channel does not take the others with it); within the version, the most specific
/// locale.
pub fn template_for<'r>(
    rows: &'r [TemplateRow],
    pinned: Option<i32>,
    channel: herald_contracts::Channel,
    chain: &[String],
) -> Option<&'r TemplateRow> {
    let in_chain = |row: &TemplateRow| chain.iter().any(|l| l.eq_ignore_ascii_case(&row.locale));
    let usable = || {
        rows.iter()
            .filter(move |r| r.channel == Some(channel) && in_chain(r))
    };
    let version = match pinned {
        Some(v) => v,
        None => usable().map(|r| r.version).max()?,
    };
    chain.iter().find_map(|locale| {
        usable().find(|r| r.version == version && r.locale.eq_ignore_ascii_case(locale))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_contracts::SmsEncoding;
    use serde_json::json;

    fn key(channel: Channel) -> TemplateKey {
        TemplateKey {
            tenant: "acme".into(),
            template_id: "welcome".into(),
            version: 3,
            channel,
            locale: "fr-CA".into(),
        }
    }

    fn source() -> TemplateSource<'static> {
        TemplateSource {
            subject: None,
            text: None,
            html: None,
            json: None,
        }
    }

    fn text(body: &str) -> TemplateSource<'_> {
        TemplateSource {
            text: Some(body),
            ..source()
        }
    }

    #[test]
    fn renders_text_with_data() {
        let mut renderer = Renderer::new(8);
        let content = renderer
            .render(
                &key(Channel::Push),
                &text("Hi {{name}}!"),
                &json!({"name": "Ada"}),
            )
            .unwrap();
        assert_eq!(
            content,
            RenderedContent {
                text: Some("Hi Ada!".into()),
                ..RenderedContent::default()
            }
        );
    }

    #[test]
    fn strict_mode_names_the_missing_variable_and_part() {
        let mut renderer = Renderer::new(8);
        let err = renderer
            .render(
                &key(Channel::Sms),
                &text("Code {{code}}"),
                &json!({"name": "Ada"}),
            )
            .unwrap_err();
        match &err {
            RenderError::MissingVariable { part, variable, .. } => {
                assert_eq!(*part, TemplatePart::Text);
                assert_eq!(variable, "code");
            }
            other => panic!("expected a missing variable, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains("`code`"), "{message}");
        assert!(message.contains("text part"), "{message}");
        assert!(
            message.contains("acme/welcome v3 (sms, fr-CA)"),
            "{message}"
        );
    }

    #[test]
    fn strict_mode_names_a_missing_nested_variable_in_the_subject() {
        let mut renderer = Renderer::new(8);
        let email = TemplateSource {
            subject: Some("Invoice {{invoice.number}}"),
            text: Some("Thanks"),
            ..source()
        };
        let err = renderer
            .render(&key(Channel::Email), &email, &json!({"invoice": {}}))
            .unwrap_err();
        match err {
            RenderError::MissingVariable { part, variable, .. } => {
                assert_eq!(part, TemplatePart::Subject);
                assert_eq!(variable, "invoice.number");
            }
            other => panic!("expected a missing variable, got {other:?}"),
        }
    }

    #[test]
    fn html_is_escaped_only_in_the_html_part() {
        let mut renderer = Renderer::new(8);
        let email = TemplateSource {
            subject: Some("About {{v}}"),
            text: Some("Text {{v}}"),
            html: Some("<p>{{v}}</p>"),
            json: None,
        };
        let content = renderer
            .render(&key(Channel::Email), &email, &json!({"v": "<b>&\""}))
            .unwrap();
        assert_eq!(content.subject.as_deref(), Some("About <b>&\""));
        assert_eq!(content.text.as_deref(), Some("Text <b>&\""));
        assert_eq!(content.html.as_deref(), Some("<p>&lt;b&gt;&amp;&quot;</p>"));
        assert_eq!(content.json, None);
        assert_eq!(content.sms_encoding, None);
    }

    #[test]
    fn json_values_are_escaped_as_string_contents() {
        let mut renderer = Renderer::new(8);
        let hook = TemplateSource {
            json: Some(r#"{"message": "{{message}}", "count": {{count}}}"#),
            ..source()
        };
        let message = "He said \"hi\"\nthen left \\ \u{1}\t";
        let content = renderer
            .render(
                &key(Channel::Webhook),
                &hook,
                &json!({"message": message, "count": 2}),
            )
            .unwrap();
        let body = content.json.unwrap();
        assert!(body.contains(r#"\"hi\""#), "{body}");
        assert!(body.contains(r"\n"), "{body}");
        assert!(body.contains(r"\u0001"), "{body}");
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed, json!({"message": message, "count": 2}));
    }

    #[test]
    fn json_escape_function() {
        assert_eq!(json_string_escape("plain é €"), "plain é €");
        assert_eq!(json_string_escape("a\"b\\c"), "a\\\"b\\\\c");
        assert_eq!(
            json_string_escape("\n\r\t\u{8}\u{c}\u{0}\u{1f}"),
            "\\n\\r\\t\\b\\f\\u0000\\u001f"
        );
        assert_eq!(json_string_escape("<tag>&"), "<tag>&");
    }

    #[test]
    fn json_that_does_not_parse_is_an_error() {
        let mut renderer = Renderer::new(8);
        // The value is not quoted, so a string makes the body invalid.
        let hook = TemplateSource {
            json: Some(r#"{"name": {{name}}}"#),
            ..source()
        };
        let err = renderer
            .render(&key(Channel::Webhook), &hook, &json!({"name": "Ada"}))
            .unwrap_err();
        assert!(matches!(err, RenderError::InvalidJson { .. }), "{err:?}");
        assert!(err.to_string().contains("json part"), "{err}");
        // A number there is fine.
        let content = renderer
            .render(&key(Channel::Webhook), &hook, &json!({"name": 7}))
            .unwrap();
        assert_eq!(content.json.as_deref(), Some(r#"{"name": 7}"#));
    }

    #[test]
    fn nested_data_and_each() {
        let mut renderer = Renderer::new(8);
        let template = text("Invoice {{invoice.number}}:{{#each items}} {{name}}×{{qty}}{{/each}}");
        let data = json!({
            "invoice": {"number": "INV-42"},
            "items": [{"name": "pen", "qty": 2}, {"name": "ink", "qty": 1}],
        });
        let content = renderer
            .render(&key(Channel::Inapp), &template, &data)
            .unwrap();
        assert_eq!(content.text.as_deref(), Some("Invoice INV-42: pen×2 ink×1"));
    }

    #[test]
    fn each_over_missing_items_is_an_error_in_strict_mode() {
        let mut renderer = Renderer::new(8);
        let template = text("{{#each items}}{{name}}{{/each}}");
        let err = renderer
            .render(&key(Channel::Inapp), &template, &json!({}))
            .unwrap_err();
        match err {
            RenderError::MissingVariable { variable, .. } => assert_eq!(variable, "items"),
            other => panic!("expected a missing variable, got {other:?}"),
        }
    }

    #[test]
    fn compiled_parts_are_reused_per_key() {
        let mut renderer = Renderer::new(8);
        let k = key(Channel::Push);
        let first = renderer
            .render(&k, &text("Hi {{name}}"), &json!({"name": "Ada"}))
            .unwrap();
        let second = renderer
            .render(&k, &text("Hi {{name}}"), &json!({"name": "Grace"}))
            .unwrap();
        assert_eq!(first.text.as_deref(), Some("Hi Ada"));
        assert_eq!(second.text.as_deref(), Some("Hi Grace"));
        assert_eq!(renderer.cached(), 1);
    }

    #[test]
    fn a_changed_body_under_the_same_key_is_compiled_anew() {
        // `herald seed` upserts: the same version can come back with another body.
        let mut renderer = Renderer::new(8);
        let k = key(Channel::Email);
        let email = |subject: &'static str, html: Option<&'static str>| TemplateSource {
            subject: Some(subject),
            text: Some("Body {{name}}"),
            html,
            json: None,
        };
        let first = renderer
            .render(
                &k,
                &email("Hi {{name}}", Some("<p>x</p>")),
                &json!({"name": "Ada"}),
            )
            .unwrap();
        assert_eq!(first.subject.as_deref(), Some("Hi Ada"));
        let second = renderer
            .render(&k, &email("Bye {{name}}", None), &json!({"name": "Ada"}))
            .unwrap();
        assert_eq!(second.subject.as_deref(), Some("Bye Ada"));
        assert_eq!(second.html, None, "a part the new body lacks is gone");
        assert_eq!(renderer.cached(), 1);
        assert_eq!(renderer.plain.get_templates().len(), 2, "subject and text");
        assert_eq!(renderer.html.get_templates().len(), 0);
    }

    #[test]
    fn every_field_of_the_key_distinguishes_cache_entries() {
        let mut renderer = Renderer::new(8);
        let base = key(Channel::Push);
        let variants = [
            base.clone(),
            TemplateKey {
                tenant: "globex".into(),
                ..base.clone()
            },
            TemplateKey {
                template_id: "goodbye".into(),
                ..base.clone()
            },
            TemplateKey {
                version: 4,
                ..base.clone()
            },
            TemplateKey {
                channel: Channel::Inapp,
                ..base.clone()
            },
            TemplateKey {
                locale: "fr".into(),
                ..base.clone()
            },
        ];
        for (i, k) in variants.iter().enumerate() {
            let content = renderer
                .render(k, &text(&format!("v{i}")), &json!({}))
                .unwrap();
            assert_eq!(content.text, Some(format!("v{i}")));
        }
        assert_eq!(renderer.cached(), variants.len());
    }

    #[test]
    fn names_do_not_collide_when_fields_contain_separators() {
        let a = TemplateKey {
            tenant: "a/b".into(),
            template_id: "c".into(),
            ..key(Channel::Push)
        };
        let b = TemplateKey {
            tenant: "a".into(),
            template_id: "b/c".into(),
            ..key(Channel::Push)
        };
        assert_ne!(
            template_name(&a, TemplatePart::Text),
            template_name(&b, TemplatePart::Text)
        );
        let mut renderer = Renderer::new(8);
        renderer.render(&a, &text("A"), &json!({})).unwrap();
        let content = renderer.render(&b, &text("B"), &json!({})).unwrap();
        assert_eq!(content.text.as_deref(), Some("B"));
    }

    #[test]
    fn the_oldest_key_is_evicted_at_capacity() {
        let mut renderer = Renderer::new(2);
        let keys: Vec<TemplateKey> = (1..=3)
            .map(|version| TemplateKey {
                version,
                ..key(Channel::Email)
            })
            .collect();
        let bodies: Vec<[String; 3]> = (0..10)
            .map(|n| [format!("S{n}"), format!("T{n}"), format!("<p>{n}</p>")])
            .collect();
        let email = |n: usize| TemplateSource {
            subject: Some(&bodies[n][0]),
            text: Some(&bodies[n][1]),
            html: Some(&bodies[n][2]),
            json: None,
        };
        for (n, k) in keys.iter().enumerate() {
            renderer.render(k, &email(n), &json!({})).unwrap();
        }
        assert_eq!(renderer.cached(), 2);
        assert!(!renderer.compiled.contains_key(&keys[0]));
        // Evicted from the registries too: two keys' subject+text, and two keys' html.
        assert_eq!(renderer.plain.get_templates().len(), 4);
        assert_eq!(renderer.html.get_templates().len(), 2);
        assert!(
            !renderer
                .plain
                .has_template(&template_name(&keys[0], TemplatePart::Subject))
        );

        // Using a cached key does not refresh it: eviction is by insertion order.
        renderer.render(&keys[1], &email(1), &json!({})).unwrap();
        renderer.render(&keys[0], &email(9), &json!({})).unwrap();
        assert_eq!(renderer.cached(), 2);
        assert!(!renderer.compiled.contains_key(&keys[1]));
        assert!(renderer.compiled.contains_key(&keys[2]));
        // The evicted key was compiled afresh from the source it came with.
        let content = renderer.render(&keys[0], &email(9), &json!({})).unwrap();
        assert_eq!(content.text.as_deref(), Some("T9"));
        assert_eq!(renderer.cached(), 2);
    }

    #[test]
    fn capacity_zero_renders_without_keeping_anything() {
        let mut renderer = Renderer::new(0);
        let content = renderer
            .render(&key(Channel::Push), &text("Hi"), &json!({}))
            .unwrap();
        assert_eq!(content.text.as_deref(), Some("Hi"));
        assert_eq!(renderer.cached(), 0);
        assert!(renderer.plain.get_templates().is_empty());
    }

    #[test]
    fn sms_fields_are_filled_for_sms_only() {
        let mut renderer = Renderer::new(8);
        let content = renderer
            .render(
                &key(Channel::Sms),
                &text("Code {{code}}"),
                &json!({"code": 123456}),
            )
            .unwrap();
        assert_eq!(content.text.as_deref(), Some("Code 123456"));
        assert_eq!(content.sms_encoding, Some(SmsEncoding::Gsm7));
        assert_eq!(content.sms_segments, Some(1));

        let shaped = renderer
            .render(
                &TemplateKey {
                    version: 9,
                    ..key(Channel::Sms)
                },
                &text("{{msg}}"),
                &json!({"msg": "ж".repeat(71)}),
            )
            .unwrap();
        assert_eq!(shaped.sms_encoding, Some(SmsEncoding::Ucs2));
        assert_eq!(shaped.sms_segments, Some(2));

        let push = renderer
            .render(&key(Channel::Push), &text("Hi"), &json!({}))
            .unwrap();
        assert_eq!(push.sms_encoding, None);
        assert_eq!(push.sms_segments, None);
    }

    #[test]
    fn channels_require_their_parts() {
        let mut renderer = Renderer::new(8);
        let needs = |channel, source: &TemplateSource, renderer: &mut Renderer| match renderer
            .render(&key(channel), source, &json!({}))
        {
            Err(RenderError::MissingPart {
                needs, channel: c, ..
            }) => {
                assert_eq!(c, channel);
                Some(needs)
            }
            Ok(_) => None,
            Err(other) => panic!("unexpected {other:?}"),
        };
        let subject_only = TemplateSource {
            subject: Some("S"),
            ..source()
        };
        let html_only = TemplateSource {
            html: Some("H"),
            ..source()
        };
        for channel in [Channel::Sms, Channel::Push, Channel::Inapp] {
            assert_eq!(needs(channel, &html_only, &mut renderer), Some("text"));
            assert_eq!(needs(channel, &text("T"), &mut renderer), None);
        }
        assert_eq!(
            needs(Channel::Email, &text("T"), &mut renderer),
            Some("subject")
        );
        assert_eq!(
            needs(Channel::Email, &subject_only, &mut renderer),
            Some("text or html")
        );
        let subject_html = TemplateSource {
            subject: Some("S"),
            html: Some("H"),
            ..source()
        };
        assert_eq!(needs(Channel::Email, &subject_html, &mut renderer), None);
        assert_eq!(
            needs(Channel::Webhook, &text("T"), &mut renderer),
            Some("json")
        );

        let err = renderer
            .render(&key(Channel::Webhook), &text("T"), &json!({}))
            .unwrap_err();
        assert!(err.to_string().contains("no json part"), "{err}");
    }

    #[test]
    fn a_missing_part_does_not_take_a_cache_slot() {
        let mut renderer = Renderer::new(8);
        assert!(
            renderer
                .render(&key(Channel::Webhook), &text("T"), &json!({}))
                .is_err()
        );
        assert_eq!(renderer.cached(), 0);
    }

    #[test]
    fn a_template_that_does_not_compile_names_the_part() {
        let mut renderer = Renderer::new(8);
        let email = TemplateSource {
            subject: Some("Fine"),
            text: Some("Also fine"),
            html: Some("<p>{{#if x}}unclosed</p>"),
            json: None,
        };
        let err = renderer
            .render(&key(Channel::Email), &email, &json!({"x": true}))
            .unwrap_err();
        match &err {
            RenderError::Compile { part, .. } => assert_eq!(*part, TemplatePart::Html),
            other => panic!("expected a compile error, got {other:?}"),
        }
        assert!(err.to_string().contains("html part"), "{err}");
        assert!(err.to_string().contains("line 1"), "{err}");
        assert!(
            !renderer
                .html
                .has_template(&template_name(&key(Channel::Email), TemplatePart::Html))
        );
    }

    #[test]
    fn without_the_check_a_partial_reaches_another_tenants_template() {
        // Why partials are rejected: in a shared registry a dynamic partial name finds any
        // registered template.
        let mut shared = registry(handlebars::no_escape);
        let victim = template_name(&key(Channel::Push), TemplatePart::Text);
        shared.register_template_string(&victim, "secret").unwrap();
        shared
            .register_template_string("mallory", "{{> (lookup this \"target\")}}")
            .unwrap();
        let leaked = shared
            .render("mallory", &json!({"target": victim}))
            .unwrap();
        assert_eq!(leaked, "secret");
    }

    #[test]
    fn a_template_that_never_compiles_takes_no_cache_slot() {
        let mut renderer = Renderer::new(1);
        let good = key(Channel::Push);
        renderer.render(&good, &text("ok"), &json!({})).unwrap();
        let broken = TemplateKey {
            version: 4,
            ..key(Channel::Push)
        };
        assert!(
            renderer
                .render(&broken, &text("{{#if}}"), &json!({}))
                .is_err()
        );
        assert_eq!(renderer.cached(), 1);
        assert!(renderer.compiled.contains_key(&good));
        assert_eq!(renderer.inserted.len(), 1);
    }

    #[test]
    fn a_renderer_can_be_shared_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Renderer>();
    }

    #[test]
    fn partials_are_rejected() {
        let mut renderer = Renderer::new(8);
        let victim = key(Channel::Push);
        renderer
            .render(&victim, &text("secret"), &json!({}))
            .unwrap();
        let attacker = TemplateKey {
            tenant: "mallory".into(),
            ..key(Channel::Push)
        };
        let data = json!({
            "x": true,
            "xs": [],
            "target": template_name(&victim, TemplatePart::Text),
        });
        for body in [
            "{{> (lookup this \"target\")}}",
            "{{#if x}}{{> other}}{{/if}}",
            "{{#each xs}}{{else}}{{#> layout}}x{{/layout}}{{/each}}",
        ] {
            let err = renderer.render(&attacker, &text(body), &data).unwrap_err();
            assert!(
                matches!(
                    err,
                    RenderError::PartialNotAllowed {
                        part: TemplatePart::Text,
                        ..
                    }
                ),
                "{body}: {err:?}"
            );
        }
    }

    #[test]
    fn locale_chain_examples() {
        assert_eq!(locale_chain("fr-CA"), ["fr-CA", "fr", "default"]);
        assert_eq!(
            locale_chain("zh-Hant-TW"),
            ["zh-Hant-TW", "zh-Hant", "zh", "default"]
        );
        assert_eq!(locale_chain("default"), ["default"]);
        assert_eq!(locale_chain("en"), ["en", "default"]);
    }

    #[test]
    fn locale_chain_keeps_case_and_matches_case_insensitively() {
        assert_eq!(locale_chain("FR-ca"), ["FR-ca", "FR", "default"]);
        assert_eq!(locale_chain("Default"), ["Default"]);
        assert_eq!(locale_chain("pt_BR"), ["pt_BR", "pt", "default"]);
    }

    #[test]
    fn locale_chain_edge_cases() {
        assert_eq!(locale_chain(""), ["default"]);
        assert_eq!(locale_chain("  de-AT "), ["de-AT", "de", "default"]);
        assert_eq!(
            locale_chain("en-x-pirate"),
            ["en-x-pirate", "en", "default"]
        );
        assert_eq!(locale_chain("fr--CA"), ["fr--CA", "fr", "default"]);
    }
}
