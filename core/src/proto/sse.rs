//! An incremental Server-Sent Events parser (the reading side of [`crate::session::hub::Frame`]), for
//! upstream responses and streams: bytes go in as they arrive, whole events come out. Each byte
//! is scanned once, however a long `data:` line (a large blob) is split into chunks.

/// One parsed event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    /// The `event:` field; none for `message`, which is also what an absent field means.
    pub event: Option<String>,
    /// The `id:` field, if any.
    pub id: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

impl Event {
    /// The data of a JSON-RPC message event (`message`, or no event type), if it has any.
    pub fn into_message(self) -> Option<String> {
        let is_message = self.event.as_deref().is_none_or(|e| e == "message");
        (is_message && !self.data.is_empty()).then_some(self.data)
    }
}

/// Accumulates bytes and yields events; a line may span chunks, and so may a UTF-8 character.
/// Besides whole events it remembers what a reconnecting reader needs: the last event id seen
/// (also from an event without data, such as a priming event) and the last `retry:` delay.
#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
    /// How far `buf` is known to hold no line end.
    scanned: usize,
    current: Event,
    has_data: bool,
    /// Largest event accepted, in bytes (0: no limit).
    limit: usize,
    last_id: Option<String>,
    retry_ms: Option<u64>,
}

impl Parser {
    /// A parser refusing events larger than `limit` bytes (0: no limit).
    pub fn with_limit(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// The id of the last event dispatched (with or without data): what `Last-Event-ID` must
    /// carry when the stream is resumed.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// The reconnection delay the server asked for with `retry:`, if it did.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// Forgets a partly received event (its stream broke) but keeps the last event id and the
    /// retry delay, for reading the stream that resumes it.
    pub fn resume(&mut self) {
        self.buf.clear();
        self.scanned = 0;
        self.current = Event::default();
        self.has_data = false;
    }

    /// Feeds a chunk; returns the events it completed, or an error once an event grows past
    /// the limit. Lines are read in place: an event costs its data and its id, nothing per line.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, String> {
        self.buf.extend_from_slice(chunk);
        let buf = std::mem::take(&mut self.buf);
        let mut out = Vec::new();
        let mut start = 0;
        let mut from = self.scanned;
        while let Some(pos) = buf[from..].iter().position(|b| *b == b'\n') {
            let end = from + pos;
            let line_end = if end > start && buf[end - 1] == b'\r' {
                end - 1
            } else {
                end
            };
            if let Some(e) = self.line(&String::from_utf8_lossy(&buf[start..line_end])) {
                out.push(e);
            }
            start = end + 1;
            from = start;
        }
        self.buf = buf;
        self.buf.drain(..start);
        self.scanned = self.buf.len();
        if self.limit > 0 && self.buf.len() + self.current.data.len() > self.limit {
            return Err(format!("SSE event larger than {} bytes", self.limit));
        }
        Ok(out)
    }

    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            let e = std::mem::take(&mut self.current);
            let had = std::mem::take(&mut self.has_data);
            if let Some(id) = &e.id {
                // The last id's buffer is reused: ids change with every event.
                match &mut self.last_id {
                    Some(last) => {
                        last.clear();
                        last.push_str(id);
                    }
                    None => self.last_id = Some(id.clone()),
                }
            }
            return had.then_some(e);
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            // `message` is what no type means: it is kept as none, with nothing to allocate.
            "event" => self.current.event = (value != "message").then(|| value.to_string()),
            // An id containing NUL is ignored (WHATWG HTML, server-sent events).
            "id" if !value.contains('\0') => self.current.id = Some(value.to_string()),
            "retry" => {
                if let Ok(ms) = value.trim().parse::<u64>() {
                    self.retry_ms = Some(ms);
                }
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_across_chunks_and_line_endings() {
        let mut p = Parser::default();
        assert!(p.push(b"event: endpoint\r\ndata: /message?s").unwrap().is_empty());
        let e = p
            .push(b"essionId=1\r\n\r\n: keepalive\n\nid: p1.2\ndata: {\"a\":\n")
            .unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].event.as_deref(), Some("endpoint"));
        assert_eq!(e[0].data, "/message?sessionId=1");
        let e = p.push(b"data: 1}\n\n").unwrap();
        assert_eq!(e[0].data, "{\"a\":\n1}");
        assert_eq!(e[0].id.as_deref(), Some("p1.2"));
        assert_eq!(p.last_event_id(), Some("p1.2"));
        // A priming event with an id and no data is not an event, but its id and retry count.
        assert!(p.push(b"id: x\nretry: 500\n\n").unwrap().is_empty());
        assert_eq!(p.last_event_id(), Some("x"));
        assert_eq!(p.retry_ms(), Some(500));
        let mut small = Parser::with_limit(8);
        assert!(small.push(b"data: 0123456789").is_err());
    }

    #[test]
    fn a_line_split_at_every_byte_parses_the_same() {
        let text = b"id: 7\r\ndata: {\"k\": \"\xc3\xa9t\xc3\xa9\"}\r\n\r\n";
        let mut p = Parser::default();
        let mut events = Vec::new();
        for b in text {
            events.extend(p.push(std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "{\"k\": \"été\"}");
        assert_eq!(events[0].id.as_deref(), Some("7"));
    }

    /// A 10 MB `data:` line in 4 KiB chunks: each byte is looked at once, so this stays linear
    /// (the old parser rescanned the unfinished line from its start on every chunk: ~12 G byte
    /// comparisons here, minutes in a debug build).
    #[test]
    fn a_long_line_in_small_chunks_is_scanned_once() {
        let big = "x".repeat(10 << 20);
        let mut p = Parser::default();
        let mut events = Vec::new();
        events.extend(p.push(b"data: ").unwrap());
        for c in big.as_bytes().chunks(4096) {
            events.extend(p.push(c).unwrap());
            assert!(p.scanned == p.buf.len(), "the unfinished line is marked as scanned");
        }
        events.extend(p.push(b"\n\n").unwrap());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data.len(), big.len());
    }
}
