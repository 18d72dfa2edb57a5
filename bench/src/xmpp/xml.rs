//! The incremental XMPP stream parser: one XML document arrives in pieces
//! over TCP, and each top-level child of `<stream:stream>` is a stanza.
//!
//! [`StanzaReader`] drives quick-xml's streaming reader over any
//! `AsyncBufRead` (the TLS stream in use, a chunked test reader in the
//! tests): a stanza may be split across reads at any byte and several may
//! arrive in one read. Each stanza becomes a small [`Element`] tree. A
//! stream restart (after SASL) is a new `<stream:stream>` start tag on the
//! same byte stream and resets the depth.

use anyhow::{Context, bail};
use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use tokio::io::AsyncBufRead;

/// The largest stanza accepted, in bytes (servers default to 256 KiB too).
pub const STANZA_BYTES_MAX: u64 = 256 * 1024;
/// The deepest nesting accepted inside a stanza.
const DEPTH_MAX: usize = 32;

/// One element with its attributes, children and text (concatenated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// The qualified name as written (`message`, `stream:features`).
    pub name: String,
    /// Attributes in document order, values unescaped.
    pub attrs: Vec<(String, String)>,
    /// Child elements in document order.
    pub children: Vec<Element>,
    /// The text directly inside this element, unescaped.
    pub text: String,
}

impl Element {
    /// The name without its prefix.
    pub fn local(&self) -> &str {
        self.name.rsplit(':').next().unwrap_or(&self.name)
    }

    /// An attribute's value (by qualified name).
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first child with this local name.
    pub fn child(&self, local: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.local() == local)
    }

    /// A short rendering for error messages: the name, the attributes and
    /// the first child names (e.g. an `<error>`'s condition).
    pub fn describe(&self) -> String {
        let attrs: Vec<String> = self
            .attrs
            .iter()
            .map(|(k, v)| format!("{k}='{v}'"))
            .collect();
        let mut out = format!("<{} {}>", self.name, attrs.join(" "));
        for c in &self.children {
            out.push_str(&format!(" <{}>", c.name));
            for g in &c.children {
                out.push_str(&format!(" <{}/>", g.name));
                if !g.text.is_empty() {
                    out.push_str(&format!(" {:?}", g.text));
                }
            }
        }
        out
    }
}

/// What the stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The server's `<stream:stream>` header (attributes only).
    Open(Element),
    /// A complete top-level element: a stanza, `<stream:features>`,
    /// `<success>`, `<stream:error>`.
    Stanza(Element),
    /// `</stream:stream>`: the server closed the stream.
    Close,
}

/// Reads [`Frame`]s from a byte stream.
pub struct StanzaReader<R> {
    reader: quick_xml::Reader<R>,
    buf: Vec<u8>,
    /// The open elements of the stanza being read (empty between stanzas).
    stack: Vec<Element>,
    /// Whether we are inside `<stream:stream>`.
    open: bool,
    /// Where the current stanza started, to bound its size.
    stanza_start: u64,
}

impl<R: AsyncBufRead + Unpin> StanzaReader<R> {
    /// Reads from `inner` (which should buffer: every event is a few
    /// small reads).
    pub fn new(inner: R) -> Self {
        let mut reader = quick_xml::Reader::from_reader(inner);
        let config = reader.config_mut();
        config.expand_empty_elements = false;
        // The stream header is never closed before a restart, so names are
        // matched by our own stack, not quick-xml's.
        config.check_end_names = false;
        Self {
            reader,
            buf: Vec::with_capacity(4096),
            stack: Vec::new(),
            open: false,
            stanza_start: 0,
        }
    }

    /// The inner reader (to reach the socket for writing during login).
    pub fn get_mut(&mut self) -> &mut R {
        self.reader.get_mut()
    }

