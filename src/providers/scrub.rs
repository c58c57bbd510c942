//! Cutting a call's stored provider credentials out of what an upstream sends back, whatever
//! form an echo takes: exact, in any letter case, base64 (standard and URL-safe, padded or not,
//! alone or inside a longer base64 string such as `Basic base64(user:key)`, at each of the three
//! byte alignments), percent-encoded, and JSON-escaped. Used on probe reasons (validation) and on
//! everything the relay passes on: whole answers, error answers and streams.
//!
//! A match becomes [`REPLACEMENT`], which holds no quote or backslash, so a replacement inside a
//! JSON string leaves the JSON valid; forms that contain characters JSON escapes (`/`, `"`, `\`)
//! are also searched in their escaped spelling, so a match never starts after a backslash that
//! escapes its first character, or ends between a backslash and what it escapes.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What a credential is replaced with.
pub const REPLACEMENT: &str = "***";

/// A form shorter than this is not searched, except the credential itself: an encoding of a
/// very short (legacy) credential would match ordinary text everywhere.
const MIN_FORM: usize = 8;

/// What `encodeURIComponent` leaves as it is: letters, digits and `-_.!~*'()`.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// What `application/x-www-form-urlencoded` leaves as it is: letters, digits and `*-._`.
const FORM_URLENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// The characters of base64(secret) that do not depend on the bytes around the secret, when
/// it starts at `align` (0, 1 or 2) bytes past a multiple of three in a longer string.
fn base64_core(engine: &impl Engine, secret: &[u8], align: usize) -> String {
    let mut shifted = vec![0u8; align];
    shifted.extend_from_slice(secret);
    let encoded = engine.encode(&shifted);
    let encoded = encoded.trim_end_matches('=');
    // The first characters mix in the bytes before the secret (none, 2 or 3 characters), the
    // last one the bytes after it unless the secret ends on a 3-byte group.
    let head = [0, 2, 3][align];
    let tail = usize::from(!shifted.len().is_multiple_of(3));
    encoded
        .get(head..encoded.len().saturating_sub(tail))
        .unwrap_or_default()
        .to_owned()
}

/// How JSON may spell `s` inside a string.
fn json_escaped(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('/', "\\/")
}

/// Every form of one credential, longest forms included.
fn forms(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    let mut out = vec![secret.to_owned()];
    out.push(utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string());
    out.push(utf8_percent_encode(secret, URI_COMPONENT).to_string());
    out.push(utf8_percent_encode(secret, FORM_URLENCODED).to_string());
    out.push(STANDARD.encode(bytes));
    out.push(STANDARD_NO_PAD.encode(bytes));
    out.push(URL_SAFE.encode(bytes));
    out.push(URL_SAFE_NO_PAD.encode(bytes));
    for align in 0..3 {
        out.push(base64_core(&STANDARD_NO_PAD, bytes, align));
        out.push(base64_core(&URL_SAFE_NO_PAD, bytes, align));
    }
    let escaped: Vec<String> = out.iter().map(|f| json_escaped(f)).collect();
    out.extend(escaped);
    out
}

/// The forms of a set of credentials, ready to be searched for. Clones share the forms (building
/// them is the costly part; the relay keeps one per set of credentials, api/opened.rs).
#[derive(Clone)]
pub struct Scrubber(pub(crate) std::sync::Arc<Forms>);

/// What a [`Scrubber`] searches for (shared by its clones).
pub struct Forms {
    /// Every form, ASCII-lowercased (matching ignores ASCII case).
    forms: Vec<Vec<u8>>,
    /// For each lowercased first byte, the forms starting with it, longest first.
    by_first: Vec<Vec<usize>>,
    /// The longest form's length (0 when there is nothing to scrub).
    longest: usize,
    /// Whether some form holds a line feed (never, for credentials as keyward accepts them).
    crosses_lines: bool,
}

impl std::fmt::Debug for Scrubber {
    /// The forms are the credentials: never shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scrubber({} forms)", self.0.forms.len())
    }
}

impl std::ops::Deref for Scrubber {
    type Target = Forms;
    fn deref(&self) -> &Forms {
        &self.0
    }
}

