//! An incremental Server-Sent Events parser (the reading side of [`crate::hub::Frame`]), for
//! upstream responses and streams: bytes go in as they arrive, whole events come out.

/// One parsed event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    /// The `event:` field (`message` when absent).
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
#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
    current: Event,
    has_data: bool,
    /// Largest event accepted, in bytes (0: no limit).
    limit: usize,
}

impl Parser {
    /// A parser refusing events larger than `limit` bytes (0: no limit).
    pub fn with_limit(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// Feeds a chunk; returns the events it completed, or an error once an event grows past
    /// the limit.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, String> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(pos) = self.buf[start..].iter().position(|b| *b == b'\n') {
            let end = start + pos;
            let line_end = if end > start && self.buf[end - 1] == b'\r' {
                end - 1
            } else {
                end
            };
            let line = String::from_utf8_lossy(&self.buf[start..line_end]).into_owned();
            start = end + 1;
            if let Some(e) = self.line(&line) {
                out.push(e);
            }
        }
        self.buf.drain(..start);
        if self.limit > 0 && self.buf.len() + self.current.data.len() > self.limit {
            return Err(format!("SSE event larger than {} bytes", self.limit));
        }
        Ok(out)
    }

    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            let e = std::mem::take(&mut self.current);
            let had = std::mem::take(&mut self.has_data);
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
            "event" => self.current.event = Some(value.to_string()),
            "id" => self.current.id = Some(value.to_string()),
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
        // A priming event with an id and no data is not an event.
        assert!(p.push(b"id: x\nretry: 500\n\n").unwrap().is_empty());
        let mut small = Parser::with_limit(8);
        assert!(small.push(b"data: 0123456789").is_err());
    }
}
