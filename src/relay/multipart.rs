//! `multipart/form-data` (RFC 7578) for `POST /v1/audio/transcriptions`: the client's form read
//! into parts, and the form sent upstream written back out. Linear in the body's size (a
//! delimiter starts with CR, which no boundary character is, so a scan never re-reads a byte more
//! than once) and bounded in parts and header bytes. Written here rather than taken from `multer`,
//! which would bring `http`, `encoding_rs` and its async byte types into the wasm bundle for what
//! is a buffered body already in memory.

/// Most parts a form may have (OpenAI's transcription form has fewer than ten fields).
pub const MAX_PARTS: usize = 32;
/// Most bytes of one part's headers.
const MAX_PART_HEADERS: usize = 8 * 1024;
/// A boundary is 1 to 70 characters (RFC 2046 section 5.1.1).
const MAX_BOUNDARY: usize = 70;

/// One field of a form: a text value, or a file with its name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// A parsed form, its parts in the order they came.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    pub parts: Vec<Part>,
}

/// The boundary of a `multipart/form-data` content type; `Err` says what is wrong, for a 400.
pub fn boundary(content_type: &str) -> Result<String, String> {
    let mut pieces = content_type.split(';');
    let kind = pieces.next().unwrap_or_default().trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return Err("Request body must be multipart/form-data".into());
    }
    let b = pieces
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        .ok_or("The multipart/form-data Content-Type names no boundary")?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || "'()+_,-./:=? ".contains(c);
    if b.is_empty() || b.len() > MAX_BOUNDARY || !b.chars().all(allowed) || b.ends_with(' ') {
        return Err("The multipart/form-data boundary is not a valid boundary".into());
    }
    Ok(b)
}

/// Where `needle` first occurs in `hay` from `from` on.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| hay[i..].starts_with(needle))
}

/// A header parameter's value (`name="file"`), quotes and their escapes undone.
fn param(header: &str, key: &str) -> Option<String> {
    let mut rest = header;
    while let Some(i) = rest.find(';') {
        rest = rest[i + 1..].trim_start();
        let Some((k, v)) = rest.split_once('=') else {
            break;
        };
        if k.trim().eq_ignore_ascii_case(key) {
            let v = v.trim_start();
            return Some(match v.strip_prefix('"') {
                Some(q) => {
                    let mut out = String::new();
                    let mut chars = q.chars();
                    while let Some(c) = chars.next() {
                        match c {
                            '"' => break,
                            '\\' => out.extend(chars.next()),
                            c => out.push(c),
                        }
                    }
                    out
                }
                None => v.split(';').next().unwrap_or_default().trim().to_owned(),
            });
        }
    }
    None
}

/// Parse a form; `Err` names what is malformed, for a 400.
pub fn parse(body: &[u8], boundary: &str) -> Result<Form, String> {
    let dash = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    let start = if body.starts_with(dash.as_bytes()) {
        0
    } else {
        find(body, delimiter.as_bytes(), 0).ok_or("The form has no part with its boundary")? + 2
    };
    let mut at = start + dash.len();
    let mut form = Form::default();
    loop {
        let rest = &body[at.min(body.len())..];
        if rest.starts_with(b"--") {
            return Ok(form);
        }
        // Transport padding (spaces and tabs) may follow a delimiter.
        let pad = rest
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        if !rest[pad..].starts_with(b"\r\n") {
            return Err("The form is malformed: a boundary is not followed by a line break".into());
        }
        at += pad + 2;
        if form.parts.len() == MAX_PARTS {
            return Err(format!("The form has more than {MAX_PARTS} parts"));
        }
        let end = find(body, b"\r\n\r\n", at)
            .filter(|e| e - at <= MAX_PART_HEADERS)
            .ok_or("The form is malformed: a part's headers do not end (or pass 8 KiB)")?;
        let headers = std::str::from_utf8(&body[at..end])
            .map_err(|_| "The form is malformed: a part's headers are not UTF-8")?;
        let (mut disposition, mut content_type) = (None, None);
        for line in headers.split("\r\n") {
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => disposition = Some(value.trim().to_owned()),
                "content-type" => content_type = Some(value.trim().to_owned()),
                _ => {}
            }
        }
        let disposition = disposition
            .filter(|d| {
                d.split(';')
                    .next()
                    .is_some_and(|k| k.trim().eq_ignore_ascii_case("form-data"))
            })
            .ok_or("The form is malformed: a part has no Content-Disposition: form-data")?;
        let name = param(&disposition, "name")
            .filter(|n| !n.is_empty())
            .ok_or("The form is malformed: a part has no name")?;
        let data_start = end + 4;
        let data_end = find(body, delimiter.as_bytes(), data_start)
            .ok_or("The form is malformed: its last part is not closed by the boundary")?;
        form.parts.push(Part {
            filename: param(&disposition, "filename"),
            name,
            content_type,
            data: body[data_start..data_end].to_vec(),
        });
        at = data_end + delimiter.len();
    }
}

