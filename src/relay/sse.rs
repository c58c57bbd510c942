//! Server-sent events, read incrementally: bytes in, complete events out, nothing held back
//! beyond the event being assembled.

/// One event: its `event:` name (if any) and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
    /// The event exactly as received, for passing it on unchanged.
    pub raw: Vec<u8>,
}

/// Splits a byte stream into events at blank lines (`\n\n` or `\r\n\r\n`).
#[derive(Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

/// Where the first event boundary in `buf` ends, if there is one.
fn boundary(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' && buf[i + 1] == b'\n' {
            return Some(i + 2);
        }
        if buf[i] == b'\n' && buf[i + 1] == b'\r' && buf.get(i + 2) == Some(&b'\n') {
            return Some(i + 3);
        }
        i += 1;
    }
    None
}

fn parse(raw: Vec<u8>) -> Event {
    let text = String::from_utf8_lossy(&raw);
    let mut name = None;
    let mut data: Vec<&str> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(v) = line.strip_prefix("event:") {
            name = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    let data = data.join("\n");
    Event { name, data, raw }
}

impl Decoder {
    /// Feed bytes; get every event they complete.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = boundary(&self.buf) {
            let raw: Vec<u8> = self.buf.drain(..end).collect();
            out.push(parse(raw));
        }
        out
    }

    /// Whatever is left when the stream ends (an event without its closing blank line).
    pub fn finish(&mut self) -> Option<Event> {
        let raw = std::mem::take(&mut self.buf);
        (!raw.iter().all(u8::is_ascii_whitespace)).then(|| parse(raw))
    }
}

/// Encode one `data:` event.
pub fn data(payload: &str) -> Vec<u8> {
    format!("data: {payload}\n\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_are_reassembled() {
        let mut d = Decoder::default();
        assert!(d.push(b"data: {\"a\"").is_empty());
        let evs = d.push(b":1}\n\nevent: ping\ndata: x\n\ndata: [DO");
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[0].data, "{\"a\":1}");
        assert_eq!(evs[0].raw, b"data: {\"a\":1}\n\n");
        assert_eq!(evs[1].name.as_deref(), Some("ping"));
        let evs = d.push(b"NE]\r\n\r\n");
        assert_eq!(evs[0].data, "[DONE]");
        assert_eq!(d.finish(), None);
    }
}
