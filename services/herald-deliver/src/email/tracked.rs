//! Open and click tracking in the HTML part of an email whose category opted in
//! (`track_engagement`, with `[tracking]` set): every `http(s)` link of an `<a>` or `<area>`
//! goes through a signed redirect link served by `herald api`, and an open pixel is added at
//! the end of the body. The plain-text part keeps the original links.
//!
//! Links are found by a small HTML tokenizer rather than a pattern: it follows tags and their
//! quoted and unquoted attribute values, and skips comments, declarations and the raw text of
//! `<script>`, `<style>`, `<title>` and `<textarea>`, so an `href=` in text, a comment or
//! another attribute's value is never touched. Left alone: `mailto:`, `tel:`, fragments and
//! every other non-http link, the message's unsubscribe links (RFC 8058), links already
//! pointing at `herald api`'s tracking routes, and any link marked `data-herald-untracked`.

use herald_contracts::Dispatch;
use herald_contracts::tracking::{CLICK_PATH, OPEN_PATH, TrackingLinks, is_http_url};
use herald_contracts::unsubscribe::{UNSUBSCRIBE_PATH, UnsubscribeLinks};

/// An attribute that keeps a link as it is (e.g. a link whose target must not see a redirect).
pub const UNTRACKED_ATTRIBUTE: &str = "data-herald-untracked";

/// Rewrites the HTML of opted-in dispatches.
#[derive(Debug, Clone)]
pub struct EngagementTracking {
    links: TrackingLinks,
    /// URL prefixes never rewritten: the signed unsubscribe route and the tracking routes.
    keep_prefixes: Vec<String>,
}

impl EngagementTracking {
    pub fn new(links: &TrackingLinks, unsubscribe: Option<&UnsubscribeLinks>) -> Self {
        let mut keep_prefixes = vec![
            format!("{}{OPEN_PATH}/", links.base_url()),
            format!("{}{CLICK_PATH}/", links.base_url()),
        ];
        if let Some(unsubscribe) = unsubscribe {
            keep_prefixes.push(format!("{}{UNSUBSCRIBE_PATH}/", unsubscribe.base_url()));
        }
        Self {
            links: links.clone(),
            keep_prefixes,
        }
    }

    /// `html` with its links rewritten and the pixel added. `unsubscribe` are the URLs of the
    /// message's `List-Unsubscribe` header, which stay as they are when the body repeats them.
    pub fn html(&self, dispatch: &Dispatch, html: &str, unsubscribe: &[String]) -> String {
        let rewritten = rewrite_links(html, |url| {
            let kept = !is_http_url(url)
                || unsubscribe.iter().any(|u| u == url)
                || self.keep_prefixes.iter().any(|p| url.starts_with(p));
            (!kept).then(|| self.links.click_url(dispatch, url))
        });
        with_pixel(rewritten, &self.links.open_url(dispatch))
    }
}

/// The URLs of a `List-Unsubscribe` value (`<https://...>, <mailto:...>`).
pub fn header_urls(value: &str) -> Vec<String> {
    value
        .split('<')
        .skip(1)
        .filter_map(|part| part.split_once('>').map(|(url, _)| url.trim().to_owned()))
        .collect()
}

/// HTML after rewriting: the text, and where its last `</body` end tag starts.
#[derive(Debug, PartialEq, Eq)]
pub struct Rewritten {
    pub html: String,
    pub body_end: Option<usize>,
}

/// Elements whose content is text up to their end tag, never markup.
const RAW_TEXT: [&str; 4] = ["script", "style", "title", "textarea"];