impl Scrubber {
    /// A scrubber for these credentials (empty ones are ignored).
    pub fn new<S: AsRef<str>>(secrets: &[S]) -> Self {
        let mut all: Vec<Vec<u8>> = Vec::new();
        for secret in secrets.iter().map(AsRef::as_ref).filter(|s| !s.is_empty()) {
            for (i, form) in forms(secret).into_iter().enumerate() {
                // The credential itself is always searched; its encodings only when long enough.
                if i == 0 || form.len() >= MIN_FORM {
                    all.push(form.to_ascii_lowercase().into_bytes());
                }
            }
        }
        all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        all.dedup();
        let mut by_first = vec![Vec::new(); 256];
        for (i, form) in all.iter().enumerate() {
            by_first[usize::from(form[0])].push(i);
        }
        Scrubber(std::sync::Arc::new(Forms {
            longest: all.first().map_or(0, Vec::len),
            crosses_lines: all.iter().any(|f| f.contains(&b'\n')),
            forms: all,
            by_first,
        }))
    }
}

impl Forms {
    /// Whether there is anything to scrub.
    pub fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// The longest form's length in bytes.
    pub fn longest(&self) -> usize {
        self.longest
    }

    /// The length of the longest form that starts `text`, if one does.
    fn match_at(&self, text: &[u8]) -> Option<usize> {
        self.by_first[usize::from(text[0].to_ascii_lowercase())]
            .iter()
            .map(|&i| &self.forms[i])
            .find(|f| text.len() >= f.len() && text[..f.len()].eq_ignore_ascii_case(f))
            .map(Vec::len)
    }

    /// Scrub `buf[..]` into `out`, looking for matches only at positions before `until` (a match
    /// found there may run past it); returns where scanning stopped (the first byte not yet
    /// written to `out`).
    fn scan(&self, buf: &[u8], until: usize, out: &mut Vec<u8>) -> usize {
        let (mut i, mut copied) = (0, 0);
        while i < until {
            match self.match_at(&buf[i..]) {
                Some(len) => {
                    out.extend_from_slice(&buf[copied..i]);
                    out.extend_from_slice(REPLACEMENT.as_bytes());
                    i += len;
                    copied = i;
                }
                None => i += 1,
            }
        }
        out.extend_from_slice(&buf[copied..i]);
        i
    }

    /// `text` with every form of every credential replaced.
    pub fn bytes(&self, text: &[u8]) -> Vec<u8> {
        if self.is_empty() {
            return text.to_vec();
        }
        let mut out = Vec::with_capacity(text.len());
        self.scan(text, text.len(), &mut out);
        out
    }

    /// [`Scrubber::bytes`] for text.
    pub fn text(&self, text: &str) -> String {
        if self.is_empty() {
            return text.to_owned();
        }
        // Forms are whole UTF-8 strings, so a match starts and ends on character boundaries.
        String::from_utf8_lossy(&self.bytes(text.as_bytes())).into_owned()
    }
}

impl Scrubber {
    /// A scrubber for a body that arrives in pieces.
    pub fn stream(self) -> StreamScrubber {
        StreamScrubber {
            scrubber: self,
            held: Vec::new(),
        }
    }
}

/// Scrubs a body arriving in pieces, with the same result as scrubbing it whole: it holds back
/// only the bytes a form could still be completing (at most the longest form minus one), and
/// none after a line feed, since no form holds one (a credential with control characters is
/// refused when saved): a server-sent event, which ends with a blank line, is never held back.
pub struct StreamScrubber {
    scrubber: Scrubber,
    held: Vec<u8>,
}

impl StreamScrubber {
    /// Scrub the next piece; returns what can be passed on now.
    pub fn push(&mut self, piece: &[u8]) -> Vec<u8> {
        let s = &self.scrubber;
        if s.is_empty() {
            return piece.to_vec();
        }
        self.held.extend_from_slice(piece);
        let buf = &self.held;
        // A match starting before `until` is decided by the bytes already here: either it has
        // `longest` bytes to look at, or it would have to cross a line feed.
        let mut until = buf.len().saturating_sub(s.longest - 1);
        if !s.crosses_lines {
            if let Some(nl) = buf.iter().rposition(|&b| b == b'\n') {
                until = until.max(nl + 1);
            }
        }
        let mut out = Vec::with_capacity(buf.len());
        let done = s.scan(buf, until, &mut out);
        self.held.drain(..done);
        out
    }

