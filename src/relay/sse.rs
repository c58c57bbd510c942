//! Server-sent events, read incrementally: bytes in, complete events out, in time linear in the
//! bytes received (each byte is looked at a bounded number of times, whatever the chunking), with
//! one event and the whole stream bounded in size.

/// The longest event passed on. OpenAI, Azure and Anthropic stream deltas of a few tokens, a few
/// hundred bytes per event; the largest legitimate events (a whole tool-call argument, a final
/// message some compatible servers send in one piece) stay far below the relay's 1 MiB request
/// limit, which is taken as the bound. An upstream that sends more without a blank line is not
/// speaking SSE; holding its bytes would let it grow the isolate's memory at will.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// The most a streamed answer may carry in all. The longest completions models offer (about 128k
/// output tokens) stream as about as many events of 200 to 500 bytes: 25 to 60 MiB. 64 MiB leaves
/// room for that and bounds what one stream can cost the isolate (decoding, scrubbing, usage
/// counting are all linear in it).
pub const MAX_STREAM_BYTES: usize = 64 * 1024 * 1024;

/// One event: its `event:` name (if any) and its `data:` lines joined by `\n`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
    /// The event exactly as received, for passing it on unchanged.
    pub raw: Vec<u8>,
}

/// Why a stream was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// An event grew past the event limit (the number) without a boundary.
    Event(usize),
    /// The stream passed the stream limit (the number).
    Stream(usize),
}