/// Calls `rewrite` with the decoded URL of each `<a href>` and `<area href>` (the first
/// `href` of a tag, as browsers read it) and puts the URL it returns in its place,
/// double-quoted and escaped. Everything else is copied byte for byte.
pub fn rewrite_links(html: &str, mut rewrite: impl FnMut(&str) -> Option<String>) -> Rewritten {
    let b = html.as_bytes();
    let mut out = String::with_capacity(html.len() + 512);
    let mut copied = 0;
    let mut body_end = None;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        let rest = &b[i..];
        if rest.starts_with(b"<!--") {
            i = find(b, i + 4, b"-->").map_or(b.len(), |at| at + 3);
        } else if rest.starts_with(b"<!") || rest.starts_with(b"<?") {
            i = find(b, i + 2, b">").map_or(b.len(), |at| at + 1);
        } else if rest.starts_with(b"</") && rest.get(2).is_some_and(u8::is_ascii_alphabetic) {
            let (name, _) = tag_name(b, i + 2);
            if html[name].eq_ignore_ascii_case("body") {
                // Nothing before `i` is rewritten any more, so this is its final position.
                body_end = Some(out.len() + (i - copied));
            }
            i = find(b, i + 2, b">").map_or(b.len(), |at| at + 1);
        } else if rest.get(1).is_some_and(u8::is_ascii_alphabetic) {
            let tag = start_tag(b, i + 1);
            let name = &html[tag.name.clone()];
            if (name.eq_ignore_ascii_case("a") || name.eq_ignore_ascii_case("area"))
                && tag.closed
                && !tag.untracked
                && let Some(href) = tag.href
                && let Some(url) = rewrite(decode_entities(html[href.value].trim()).as_str())
            {
                out.push_str(&html[copied..href.span.start]);
                out.push('"');
                out.push_str(&escape_attribute(&url));
                out.push('"');
                copied = href.span.end;
            }
            i = tag.end;
            if RAW_TEXT.iter().any(|raw| name.eq_ignore_ascii_case(raw)) {
                i = raw_text_end(b, i, name);
            }
        } else {
            // A `<` that starts no tag is text.
            i += 1;
        }
    }
    out.push_str(&html[copied..]);
    Rewritten {
        html: out,
        body_end,
    }
}

/// The rewritten HTML with the open pixel before its last `</body>`, or at its end.
pub fn with_pixel(rewritten: Rewritten, url: &str) -> String {
    let pixel = format!(
        "<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" \
         style=\"display:block;width:1px;height:1px;border:0\">",
        escape_attribute(url)
    );
    let mut html = rewritten.html;
    match rewritten.body_end {
        Some(at) => html.insert_str(at, &pixel),
        None => html.push_str(&pixel),
    }
    html
}

/// An `href` attribute: the byte range of its value (inside any quotes) and of the whole
/// value with its quotes (what a rewrite replaces).
#[derive(Debug, Clone)]
struct Href {
    value: std::ops::Range<usize>,
    span: std::ops::Range<usize>,
}

#[derive(Debug)]
struct StartTag {
    name: std::ops::Range<usize>,
    href: Option<Href>,
    untracked: bool,
    /// The tag ends with `>`; a browser drops one cut off by the end of the input.
    closed: bool,
    /// Just past the tag's `>` (or the end of the input).
    end: usize,
}

fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

/// The tag name starting at `at`: up to a space, `/` or `>`.
fn tag_name(b: &[u8], at: usize) -> (std::ops::Range<usize>, usize) {
    let mut j = at;
    while j < b.len() && !is_space(b[j]) && b[j] != b'/' && b[j] != b'>' {
        j += 1;
    }
    (at..j, j)
}

/// Reads a start tag whose name begins at `at`, following the HTML tokenizer's attribute
/// states.
fn start_tag(b: &[u8], at: usize) -> StartTag {
    let (name, mut j) = tag_name(b, at);
    let mut href: Option<Href> = None;
    let mut seen_href = false;
    let mut untracked = false;
    let mut closed = false;
    loop {
        while j < b.len() && (is_space(b[j]) || b[j] == b'/') {
            j += 1;
        }
        if j >= b.len() {
            break;
        }
        if b[j] == b'>' {
            j += 1;
            closed = true;
            break;
        }
        let attr_start = j;
        // A leading `=` belongs to the name.
        j += 1;
        while j < b.len() && !is_space(b[j]) && !matches!(b[j], b'/' | b'>' | b'=') {
            j += 1;
        }
        let attr = &b[attr_start..j];
        while j < b.len() && is_space(b[j]) {
            j += 1;
        }
        let mut value = None;
        if j < b.len() && b[j] == b'=' {
            j += 1;
            while j < b.len() && is_space(b[j]) {
                j += 1;
            }
            if j < b.len() && (b[j] == b'"' || b[j] == b'\'') {
                let quote = b[j];
                let start = j + 1;
                match b[start..].iter().position(|&c| c == quote) {
                    Some(len) => {
                        value = Some(Href {
                            value: start..start + len,
                            span: j..start + len + 1,
                        });
                        j = start + len + 1;
                    }
                    None => j = b.len(),
                }
            } else {
                let start = j;
                while j < b.len() && !is_space(b[j]) && b[j] != b'>' {
                    j += 1;
                }
                value = Some(Href {
                    value: start..j,
                    span: start..j,
                });
            }
        }
        if attr.eq_ignore_ascii_case(b"href") {
            // Only the first `href` counts, as in a browser.
            if !seen_href {
                href = value;
            }
            seen_href = true;
        } else if attr.eq_ignore_ascii_case(UNTRACKED_ATTRIBUTE.as_bytes()) {
            untracked = true;
        }
    }
    StartTag {
        name,
        href,
        untracked,
        closed,
        end: j,
    }
}