    /// The next frame; an error on malformed XML, an oversized stanza or the
    /// end of the byte stream.
    pub async fn next(&mut self) -> anyhow::Result<Frame> {
        loop {
            self.buf.clear();
            let event = self
                .reader
                .read_event_into_async(&mut self.buf)
                .await
                .context("reading the XMPP stream")?;
            let position = self.reader.buffer_position();
            if !self.stack.is_empty() && position - self.stanza_start > STANZA_BYTES_MAX {
                bail!("a stanza longer than {STANZA_BYTES_MAX} bytes");
            }
            match event {
                Event::Start(start) => {
                    let element = element_of(&start)?;
                    if self.stack.is_empty() && element.local() == "stream" {
                        // A stream header, first or after a restart.
                        self.open = true;
                        return Ok(Frame::Open(element));
                    }
                    if !self.open {
                        bail!("<{}> before the stream header", element.name);
                    }
                    if self.stack.is_empty() {
                        self.stanza_start = position;
                    }
                    if self.stack.len() >= DEPTH_MAX {
                        bail!("a stanza nested deeper than {DEPTH_MAX}");
                    }
                    self.stack.push(element);
                }
                Event::Empty(start) => {
                    let element = element_of(&start)?;
                    match self.stack.last_mut() {
                        Some(parent) => parent.children.push(element),
                        None if self.open => return Ok(Frame::Stanza(element)),
                        None => bail!("<{}/> before the stream header", element.name),
                    }
                }
                Event::End(end) => {
                    let name = end.name().as_ref().to_owned();
                    let Some(element) = self.stack.pop() else {
                        if name.rsplit(':').next() == Some("stream") {
                            self.open = false;
                            return Ok(Frame::Close);
                        }
                        bail!("</{name}> closes nothing");
                    };
                    if element.name != name {
                        bail!("</{name}> closes <{}>", element.name);
                    }
                    match self.stack.last_mut() {
                        Some(parent) => parent.children.push(element),
                        None => return Ok(Frame::Stanza(element)),
                    }
                }
                Event::Text(text) => {
                    if let Some(current) = self.stack.last_mut() {
                        current.text.push_str(&text.xml10_content());
                    }
                }
                Event::CData(data) => {
                    if let Some(current) = self.stack.last_mut() {
                        current.text.push_str(&data.xml10_content());
                    }
                }
                Event::GeneralRef(reference) => {
                    let Some(current) = self.stack.last_mut() else {
                        continue;
                    };
                    if let Some(c) = reference
                        .resolve_char_ref()
                        .context("a character reference")?
                    {
                        current.text.push(c);
                    } else {
                        let name = reference.xml10_content();
                        let value = quick_xml::escape::resolve_predefined_entity(&name)
                            .with_context(|| format!("an unknown entity &{name};"))?;
                        current.text.push_str(value);
                    }
                }
                Event::Eof => bail!("the server closed the connection"),
                // XML declarations (one per stream header), comments and
                // processing instructions carry nothing for us.
                Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
            }
        }
    }
}