/// Splits a byte stream into events at blank lines (`\n\n` or `\n\r\n`).
///
/// Linear: `scanned` remembers where the search for a boundary stopped, so bytes are never
/// searched again when more arrive (at most the two bytes of a boundary's possible beginning are
/// looked at twice); complete events are cut out with one copy each, and the buffer is compacted
/// once per chunk, moving only the unfinished event's bytes, which came in that chunk.
pub struct Decoder {
    buf: Vec<u8>,
    /// Where the next event begins in `buf`.
    start: usize,
    /// Where the search for the next boundary resumes in `buf`.
    scanned: usize,
    received: usize,
    max_event: usize,
    max_stream: usize,
    overflow: Option<Overflow>,
    /// Bytes examined in the search for boundaries, for tests that pin the linear bound.
    work: u64,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::with_limits(MAX_EVENT_BYTES, MAX_STREAM_BYTES)
    }
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
    /// A decoder with its own limits (tests use small ones).
    pub fn with_limits(max_event: usize, max_stream: usize) -> Self {
        Decoder {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            received: 0,
            max_event,
            max_stream,
            overflow: None,
            work: 0,
        }
    }

    /// Feed bytes; get every event they complete. Once a limit is passed, [`Decoder::overflow`]
    /// says which, and nothing more is taken.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        if self.overflow.is_some() {
            return Vec::new();
        }
        let room = self.max_stream - self.received;
        let take = chunk.len().min(room);
        self.received += take;
        self.buf.extend_from_slice(&chunk[..take]);
        let mut out = Vec::new();
        while let Some(end) = self.next_boundary() {
            if end - self.start > self.max_event {
                self.overflow = Some(Overflow::Event(self.max_event));
                break;
            }
            out.push(parse(self.buf[self.start..end].to_vec()));
            self.start = end;
        }
        if self.overflow.is_none() && self.buf.len() - self.start > self.max_event {
            self.overflow = Some(Overflow::Event(self.max_event));
        }
        if self.overflow.is_none() && take < chunk.len() {
            self.overflow = Some(Overflow::Stream(self.max_stream));
        }
        if self.overflow.is_some() {
            self.buf = Vec::new();
            self.start = 0;
            self.scanned = 0;
        } else if self.start > 0 {
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        out
    }

    /// Where the boundary after `start` ends, searching from `scanned` on.
    fn next_boundary(&mut self) -> Option<usize> {
        let buf = &self.buf;
        let mut i = self.scanned.max(self.start);
        while i < buf.len() {
            self.work += 1;
            if buf[i] == b'\n' {
                match (buf.get(i + 1), buf.get(i + 2)) {
                    (Some(b'\n'), _) => {
                        self.scanned = i + 2;
                        return Some(i + 2);
                    }
                    (Some(b'\r'), Some(b'\n')) => {
                        self.scanned = i + 3;
                        return Some(i + 3);
                    }
                    // A boundary may begin here: look again when more bytes arrive.
                    (None, _) | (Some(b'\r'), None) => {
                        self.scanned = i;
                        return None;
                    }
                    _ => {}
                }
            }
            i += 1;
        }
        self.scanned = i;
        None
    }

    /// Which limit cut the stream, if one did.
    pub fn overflow(&self) -> Option<Overflow> {
        self.overflow
    }

    /// Bytes examined so far in the search for boundaries.
    pub fn work(&self) -> u64 {
        self.work
    }

    /// Bytes taken so far (at most the stream limit).
    pub fn received(&self) -> usize {
        self.received
    }

    /// Whatever is left when the stream ends (an event without its closing blank line).
    pub fn finish(&mut self) -> Option<Event> {
        let raw = std::mem::take(&mut self.buf).split_off(self.start);
        self.start = 0;
        self.scanned = 0;
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

    /// Every split of a stream into two chunks, and byte by byte, gives the same events.
    #[test]
    fn a_boundary_split_between_chunks_is_found_wherever_the_split_falls() {
        let text: &[u8] = b"data: a\n\ndata: b\r\n\r\nevent: e\ndata: c\n\n: note\ndata: d\n\n";
        let whole: Vec<Vec<u8>> = Decoder::default()
            .push(text)
            .into_iter()
            .map(|e| e.raw)
            .collect();
        assert_eq!(whole.len(), 4);
        for cut in 0..=text.len() {
            let mut d = Decoder::default();
            let mut got: Vec<Vec<u8>> = d.push(&text[..cut]).into_iter().map(|e| e.raw).collect();
            got.extend(d.push(&text[cut..]).into_iter().map(|e| e.raw));
            assert_eq!(got, whole, "split at {cut}");
        }
        let mut d = Decoder::default();
        let bytewise: Vec<Vec<u8>> = text
            .iter()
            .flat_map(|b| d.push(std::slice::from_ref(b)))
            .map(|e| e.raw)
            .collect();
        assert_eq!(bytewise, whole);
    }

    #[test]
    fn feeding_8_mib_without_a_boundary_in_1_kib_chunks_is_linear_and_cut_at_the_event_cap() {
        let mut d = Decoder::default();
        let chunk = vec![b'x'; 1024];
        let started = std::time::Instant::now();
        let mut fed = 0usize;
        assert!(d.push(b"data: ").is_empty());
        while fed < 8 * 1024 * 1024 && d.overflow().is_none() {
            assert!(d.push(&chunk).is_empty());
            fed += chunk.len();
        }
        assert_eq!(d.overflow(), Some(Overflow::Event(MAX_EVENT_BYTES)));
        assert!(
            fed <= MAX_EVENT_BYTES + chunk.len(),
            "cut as soon as the event passed the cap: {fed} bytes fed"
        );
        // Each byte is searched about once: the old decoder searched the whole buffer again on
        // every chunk, about fed²/2048 = 512 Mi byte looks for 1 MiB.
        assert!(
            d.work() <= d.received() as u64 + 2 * (fed / chunk.len()) as u64,
            "{} byte looks for {} bytes",
            d.work(),
            d.received()
        );
        // Nothing more is taken or held once cut.
        assert!(d.push(&chunk).is_empty());
        assert_eq!(d.finish(), None);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn many_small_events_in_one_chunk_are_cut_out_in_linear_time() {
        let event = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n";
        let chunk: Vec<u8> = event.repeat(20_000);
        let mut d = Decoder::default();
        let events = d.push(&chunk);
        assert_eq!(events.len(), 20_000);
        assert!(d.work() <= chunk.len() as u64, "{}", d.work());
    }

    #[test]
    fn an_event_over_the_cap_ends_the_stream_even_when_its_boundary_came_in_the_same_chunk() {
        let mut d = Decoder::with_limits(16, 1024);
        let evs = d.push(b"data: ok\n\ndata: 0123456789abcdef\n\ndata: later\n\n");
        assert_eq!(evs.len(), 1, "the event before the oversized one is kept");
        assert_eq!(evs[0].data, "ok");
        assert_eq!(d.overflow(), Some(Overflow::Event(16)));
        assert!(d.push(b"data: more\n\n").is_empty());
    }

    #[test]
    fn a_stream_over_the_total_cap_is_cut_there() {
        let mut d = Decoder::with_limits(64, 40);
        let evs = d.push(b"data: a\n\ndata: b\n\n");
        assert_eq!(evs.len(), 2);
        assert_eq!(d.overflow(), None);
        // 18 bytes so far; the next 22 are taken, the rest is over the cap.
        let evs = d.push(b"data: c\n\ndata: d\n\ndata: e\n\n");
        assert_eq!(
            evs.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
            ["c", "d"]
        );
        assert_eq!(d.overflow(), Some(Overflow::Stream(40)));
        assert_eq!(d.received(), 40);
        assert!(d.push(b"data: f\n\n").is_empty());
    }

    #[test]
    fn the_default_limits_are_one_mib_per_event_and_64_mib_per_stream() {
        let mut d = Decoder::default();
        let event = {
            let mut e = b"data: ".to_vec();
            e.resize(MAX_EVENT_BYTES - 2, b'x');
            e.extend_from_slice(b"\n\n");
            e
        };
        assert_eq!(
            d.push(&event).len(),
            1,
            "an event of exactly the cap passes"
        );
        let mut fed = event.len();
        while d.overflow().is_none() {
            d.push(&event);
            fed += event.len();
        }
        assert_eq!(d.overflow(), Some(Overflow::Stream(MAX_STREAM_BYTES)));
        assert_eq!(d.received(), MAX_STREAM_BYTES);
        assert!(fed > MAX_STREAM_BYTES);
    }
}