/// Where the raw text of element `name` ends: at its end tag (`</name` followed by a space,
/// `/` or `>`), matched without regard to case.
fn raw_text_end(b: &[u8], from: usize, name: &str) -> usize {
    let mut j = from;
    while let Some(at) = find(b, j, b"</") {
        let candidate = at + 2;
        let end = candidate + name.len();
        if b.get(candidate..end)
            .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
            && b.get(end)
                .is_none_or(|&c| is_space(c) || c == b'/' || c == b'>')
        {
            return at;
        }
        j = candidate;
    }
    b.len()
}

fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|at| from + at)
}

/// Character references in an attribute value: the five XML ones and numeric ones. Any
/// other `&` is kept as written (HTML leaves an unknown reference as text).
fn decode_entities(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').and_then(|end| {
            let name = &rest[1..end];
            let c = match name {
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "lt" => Some('<'),
                "gt" => Some('>'),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .map(|hex| u32::from_str_radix(hex, 16))
                    .or_else(|| name.strip_prefix('#').map(str::parse::<u32>))
                    .and_then(Result::ok)
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A value for a double-quoted attribute.
fn escape_attribute(value: &str) -> String {
    value.replace('&', "&amp;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Rewrites every link to `T(<url>)` and reports the URLs seen.
    fn tagged(html: &str) -> (String, Vec<String>) {
        let mut seen = Vec::new();
        let out = rewrite_links(html, |url| {
            seen.push(url.to_owned());
            Some(format!("T({url})"))
        });
        (out.html, seen)
    }

    #[test]
    fn quoted_and_unquoted_hrefs_are_rewritten_and_decoded() {
        let (html, seen) = tagged(
            "<p><a href=\"https://a.example/x?b=1&amp;c=2\">A</a> \
             <A HREF='http://b.example/'>B</A> <a class=x href=https://c.example/y>C</a> \
             <area shape=rect href = \"https://d.example/&#x26;&#38;\"></p>",
        );
        assert_eq!(
            seen,
            [
                "https://a.example/x?b=1&c=2",
                "http://b.example/",
                "https://c.example/y",
                "https://d.example/&&",
            ]
        );
        assert_eq!(
            html,
            "<p><a href=\"T(https://a.example/x?b=1&amp;c=2)\">A</a> \
             <A HREF=\"T(http://b.example/)\">B</A> <a class=x href=\"T(https://c.example/y)\">C</a> \
             <area shape=rect href = \"T(https://d.example/&amp;&amp;)\"></p>"
        );
    }

    #[test]
    fn href_outside_a_link_tag_or_inside_text_comments_and_raw_text_is_left_alone() {
        let input = "<!-- <a href=\"https://comment.example\"> -->\
             <link href=\"https://style.example/s.css\" rel=stylesheet>\
             <base href=\"https://base.example/\">\
             <style>a[href=\"x\"] { color: red } /* <a href=\"https://css.example\"> */</style>\
             <script>var s = '<a href=\"https://js.example\">';</SCRIPT >\
             <title><a href=\"https://title.example\"></title>\
             <p>write href=\"https://text.example\" or a < b > c</p>\
             <img alt='<a href=\"https://alt.example\">' src=\"https://img.example/i.png\">\
             <a title=\"href=https://title-attr.example\" href=\"https://real.example\">x</a>";
        let (html, seen) = tagged(input);
        assert_eq!(seen, ["https://real.example"]);
        assert_eq!(
            html,
            input.replace("\"https://real.example\"", "\"T(https://real.example)\"")
        );
    }

    #[test]
    fn only_the_first_href_counts_and_broken_tags_are_not_touched() {
        let (html, seen) = tagged("<a href=\"https://1.example\" href=\"https://2.example\">");
        assert_eq!(seen, ["https://1.example"]);
        assert_eq!(
            html,
            "<a href=\"T(https://1.example)\" href=\"https://2.example\">"
        );
        // A quote that never closes swallows the rest: nothing to rewrite.
        let broken = "<a href=\"https://open.example>text";
        assert_eq!(tagged(broken), (broken.to_owned(), vec![]));
        // An href without a value, an empty one, one in a tag cut off by the end.
        assert_eq!(
            tagged("<a href>x</a><a href=\"\">y</a><a href=\"https://cut.example\"").1,
            [""]
        );
        // Multi-byte text around links stays intact.
        let (html, _) = tagged("<p>Zoë € <a href=\"https://ü.example/é\">ß</a> 日本</p>");
        assert_eq!(
            html,
            "<p>Zoë € <a href=\"T(https://ü.example/é)\">ß</a> 日本</p>"
        );
    }

    #[test]
    fn unknown_references_and_quotes_survive_the_round_trip() {
        assert_eq!(
            decode_entities("a&b&copy;&#65;&#xZZ;&lt;&"),
            "a&b&copy;A&#xZZ;<&"
        );
        assert_eq!(escape_attribute("a&\"b"), "a&amp;&quot;b");
    }

    #[test]
    fn the_pixel_goes_before_the_last_body_end_or_at_the_end() {
        let rewritten = rewrite_links(
            "<html><body><!-- </body> --><a href=\"https://x.example\">x</a></BODY></html>",
            |_| Some("https://t.example/c".into()),
        );
        assert_eq!(
            with_pixel(rewritten, "https://t.example/o?a&b"),
            "<html><body><!-- </body> --><a href=\"https://t.example/c\">x</a>\
             <img src=\"https://t.example/o?a&amp;b\" width=\"1\" height=\"1\" alt=\"\" \
             style=\"display:block;width:1px;height:1px;border:0\"></BODY></html>"
        );
        let rewritten = rewrite_links("<p>hi</p>", |_| None);
        assert!(with_pixel(rewritten, "u").starts_with("<p>hi</p><img src=\"u\""));
    }

    #[test]
    fn a_tracked_message_keeps_mailto_unsubscribe_and_marked_links() {
        use herald_contracts::secret::Secret;
        use herald_contracts::tracking::{EngagementKind, TrackingConfig};
        use herald_contracts::unsubscribe::UnsubscribeConfig;
        let links = TrackingConfig {
            base_url: Some("https://t.example".into()),
            secret: Some(Secret::new("t".repeat(32))),
            ..TrackingConfig::default()
        }
        .links()
        .unwrap()
        .unwrap();
        let unsubscribe = UnsubscribeConfig {
            base_url: Some("https://u.example".into()),
            secret: Some(Secret::new("u".repeat(32))),
            ..UnsubscribeConfig::default()
        }
        .links()
        .unwrap()
        .unwrap();
        let tracking = EngagementTracking::new(&links, Some(&unsubscribe));
        let dispatch = herald_test_support::dispatch::sample_dispatch(
            herald_contracts::Channel::Email,
            "a@b.example",
        );
        let html = "<body><a href=\"mailto:help@acme.example\">m</a>\
             <a href=\"tel:+14155550100\">t</a><a href=\"#top\">f</a>\
             <a href=\"https://u.example/v1/unsubscribe/abc.def\">u</a>\
             <a href=\"https://prefs.acme.example/u\">p</a>\
             <a data-herald-untracked href=\"https://keep.example\">k</a>\
             <a href=\"https://shop.example/?a=1&amp;b=2\">s</a></body>";
        let out = tracking.html(&dispatch, html, &["https://prefs.acme.example/u".into()]);
        let click_prefix = "<a href=\"https://t.example/v1/t/click/";
        assert_eq!(out.matches(click_prefix).count(), 1, "{out}");
        for kept in [
            "mailto:help@acme.example",
            "tel:+14155550100",
            "\"#top\"",
            "https://u.example/v1/unsubscribe/abc.def",
            "https://prefs.acme.example/u",
            "https://keep.example",
        ] {
            assert!(out.contains(kept), "{kept} in {out}");
        }
        let token = out
            .split(click_prefix)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap();
        let click = links.verify(EngagementKind::Click, token).unwrap();
        assert_eq!(
            click.target.as_deref(),
            Some("https://shop.example/?a=1&b=2")
        );
        assert_eq!(click.dispatch_id, dispatch.dispatch_id);
        let pixel = out
            .split("<img src=\"https://t.example/v1/t/open/")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap();
        links.verify(EngagementKind::Open, pixel).unwrap();
        assert!(out.ends_with("\"></body>"), "{out}");
    }

    #[test]
    fn list_unsubscribe_urls_are_read_from_the_header() {
        assert_eq!(
            header_urls("<https://u.example/x>, <mailto:u@acme.example?subject=stop>"),
            ["https://u.example/x", "mailto:u@acme.example?subject=stop"]
        );
        assert!(header_urls("").is_empty());
    }
}