fn element_of(start: &BytesStart<'_>) -> anyhow::Result<Element> {
    let name = start.name().as_ref().to_owned();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.with_context(|| format!("an attribute of <{name}>"))?;
        let key = attr.key.as_ref().to_owned();
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .with_context(|| format!("attribute {key} of <{name}>"))?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

/// Escapes text for an attribute value or element content.
pub fn escape(raw: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context as TaskContext, Poll};
    use tokio::io::{AsyncRead, BufReader, ReadBuf};

    /// Hands out its bytes in the given chunk sizes, one chunk per read, as
    /// TCP might.
    struct Chunked {
        data: Vec<u8>,
        at: usize,
        sizes: Vec<usize>,
        next: usize,
    }

    impl AsyncRead for Chunked {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut TaskContext<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let size = self.sizes[self.next % self.sizes.len()].max(1);
            self.next += 1;
            let end = (self.at + size)
                .min(self.data.len())
                .min(self.at + buf.remaining());
            let at = self.at;
            buf.put_slice(&self.data[at..end]);
            self.at = end;
            Poll::Ready(Ok(()))
        }
    }

    const STREAM: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' id='abc' from='bench.test' version='1.0'>\
        <stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
        <mechanism>PLAIN</mechanism><mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>\
        <success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>\
        <?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' id='def' version='1.0'>\
        <message from='u0@bench.test/r' type='chat'><body>a &amp; b &#x41;&lt;</body>\
        <delay xmlns='urn:xmpp:delay' stamp='2026-01-01T00:00:00Z'/></message>\
        <iq type='result' id='p1'/></stream:stream>";

    async fn frames(sizes: Vec<usize>) -> Vec<Frame> {
        let chunked = Chunked {
            data: STREAM.as_bytes().to_vec(),
            at: 0,
            sizes,
            next: 0,
        };
        // A tiny buffer so that quick-xml itself sees the pieces.
        let mut reader = StanzaReader::new(BufReader::with_capacity(3, chunked));
        let mut out = Vec::new();
        loop {
            let frame = reader.next().await.expect("the test stream is well formed");
            let done = frame == Frame::Close;
            out.push(frame);
            if done {
                return out;
            }
        }
    }

    fn check(frames: &[Frame]) {
        let names: Vec<String> = frames
            .iter()
            .map(|f| match f {
                Frame::Open(e) => format!("open {}", e.attr("id").unwrap_or("")),
                Frame::Stanza(e) => e.name.clone(),
                Frame::Close => "close".into(),
            })
            .collect();
        assert_eq!(
            names,
            [
                "open abc",
                "stream:features",
                "success",
                "open def",
                "message",
                "iq",
                "close"
            ]
        );
        let Frame::Stanza(features) = &frames[1] else {
            panic!("features expected")
        };
        let mechanisms: Vec<&str> = features
            .child("mechanisms")
            .map(|m| m.children.iter().map(|c| c.text.as_str()).collect())
            .unwrap_or_default();
        assert_eq!(mechanisms, ["PLAIN", "SCRAM-SHA-1"]);
        let Frame::Stanza(message) = &frames[4] else {
            panic!("message expected")
        };
        assert_eq!(message.attr("from"), Some("u0@bench.test/r"));
        assert_eq!(
            message.child("body").map(|b| b.text.as_str()),
            Some("a & b A<")
        );
        assert_eq!(
            message.child("delay").and_then(|d| d.attr("stamp")),
            Some("2026-01-01T00:00:00Z")
        );
    }

    #[tokio::test]
    async fn whole_stream_in_one_read() {
        check(&frames(vec![STREAM.len()]).await);
    }

    #[tokio::test]
    async fn one_byte_at_a_time() {
        check(&frames(vec![1]).await);
    }

    #[tokio::test]
    async fn split_at_every_byte_with_uneven_reads() {
        // Every split point is covered by some size pattern.
        for first in 1..STREAM.len() {
            check(&frames(vec![first, 7, 2, 13]).await);
        }
    }

    #[tokio::test]
    async fn an_oversized_stanza_is_refused() {
        let big = format!(
            "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><message><body>{}</body></message>",
            "A".repeat(STANZA_BYTES_MAX as usize + 10)
        );
        let chunked = Chunked {
            data: big.into_bytes(),
            at: 0,
            sizes: vec![4096],
            next: 0,
        };
        let mut reader = StanzaReader::new(BufReader::new(chunked));
        assert!(matches!(reader.next().await, Ok(Frame::Open(_))));
        let err = reader.next().await.expect_err("too big");
        assert!(err.to_string().contains("longer than"), "{err:#}");
    }

    #[tokio::test]
    async fn end_of_input_mid_stanza_is_an_error() {
        let cut = &STREAM[..STREAM.find("<body>").expect("has a body")];
        let chunked = Chunked {
            data: cut.as_bytes().to_vec(),
            at: 0,
            sizes: vec![5],
            next: 0,
        };
        let mut reader = StanzaReader::new(BufReader::new(chunked));
        let mut last = Ok(Frame::Close);
        for _ in 0..10 {
            last = reader.next().await;
            if last.is_err() {
                break;
            }
        }
        assert!(last.is_err());
    }
}