    /// The rest, scrubbed, once the body has ended.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.held);
        self.scrubber.bytes(&rest)
    }

    /// Bytes held back so far.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-echo/Secret+Key=with~odd.chars-0123456789";

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    /// Texts carrying the key in every form, each with what it must become.
    fn cases() -> Vec<(String, String)> {
        let basic = |prefix: &str| {
            let full = b64(&format!("{prefix}{KEY}"));
            let core = base64_core(&STANDARD_NO_PAD, KEY.as_bytes(), prefix.len() % 3);
            let at = full.find(&core).expect("the core is inside");
            // At alignment 0 the rest of the string is base64(key) itself, padding included.
            let rest = if prefix.len().is_multiple_of(3) {
                ""
            } else {
                &full[at + core.len()..]
            };
            (
                format!("Basic {full}"),
                format!("Basic {}***{rest}", &full[..at]),
            )
        };
        vec![
            (format!("key {KEY}."), "key ***.".into()),
            (
                format!("KEY {}", KEY.to_ascii_uppercase()),
                "KEY ***".into(),
            ),
            (
                format!("low {}", KEY.to_ascii_lowercase()),
                "low ***".into(),
            ),
            (format!("b64 {}!", b64(KEY)), "b64 ***!".into()),
            (
                format!("nopad {}!", STANDARD_NO_PAD.encode(KEY)),
                "nopad ***!".into(),
            ),
            (format!("url {}!", URL_SAFE.encode(KEY)), "url ***!".into()),
            (
                format!("urlnopad {}!", URL_SAFE_NO_PAD.encode(KEY)),
                "urlnopad ***!".into(),
            ),
            basic("ab:"),
            basic("abc:"),
            basic("user:"),
            (
                format!("pct {}&", utf8_percent_encode(KEY, NON_ALPHANUMERIC)),
                "pct ***&".into(),
            ),
            (
                format!(
                    "pct-lower {}&",
                    utf8_percent_encode(KEY, NON_ALPHANUMERIC)
                        .to_string()
                        .to_ascii_lowercase()
                ),
                "pct-lower ***&".into(),
            ),
            (
                format!("uri {}&", utf8_percent_encode(KEY, URI_COMPONENT)),
                "uri ***&".into(),
            ),
            (
                format!(r#"{{"k":"{}"}}"#, json_escaped(KEY)),
                r#"{"k":"***"}"#.into(),
            ),
            ("nothing to see".into(), "nothing to see".into()),
        ]
    }

    #[test]
    fn every_form_of_the_key_is_scrubbed_whole() {
        let s = Scrubber::new(&[KEY]);
        for (text, want) in cases() {
            assert_eq!(s.text(&text), want, "{text}");
        }
    }

    /// Whether the key decodes out of any piece of `text`, from any offset, in either alphabet.
    fn recoverable(text: &str) -> bool {
        use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
        let lenient = GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent);
        let engines = [
            GeneralPurpose::new(&base64::alphabet::STANDARD, lenient),
            GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient),
        ];
        text.split("***").any(|piece| {
            let piece = piece.trim_end_matches('=');
            (0..4.min(piece.len() + 1)).any(|off| {
                let mut p = &piece[off..];
                if p.len() % 4 == 1 {
                    p = &p[..p.len() - 1];
                }
                engines.iter().any(|e| {
                    e.decode(p)
                        .is_ok_and(|d| d.windows(KEY.len()).any(|w| w == KEY.as_bytes()))
                })
            })
        })
    }

    #[test]
    fn the_three_base64_alignments_are_found_inside_longer_strings() {
        assert!(
            recoverable(&STANDARD.encode(format!("user:{KEY}"))),
            "the check can fail"
        );
        let s = Scrubber::new(&[KEY]);
        for prefix in ["", "a", "ab", "abc", "abcd", "abcde", "x:", "user:"] {
            for suffix in ["", "z", "zz", "zzz"] {
                for engine in [&STANDARD, &URL_SAFE] {
                    let encoded = engine.encode(format!("{prefix}{KEY}{suffix}"));
                    let got = s.text(&encoded);
                    assert!(got.contains("***"), "{prefix}|{suffix}: {got}");
                    assert!(!recoverable(&got), "{prefix}|{suffix}: {got}");
                }
            }
        }
    }

    #[test]
    fn every_form_is_scrubbed_when_split_across_every_chunk_boundary() {
        let s = Scrubber::new(&[KEY]);
        for (text, want) in cases() {
            let bytes = text.as_bytes();
            for cut in 0..=bytes.len() {
                let mut st = s.clone().stream();
                let mut out = st.push(&bytes[..cut]);
                out.extend(st.push(&bytes[cut..]));
                out.extend(st.finish());
                assert_eq!(String::from_utf8(out).unwrap(), want, "{text} cut at {cut}");
            }
            for (a, b) in [(1, 2), (3, 7), (10, 11)] {
                if b >= bytes.len() {
                    continue;
                }
                let mut st = s.clone().stream();
                let mut out = st.push(&bytes[..a]);
                out.extend(st.push(&bytes[a..b]));
                out.extend(st.push(&bytes[b..]));
                out.extend(st.finish());
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    want,
                    "{text} cut at {a},{b}"
                );
            }
            let mut st = s.clone().stream();
            let mut out: Vec<u8> = bytes.iter().flat_map(|b| st.push(&[*b])).collect();
            out.extend(st.finish());
            assert_eq!(String::from_utf8(out).unwrap(), want, "{text} byte by byte");
        }
    }

    #[test]
    fn a_stream_holds_back_less_than_the_longest_form_and_nothing_after_a_line_feed() {
        let s = Scrubber::new(&[KEY]);
        let longest = s.longest();
        let mut st = s.stream();
        let out = st.push("x".repeat(1000).as_bytes());
        assert_eq!(out.len() + st.held(), 1000);
        assert_eq!(st.held(), longest - 1);
        // A whole server-sent event is passed on at once.
        let event = format!("data: {{\"content\":\"{KEY}\"}}\n\n");
        let mut st = Scrubber::new(&[KEY]).stream();
        assert_eq!(
            st.push(event.as_bytes()),
            b"data: {\"content\":\"***\"}\n\n"
        );
        assert_eq!(st.held(), 0);
        assert!(st.finish().is_empty());
    }

    #[test]
    fn json_stays_valid_where_a_replacement_lands() {
        let s = Scrubber::new(&["/starts-with-slash-0123", KEY]);
        let body = serde_json::json!({
            "a": format!("x{KEY}y"),
            "b": "/starts-with-slash-0123",
            "c": b64(KEY),
        });
        // Both serde's spelling and one that escapes every slash.
        for text in [body.to_string(), body.to_string().replace('/', "\\/")] {
            let out = s.text(&text);
            let v: serde_json::Value = serde_json::from_str(&out).expect(&out);
            assert_eq!(v["a"], "x***y", "{out}");
            assert_eq!(v["b"], "***", "{out}");
            assert_eq!(v["c"], "***", "{out}");
        }
    }

    #[test]
    fn short_credentials_are_scrubbed_too_but_their_encodings_only_when_long_enough() {
        let s = Scrubber::new(&["abc"]);
        assert_eq!(s.text("xabcx ABC"), "x***x ***");
        // base64("abc") is "YWJj": four characters would match ordinary text, so it is left.
        assert_eq!(s.text("YWJj"), "YWJj");
        assert!(Scrubber::new(&[""]).is_empty());
        assert_eq!(Scrubber::new(&[""]).text("abc"), "abc");
    }

    #[test]
    fn a_scrubber_never_shows_its_forms() {
        assert!(!format!("{:?}", Scrubber::new(&[KEY])).contains("sk-"));
    }
}
