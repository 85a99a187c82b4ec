//! Server-sent events, as Recall's revocation stream writes them: an
//! incremental parser that never panics on hostile bytes.

/// Splits an SSE byte stream into messages (event, id, data).
#[derive(Default)]
pub struct SseParser {
    /// Bytes not yet ending a line: kept as bytes, so that a character
    /// split across two chunks is decoded whole.
    buf: Vec<u8>,
    event: Option<String>,
    id: Option<String>,
    data: String,
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseMessage {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

impl SseParser {
    /// Feeds bytes; returns every message they complete. Invalid UTF-8 is
    /// replaced, so hostile bytes end as a JSON error, never a panic.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseMessage> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = self.buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.data.is_empty() || self.event.is_some() {
                    out.push(SseMessage {
                        event: self.event.take().unwrap_or_else(|| "message".into()),
                        id: self.id.take(),
                        data: std::mem::take(&mut self.data)
                            .trim_end_matches('\n')
                            .to_owned(),
                    });
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "event" => self.event = Some(value.to_owned()),
                "id" => self.id = Some(value.to_owned()),
                "data" => {
                    self.data.push_str(value);
                    self.data.push('\n');
                }
                _ => {}
            }
        }
        // A line longer than this is not Recall talking: drop it.
        if self.buf.len() > 1 << 20 {
            self.buf.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_messages_split_across_chunks_and_comments_are_skipped() {
        let mut p = SseParser::default();
        assert!(p.feed(b": hello\n\nid: 7\nevent: revo").is_empty());
        let msgs = p.feed(b"cations\ndata: []\n\nevent: head\nid: 9\ndata: {\"head_seq\":9}\n\n");
        assert_eq!(
            msgs,
            vec![
                SseMessage {
                    event: "revocations".into(),
                    id: Some("7".into()),
                    data: "[]".into()
                },
                SseMessage {
                    event: "head".into(),
                    id: Some("9".into()),
                    data: "{\"head_seq\":9}".into()
                },
            ]
        );
        // A character split across chunks arrives whole.
        let text = "data: caf\u{e9} \u{1f512}\n\n".as_bytes();
        let mut whole = Vec::new();
        for chunk in text.chunks(1) {
            whole.extend(p.feed(chunk));
        }
        assert_eq!(whole.len(), 1);
        assert_eq!(whole[0].data, "caf\u{e9} \u{1f512}");
        // Hostile bytes: no panic, and the next message still parses.
        assert!(p.feed(&[0xff, 0xfe, b'\n', b'\n']).is_empty());
        assert_eq!(p.feed(b"event: head\r\ndata: x\r\n\r\n").len(), 1);
    }

    /// The feed connection cut mid-frame (G11): the partial frame is never
    /// emitted, so nothing of it is folded and the cursor stays at the last
    /// whole frame; the reconnect's parser starts clean and takes the frame
    /// the upstream sends again (from Last-Event-ID) whole.
    #[test]
    fn a_frame_cut_mid_way_is_never_emitted() {
        let frame =
            b"id: 5\nevent: revocations\ndata: [{\"seq\":5,\"kind\":\"session_revoked\"}]\n\n";
        for cut in 1..frame.len() {
            let mut before = SseParser::default();
            assert!(before.feed(&frame[..cut]).is_empty(), "cut at {cut}");
            let mut after = SseParser::default();
            let again = after.feed(frame);
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].id.as_deref(), Some("5"));
        }
    }
}