fn quoted(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace(['\r', '\n'], " ")
}

impl Form {
    /// The first part of this name.
    pub fn part(&self, name: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.name == name)
    }

    /// A text field's value (`None` when absent or not UTF-8).
    pub fn text(&self, name: &str) -> Option<&str> {
        self.part(name)
            .and_then(|p| std::str::from_utf8(&p.data).ok())
    }

    /// Replace every part of this name by one text part, where the first was (or at the end).
    pub fn set_text(&mut self, name: &str, value: &str) {
        let part = Part {
            name: name.to_owned(),
            filename: None,
            content_type: None,
            data: value.as_bytes().to_vec(),
        };
        match self.parts.iter().position(|p| p.name == name) {
            Some(i) => {
                self.parts[i] = part;
                let mut seen = false;
                self.parts.retain(|p| {
                    let keep = p.name != name || !seen;
                    seen |= p.name == name;
                    keep
                });
            }
            None => self.parts.push(part),
        }
    }

    /// A boundary that occurs in no part, and the form written with it.
    pub fn encode(&self) -> (String, Vec<u8>) {
        let mut n = 0u32;
        let boundary = loop {
            let b = format!("keyward-form-boundary-{n:08x}");
            let clash = self
                .parts
                .iter()
                .any(|p| find(&p.data, b.as_bytes(), 0).is_some());
            if !clash {
                break b;
            }
            n += 1;
        };
        let mut out = Vec::new();
        for p in &self.parts {
            out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            let mut disposition = format!(
                "Content-Disposition: form-data; name=\"{}\"",
                quoted(&p.name)
            );
            if let Some(f) = &p.filename {
                disposition.push_str(&format!("; filename=\"{}\"", quoted(f)));
            }
            out.extend_from_slice(disposition.as_bytes());
            out.extend_from_slice(b"\r\n");
            if let Some(ct) = &p.content_type {
                out.extend_from_slice(format!("Content-Type: {}\r\n", quoted(ct)).as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&p.data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        (boundary, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        b"--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1@OpenAI\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a \\\"b\\\".mp3\"\r\n\
Content-Type: audio/mpeg\r\n\r\nID3\x00\x01\r\n--Xy\xff\r\n--XyZ--\r\n"
            .to_vec()
    }

    #[test]
    fn a_form_is_read_into_its_fields_and_files_binary_data_intact() {
        let form = parse(&sample(), "XyZ").unwrap();
        assert_eq!(form.text("model"), Some("whisper-1@OpenAI"));
        let file = form.part("file").unwrap();
        assert_eq!(file.filename.as_deref(), Some("a \"b\".mp3"));
        assert_eq!(file.content_type.as_deref(), Some("audio/mpeg"));
        assert_eq!(file.data, b"ID3\x00\x01\r\n--Xy\xff");
    }

    #[test]
    fn a_form_written_out_reads_back_the_same_with_the_changed_field() {
        let mut form = parse(&sample(), "XyZ").unwrap();
        form.set_text("model", "whisper-1");
        let (b, bytes) = form.encode();
        let back = parse(&bytes, &b).unwrap();
        assert_eq!(back.text("model"), Some("whisper-1"));
        assert_eq!(back.part("file"), form.part("file"));
        assert_eq!(back.parts.len(), 2);
    }

    #[test]
    fn the_written_boundary_never_occurs_in_the_data() {
        let mut form = Form::default();
        form.set_text("x", "keyward-form-boundary-00000000 and more");
        let (b, _) = form.encode();
        assert_eq!(b, "keyward-form-boundary-00000001");
    }

    #[test]
    fn malformed_forms_and_content_types_are_refused_with_a_reason() {
        assert!(boundary("application/json").is_err());
        assert!(boundary("multipart/form-data").is_err());
        assert_eq!(
            boundary("multipart/form-data; boundary=\"a b\"").unwrap(),
            "a b"
        );
        for (body, why) in [
            (&b"nothing"[..], "no part"),
            (
                b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nopen",
                "not closed",
            ),
            (
                b"--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--",
                "Content-Disposition",
            ),
            (
                b"--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZ--",
                "no name",
            ),
            (b"--XyZjunk", "line break"),
        ] {
            let e = parse(body, "XyZ").unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let many: String = (0..=MAX_PARTS)
            .map(|i| format!("--B\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\nv\r\n"))
            .collect::<String>()
            + "--B--";
        assert!(parse(many.as_bytes(), "B")
            .unwrap_err()
            .contains("more than"));
    }

    #[test]
    fn a_body_of_near_delimiters_is_scanned_in_linear_time() {
        let mut body = b"--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n".to_vec();
        body.extend(b"\r\n-".repeat(2_000_000));
        body.extend(b"\r\n--B--");
        let t = std::time::Instant::now();
        let form = parse(&body, "B").unwrap();
        assert_eq!(form.part("file").unwrap().data.len(), 6_000_000);
        assert!(t.elapsed().as_secs() < 5, "{:?}", t.elapsed());
    }
}
