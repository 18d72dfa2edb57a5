//! A minimal XMPP client: direct TLS (XEP-0368), SASL PLAIN, resource
//! binding, presence, chat and groupchat messages, and XEP-0199 pings.
//!
//! SASL PLAIN over TLS is used on purpose: it is the cheapest mechanism both
//! servers offer (one password comparison, with passwords stored plainly on
//! both), so the cost of authenticating is comparable to Kontor's client
//! certificate check rather than a deliberate password-hashing cost.
//!
//! After login a reader task owns the receiving half: it decodes messages
//! for the [`XmppRx`] and resolves the IQ results and MUC joins that the
//! [`XmppTx`] waits for. The [`XmppTx`] writes to the socket directly, so
//! any number of messages can be in flight.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::xml::{Element, Frame, StanzaReader, escape};
use crate::peer::{self, Dest, MessageRx, MessageTx};

/// How long a login step, a flush or a MUC join may take before it is an
/// error. Generous: a flush waits behind every message sent before it.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// What a flush may wait on top of [`ANSWER_TIMEOUT`] for each message sent
/// since the last one: the ping is answered after them, and a server
/// storing offline messages for 50 senders at once gets through a few per
/// second per sender (ejabberd about 15, Prosody about 10 on 2026-12-03).
/// A floor of 5 per second per sender.
const FLUSH_PER_MESSAGE: Duration = Duration::from_millis(200);

type Tls = TlsStream<TcpStream>;
type Reader = StanzaReader<BufReader<ReadHalf<Tls>>>;

/// Where and how to reach one server, shared by every connection.
#[derive(Clone)]
pub struct Target {
    /// "prosody" or "ejabberd", for error messages.
    pub server: &'static str,
    /// The c2s direct-TLS address.
    pub addr: SocketAddr,
    /// The XMPP domain (also the TLS server name).
    pub domain: String,
    /// The MUC service's domain.
    pub muc_domain: String,
    /// The password of every user.
    pub password: String,
    /// Payload size in bytes.
    pub payload: usize,
    /// TLS trusting only the harness's certificate, without resumption.
    pub tls: TlsConnector,
}

impl Target {
    /// The bare JID of user `n`.
    pub fn jid(&self, user: usize) -> String {
        format!("u{user}@{}", self.domain)
    }
}

/// A logged-in stream with a bound resource, before presence.
pub struct Session {
    reader: Reader,
    writer: WriteHalf<Tls>,
    /// "prosody u3/bench", for error messages.
    label: String,
}

impl Session {
    /// TCP, TLS, stream header, SASL PLAIN, stream restart, resource
    /// binding (and a session request if the server says it is required).
    pub async fn login(target: &Target, user: usize, resource: &str) -> anyhow::Result<Self> {
        let label = format!("{} u{user}/{resource}", target.server);
        tokio::time::timeout(
            ANSWER_TIMEOUT,
            Self::login_inner(target, user, resource, &label),
        )
        .await
        .map_err(|_| anyhow!("{label}: login timed out"))?
        .with_context(|| format!("{label}: login"))
    }

    async fn login_inner(
        target: &Target,
        user: usize,
        resource: &str,
        label: &str,
    ) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(target.addr)
            .await
            .with_context(|| format!("connecting to {}", target.addr))?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(target.domain.clone())?;
        let tls = target
            .tls
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        let (read, writer) = tokio::io::split(tls);
        let mut s = Session {
            reader: StanzaReader::new(BufReader::with_capacity(16 * 1024, read)),
            writer,
            label: label.to_owned(),
        };

        let features = s.open_stream(&target.domain).await?;
        let plain = features
            .child("mechanisms")
            .is_some_and(|m| m.children.iter().any(|c| c.text == "PLAIN"));
        if !plain {
            bail!(
                "the server does not offer SASL PLAIN: {}",
                features.describe()
            );
        }
        let credentials = BASE64.encode(format!("\0u{user}\0{}", target.password));
        s.write(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{credentials}</auth>"
        ))
        .await?;
        let answer = s.stanza().await?;
        if answer.local() != "success" {
            bail!("authentication failed: {}", answer.describe());
        }

        let features = s.open_stream(&target.domain).await?;
        if features.child("bind").is_none() {
            bail!("no resource binding offered: {}", features.describe());
        }
        s.write(&format!(
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>{}</resource></bind></iq>",
            escape(resource)
        ))
        .await?;
        s.expect_result("bind").await?;
        // RFC 6121 dropped the session request; both servers mark it
        // optional, and then a client skips the round trip.
        if features
            .child("session")
            .is_some_and(|x| x.child("optional").is_none())
        {
            s.write(
                "<iq type='set' id='sess'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
            )
            .await?;
            s.expect_result("sess").await?;
        }
        Ok(s)
    }

    /// Sends a stream header and returns the server's features.
    async fn open_stream(&mut self, domain: &str) -> anyhow::Result<Element> {
        self.write(&format!(
            "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' \
             xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        ))
        .await?;
        match self.reader.next().await? {
            Frame::Open(_) => {}
            other => bail!("expected a stream header, got {other:?}"),
        }
        let features = self.stanza().await?;
        if features.local() != "features" {
            bail!("expected stream features, got {}", features.describe());
        }
        Ok(features)
    }

    /// The next stanza; a stream error or close is an error.
    async fn stanza(&mut self) -> anyhow::Result<Element> {
        match self.reader.next().await? {
            Frame::Stanza(e) if e.local() == "error" && e.name.starts_with("stream") => {
                bail!("stream error: {}", e.describe())
            }
            Frame::Stanza(e) => Ok(e),
            Frame::Open(_) => bail!("an unexpected stream header"),
            Frame::Close => bail!("the server closed the stream"),
        }
    }

    /// Waits for the IQ result with this id (nothing else is expected while
    /// logging in or in a handshake).
    async fn expect_result(&mut self, id: &str) -> anyhow::Result<Element> {
        let answer = self.stanza().await?;
        if answer.local() != "iq" || answer.attr("id") != Some(id) {
            bail!("expected the answer to iq {id}, got {}", answer.describe());
        }
        if answer.attr("type") != Some("result") {
            bail!("iq {id} failed: {}", answer.describe());
        }
        Ok(answer)
    }

    async fn write(&mut self, xml: &str) -> anyhow::Result<()> {
        self.writer.write_all(xml.as_bytes()).await?;
        self.writer.flush().await?;
        Ok(())
    }

    /// One ping answered, then a clean close: the tail of a handshake.
    pub async fn ping_and_close(mut self) -> anyhow::Result<()> {
        self.write("<iq type='get' id='hs'><ping xmlns='urn:xmpp:ping'/></iq>")
            .await?;
        self.expect_result("hs")
            .await
            .with_context(|| format!("{}: ping", self.label))?;
        self.write("</stream:stream>").await?;
        self.writer.shutdown().await.ok();
        Ok(())
    }

    /// Sends available presence and holds the stream open without reading:
    /// an idle connection. Priority -1 keeps the server from delivering
    /// the user's chat messages to it (RFC 6121 8.5.2.1.1), so idle
    /// connections never take messages meant for a workload's receiver
    /// and a user with only idle connections still gets offline storage.
    pub async fn into_idle(mut self) -> anyhow::Result<XmppIdle> {
        self.write("<presence><priority>-1</priority></presence>")
            .await?;
        Ok(XmppIdle {
            _reader: self.reader,
            _writer: self.writer,
        })
    }

    /// Starts the reader task; `presence` sends available presence with
    /// priority 1 first (so chat messages and stored offline messages come
    /// to this resource), `rooms` are joined as `nick` and awaited.
    pub async fn into_halves(
        mut self,
        target: &Target,
        presence: bool,
        rooms: &[String],
        nick: &str,
    ) -> anyhow::Result<(XmppTx, XmppRx)> {
        if presence {
            self.write("<presence><priority>1</priority></presence>")
                .await?;
        }
        let shared = Arc::new(Shared::default());
        let (messages_tx, messages) = mpsc::unbounded_channel();
        let (alive, dead) = mpsc::channel(1);
        let label = self.label.clone();
        tokio::spawn(read_loop(
            self.reader,
            messages_tx,
            shared.clone(),
            nick.to_owned(),
            dead,
        ));
        let mut tx = XmppTx {
            writer: self.writer,
            shared,
            target: target.clone(),
            label: label.clone(),
            next_id: 0,
            unflushed: 0,
            buf: String::new(),
            _alive: alive.clone(),
        };
        let rx = XmppRx {
            messages,
            label,
            _alive: alive,
        };
        if presence {
            // A ping after the presence: answered once the server has made
            // this resource available. Without it a message sent to the
            // user right after this returns can race the presence, find no
            // available resource and go to offline storage, where ejabberd
            // keeps it until the next login (its offline store and the
            // presence's fetch of it run concurrently).
            tx.iq("type='get'", "<ping xmlns='urn:xmpp:ping'/>")
                .await
                .with_context(|| format!("{}: presence (ping)", tx.label))?;
        }
        tx.join(rooms, nick).await?;
        Ok((tx, rx))
    }
}

/// A connection held open, idle (see [`Session::into_idle`]).
pub struct XmppIdle {
    _reader: Reader,
    _writer: WriteHalf<Tls>,
}

/// What the writer waits for: IQ results by id, MUC self-presence by
/// `join:` and the room's JID.
#[derive(Default)]
struct Shared {
    pending: Mutex<HashMap<String, oneshot::Sender<anyhow::Result<Element>>>>,
}

impl Shared {
    fn expect(&self, key: String) -> oneshot::Receiver<anyhow::Result<Element>> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(key, tx);
        rx
    }

    fn resolve(&self, key: &str, answer: anyhow::Result<Element>) {
        if let Some(waiter) = self.lock().remove(key) {
            waiter.send(answer).ok();
        }
    }

    fn fail_all(&self, why: &str) {
        for (_, waiter) in self.lock().drain() {
            waiter.send(Err(anyhow!("{why}"))).ok();
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<anyhow::Result<Element>>>> {
        // A panic while holding this lock is a bug in this file; the map
        // itself stays consistent, so keep going with it.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn read_loop(
    mut reader: Reader,
    messages: mpsc::UnboundedSender<anyhow::Result<u64>>,
    shared: Arc<Shared>,
    nick: String,
    mut dead: mpsc::Receiver<()>,
) {
    let why = loop {
        let frame = tokio::select! {
            frame = reader.next() => frame,
            // Both halves are gone: stop reading, which closes the socket.
            _ = dead.recv() => break "closed".to_owned(),
        };
        let stanza = match frame {
            Ok(Frame::Stanza(s)) => s,
            Ok(Frame::Close) => break "the server closed the stream".to_owned(),
            Ok(Frame::Open(_)) => break "an unexpected stream header".to_owned(),
            Err(e) => break format!("{e:#}"),
        };
        match stanza.local() {
            "message" => {
                if let Some(item) = message_seq(&stanza, &nick) {
                    // The receiving half may be gone (a sender-only user).
                    messages.send(item).ok();
                }
            }
            "iq" => match (stanza.attr("type"), stanza.attr("id")) {
                (Some("result"), Some(id)) => {
                    // The id borrows the stanza, which moves into the answer.
                    let id = id.to_owned();
                    shared.resolve(&id, Ok(stanza));
                }
                (Some("error"), Some(id)) => {
                    let id = id.to_owned();
                    shared.resolve(&id, Err(anyhow!("iq {id} failed: {}", stanza.describe())));
                }
                _ => {}
            },
            "presence" => {
                let Some(from) = stanza.attr("from") else {
                    continue;
                };
                let room = from.split('/').next().unwrap_or(from);
                let key = format!("join:{room}");
                if stanza.attr("type") == Some("error") {
                    shared.resolve(&key, Err(anyhow!("joining {room}: {}", stanza.describe())));
                } else if is_self_presence(&stanza) {
                    shared.resolve(&key, Ok(stanza));
                }
            }
            "error" => break format!("stream error: {}", stanza.describe()),
            _ => {}
        }
    };
    shared.fail_all(&why);
    if why != "closed" {
        messages.send(Err(anyhow!("{why}"))).ok();
    }
}

/// The sequence number a message carries; `None` for our own MUC echo and
/// for messages without a body (chat states, subjects).
fn message_seq(stanza: &Element, nick: &str) -> Option<anyhow::Result<u64>> {
    let from = stanza.attr("from").unwrap_or("");
    if stanza.attr("type") == Some("error") {
        return Some(Err(anyhow!(
            "message error from {from}: {}",
            stanza.describe()
        )));
    }
    if stanza.attr("type") == Some("groupchat")
        && from.split_once('/').map(|(_, n)| n) == Some(nick)
    {
        return None;
    }
    let body = stanza.child("body")?;
    let decoded = BASE64
        .decode(body.text.trim())
        .ok()
        .and_then(|p| peer::payload_seq(&p));
    Some(decoded.ok_or_else(|| anyhow!("a message from {from} without a harness payload")))
}

/// MUC's own-presence marker: status code 110 in the muc#user extension.
fn is_self_presence(stanza: &Element) -> bool {
    stanza
        .children
        .iter()
        .filter(|x| x.local() == "x")
        .any(|x| {
            x.children
                .iter()
                .any(|s| s.local() == "status" && s.attr("code") == Some("110"))
        })
}

/// The sending half of a connected user.
pub struct XmppTx {
    writer: WriteHalf<Tls>,
    shared: Arc<Shared>,
    target: Target,
    label: String,
    next_id: u64,
    /// Messages sent since the last flush.
    unflushed: u32,
    buf: String,
    _alive: mpsc::Sender<()>,
}

impl XmppTx {
    async fn write(&mut self, xml: &str) -> anyhow::Result<()> {
        self.writer.write_all(xml.as_bytes()).await?;
        self.writer.flush().await?;
        Ok(())
    }

    /// Sends an IQ (without an id attribute: it is added) and waits for its
    /// result.
    pub async fn iq(&mut self, attrs: &str, inner: &str) -> anyhow::Result<Element> {
        self.iq_within(attrs, inner, ANSWER_TIMEOUT).await
    }

    /// As [`XmppTx::iq`], waiting at most `timeout` for the result.
    async fn iq_within(
        &mut self,
        attrs: &str,
        inner: &str,
        timeout: Duration,
    ) -> anyhow::Result<Element> {
        self.next_id += 1;
        let id = format!("q{}", self.next_id);
        let answer = self.shared.expect(id.clone());
        self.write(&format!("<iq id='{id}' {attrs}>{inner}</iq>"))
            .await?;
        tokio::time::timeout(timeout, answer)
            .await
            .map_err(|_| anyhow!("no answer to iq {id} in {timeout:?}"))?
            .map_err(|_| anyhow!("the connection closed before iq {id} was answered"))?
    }

    /// Joins `rooms` as `nick`, without history, and waits until each room
    /// has sent our own presence back.
    pub async fn join(&mut self, rooms: &[String], nick: &str) -> anyhow::Result<()> {
        let mut waits = Vec::new();
        for room in rooms {
            waits.push((room, self.shared.expect(format!("join:{room}"))));
            self.write(&format!(
                "<presence to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'>\
                 <history maxstanzas='0'/></x></presence>"
            ))
            .await
            .with_context(|| format!("{}: joining {room}", self.label))?;
        }
        for (room, wait) in waits {
            tokio::time::timeout(ANSWER_TIMEOUT, wait)
                .await
                .map_err(|_| anyhow!("{}: joining {room} timed out", self.label))?
                .map_err(|_| anyhow!("{}: the connection closed while joining {room}", self.label))?
                .with_context(|| self.label.clone())?;
        }
        Ok(())
    }

    /// Configures a room we just created: persistent (so it outlives this
    /// connection until the members join), everything else the server's
    /// default, which unlocks it.
    pub async fn configure_room(&mut self, room: &str) -> anyhow::Result<()> {
        self.iq(
            &format!("type='set' to='{room}'"),
            "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
             <field var='muc#roomconfig_persistentroom'><value>1</value></field>\
             </x></query>",
        )
        .await
        .with_context(|| format!("{}: configuring {room}", self.label))?;
        Ok(())
    }

    /// Leaves `room` and closes the stream.
    pub async fn leave_and_close(mut self, room: &str, nick: &str) -> anyhow::Result<()> {
        self.write(&format!(
            "<presence to='{room}/{nick}' type='unavailable'/>"
        ))
        .await?;
        // A ping after the leave: answered once the leave has been routed.
        self.iq("type='get'", "<ping xmlns='urn:xmpp:ping'/>")
            .await?;
        self.write("</stream:stream>").await?;
        self.writer.shutdown().await.ok();
        Ok(())
    }
}

impl MessageTx for XmppTx {
    async fn send(&mut self, dest: &Dest, seq: u64) -> anyhow::Result<()> {
        let body = BASE64.encode(peer::payload(seq, self.target.payload));
        self.buf.clear();
        match dest {
            Dest::User(u) => self.buf.push_str(&format!(
                "<message type='chat' to='{}'><body>{body}</body></message>",
                self.target.jid(*u)
            )),
            Dest::Group(g) => self.buf.push_str(&format!(
                "<message type='groupchat' to='{}'><body>{body}</body></message>",
                escape(&g.id)
            )),
        }
        let xml = std::mem::take(&mut self.buf);
        let written = self.write(&xml).await;
        self.buf = xml;
        self.unflushed = self.unflushed.saturating_add(1);
        written.with_context(|| format!("{}: sending message {seq}", self.label))
    }

    /// An XEP-0199 ping to the server, answered after everything sent
    /// before it: a server handles the stanzas of one c2s stream in order,
    /// so by the time the ping's result comes back it has routed (or stored
    /// offline) every earlier message. It may take as long as those
    /// messages need: [`FLUSH_PER_MESSAGE`] each, on top of the usual wait.
    async fn flush(&mut self) -> anyhow::Result<()> {
        let label = self.label.clone();
        let timeout = ANSWER_TIMEOUT + FLUSH_PER_MESSAGE * self.unflushed;
        self.iq_within("type='get'", "<ping xmlns='urn:xmpp:ping'/>", timeout)
            .await
            .with_context(|| format!("{label}: flush (ping)"))?;
        self.unflushed = 0;
        Ok(())
    }
}

/// The receiving half of a connected user.
pub struct XmppRx {
    messages: mpsc::UnboundedReceiver<anyhow::Result<u64>>,
    label: String,
    _alive: mpsc::Sender<()>,
}

impl MessageRx for XmppRx {
    async fn recv(&mut self) -> anyhow::Result<Vec<u64>> {
        let first = self
            .messages
            .recv()
            .await
            .ok_or_else(|| anyhow!("{}: the connection is closed", self.label))?;
        let mut seqs = vec![first.with_context(|| self.label.clone())?];
        while seqs.len() < 1024 {
            match self.messages.try_recv() {
                Ok(item) => seqs.push(item.with_context(|| self.label.clone())?),
                Err(_) => break,
            }
        }
        Ok(seqs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: &str, from: &str, body: Option<String>) -> Element {
        let mut m = Element {
            name: "message".into(),
            attrs: vec![("type".into(), kind.into()), ("from".into(), from.into())],
            ..Element::default()
        };
        if let Some(text) = body {
            m.children.push(Element {
                name: "body".into(),
                text,
                ..Element::default()
            });
        }
        m
    }

    #[test]
    fn payload_round_trips_through_a_body() {
        for size in [8, 100, 4096] {
            let body = BASE64.encode(peer::payload(0xdead_beef_0042, size));
            let m = message("chat", "u1@bench.test/x", Some(body));
            assert_eq!(
                message_seq(&m, "u2").map(|r| r.ok()),
                Some(Some(0xdead_beef_0042))
            );
        }
    }

    #[test]
    fn own_groupchat_echo_is_skipped_and_others_are_reported() {
        let body = BASE64.encode(peer::payload(7, 32));
        let echo = message(
            "groupchat",
            "g0@conference.bench.test/u2",
            Some(body.clone()),
        );
        assert!(message_seq(&echo, "u2").is_none());
        let other = message("groupchat", "g0@conference.bench.test/u3", Some(body));
        assert_eq!(message_seq(&other, "u2").map(|r| r.ok()), Some(Some(7)));
    }

    #[test]
    fn a_bodyless_message_is_ignored_and_an_error_reported() {
        assert!(message_seq(&message("groupchat", "g0@c/u1", None), "u2").is_none());
        let err = message_seq(&message("error", "u9@bench.test", None), "u2");
        assert!(matches!(err, Some(Err(_))));
        let garbage = message("chat", "u1@bench.test/x", Some("not base64!".into()));
        assert!(matches!(message_seq(&garbage, "u2"), Some(Err(_))));
    }
}
