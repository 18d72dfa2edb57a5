//! Commands the relay queues for this device, parsed from the relay's JSON
//! into typed values. Pure: no I/O, no clock; [`crate::Agent`] carries them
//! out and acknowledges them.
//!
//! Payloads and receipts (the relay passes both through as JSON):
//!
//! | kind        | payload                                                            | receipt                                          |
//! |-------------|--------------------------------------------------------------------|--------------------------------------------------|
//! | `wipe`      | anything                                                           | `{"wiped": true, "at_ms": N}`                    |
//! | `policy`    | managed-configuration keys (JSON object)                           | `{"applied": true}`                              |
//! | `broadcast` | `{"text": 1..=4000 chars, "sent_at_ms": i64, "scope": String}`     | `{"shown": true}`                                |
//! | `archive`   | `{"request": 32 hex, "from_ms": i64, "to_ms": i64, "archive_key": 64 hex}` | `{"archived": true, "parts": [{"blob", "bytes", "messages"}]}` |
//!
//! A payload that does not parse is refused with `{"applied": false,
//! "reason": ...}` (`{"archived": false, "reason": ...}` for `archive`), and
//! nothing is stored or uploaded.

use kontor_crypto::IdentityPublic;

/// The stored kind of a broadcast. Only the relay's command channel makes
/// messages of this kind: a user's message claiming it is dropped.
pub const BROADCAST_KIND: &str = "broadcast";
/// Who a broadcast is shown as coming from (not a user id: the kind, not
/// this name, tells a broadcast apart).
pub const ADMINISTRATION: &str = "Administration";
/// Most characters (Unicode scalar values) of a broadcast text.
pub const BROADCAST_TEXT_CHARS_MAX: usize = 4000;
/// Most characters of a broadcast's scope.
pub const BROADCAST_SCOPE_CHARS_MAX: usize = 1024;

/// One command as the relay delivers it (`GET /v1/commands` or a WebSocket
/// `{"command": ...}` frame).
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// The relay's command id, to acknowledge.
    pub id: u64,
    /// `wipe`, `policy`, `broadcast`, `archive`, ...
    pub kind: String,
    /// The payload, as JSON.
    pub payload: serde_json::Value,
}

impl Incoming {
    /// Reads the relay's command object; `None` if it is not one.
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        Some(Self {
            id: value["id"].as_u64()?,
            kind: value["kind"].as_str()?.to_owned(),
            payload: value["payload"].clone(),
        })
    }
}

/// A command this agent understands, with its payload checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Destroy the store, then confirm.
    Wipe,
    /// Managed-configuration keys that override the EMM's.
    Policy(serde_json::Value),
    /// A message from the administration.
    Broadcast(Broadcast),
    /// Export a time range of the store for the organisation's archive.
    Archive(ArchiveRequest),
}

/// A message from the administration to many users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    /// The text, 1 to 4000 characters.
    pub text: String,
    /// When the administration sent it (its clock).
    pub sent_at_ms: i64,
    /// Whom it went to, as the administration names it (`all`, a group, ...).
    pub scope: String,
}

/// An archive request: every stored message with `from_ms <= sent_at_ms <
/// to_ms`, sealed for `archive_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveRequest {
    /// The administration's request id.
    pub request: [u8; 16],
    /// Start of the range, inclusive.
    pub from_ms: i64,
    /// End of the range, exclusive.
    pub to_ms: i64,
    /// The organisation's archive public key.
    pub archive_key: IdentityPublic,
}

/// Why a command was refused; goes into its receipt as `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The command's kind (decides the receipt's shape).
    pub kind: String,
    /// What is wrong, without payload content.
    pub reason: String,
}

impl Refusal {
    fn new(kind: &str, reason: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            reason: reason.into(),
        }
    }

    /// The receipt that acknowledges a refused command.
    pub fn receipt(&self) -> serde_json::Value {
        let done = if self.kind == "archive" {
            "archived"
        } else {
            "applied"
        };
        serde_json::json!({ done: false, "reason": self.reason })
    }
}

/// Checks a command's kind and payload.
pub fn parse(incoming: &Incoming) -> Result<Command, Refusal> {
    let payload = &incoming.payload;
    match incoming.kind.as_str() {
        "wipe" => Ok(Command::Wipe),
        "policy" => Ok(Command::Policy(payload.clone())),
        "broadcast" => parse_broadcast(payload).map(Command::Broadcast),
        "archive" => parse_archive(payload).map(Command::Archive),
        _ => Err(Refusal::new(&incoming.kind, "unknown command")),
    }
}

fn object<'a>(
    kind: &str,
    payload: &'a serde_json::Value,
    fields: &[&str],
) -> Result<&'a serde_json::Map<String, serde_json::Value>, Refusal> {
    let map = payload
        .as_object()
        .ok_or_else(|| Refusal::new(kind, "the payload is not a JSON object"))?;
    if let Some(unknown) = map.keys().find(|k| !fields.contains(&k.as_str())) {
        // The key name comes from the administration, not from a user; still
        // bounded so a receipt stays small.
        let name: String = unknown.chars().take(64).collect();
        return Err(Refusal::new(kind, format!("unknown field {name:?}")));
    }
    Ok(map)
}

fn string<'a>(
    kind: &str,
    map: &'a serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Result<&'a str, Refusal> {
    map.get(field)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| Refusal::new(kind, format!("`{field}` must be a string")))
}

fn integer(
    kind: &str,
    map: &serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Result<i64, Refusal> {
    map.get(field)
        .and_then(serde_json::Value::as_i64)
        .ok_or_else(|| Refusal::new(kind, format!("`{field}` must be an integer (ms)")))
}

/// The payload of a `broadcast` command.
pub fn parse_broadcast(payload: &serde_json::Value) -> Result<Broadcast, Refusal> {
    const KIND: &str = "broadcast";
    let map = object(KIND, payload, &["text", "sent_at_ms", "scope"])?;
    let text = string(KIND, map, "text")?;
    let chars = text.chars().count();
    if chars == 0 || chars > BROADCAST_TEXT_CHARS_MAX {
        return Err(Refusal::new(
            KIND,
            format!("`text` must have 1 to {BROADCAST_TEXT_CHARS_MAX} characters, not {chars}"),
        ));
    }
    let scope = string(KIND, map, "scope")?;
    if scope.chars().count() > BROADCAST_SCOPE_CHARS_MAX {
        return Err(Refusal::new(
            KIND,
            format!("`scope` must have at most {BROADCAST_SCOPE_CHARS_MAX} characters"),
        ));
    }
    Ok(Broadcast {
        text: text.to_owned(),
        sent_at_ms: integer(KIND, map, "sent_at_ms")?,
        scope: scope.to_owned(),
    })
}

/// The payload of an `archive` command.
pub fn parse_archive(payload: &serde_json::Value) -> Result<ArchiveRequest, Refusal> {
    const KIND: &str = "archive";
    let map = object(
        KIND,
        payload,
        &["request", "from_ms", "to_ms", "archive_key"],
    )?;
    let mut request = [0u8; 16];
    hex::decode_to_slice(string(KIND, map, "request")?, &mut request)
        .map_err(|_| Refusal::new(KIND, "`request` must be 32 hex digits"))?;
    let from_ms = integer(KIND, map, "from_ms")?;
    let to_ms = integer(KIND, map, "to_ms")?;
    if from_ms >= to_ms {
        return Err(Refusal::new(
            KIND,
            "`from_ms` must be before `to_ms` (the range is [from_ms, to_ms))",
        ));
    }
    let archive_key = IdentityPublic::from_hex(string(KIND, map, "archive_key")?)
        .map_err(|_| Refusal::new(KIND, "`archive_key` must be 64 hex digits (X25519)"))?;
    if archive_key.0 == [0u8; 32] {
        return Err(Refusal::new(KIND, "`archive_key` is the all-zero key"));
    }
    Ok(ArchiveRequest {
        request,
        from_ms,
        to_ms,
        archive_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn incoming(kind: &str, payload: serde_json::Value) -> Incoming {
        Incoming {
            id: 7,
            kind: kind.into(),
            payload,
        }
    }

    /// `expected`: `Ok(())` when the payload parses, else the receipt.
    fn check(kind: &str, payload: serde_json::Value, expected: Result<(), serde_json::Value>) {
        let got = parse(&incoming(kind, payload.clone()))
            .map(|_| ())
            .map_err(|r| r.receipt());
        assert_eq!(got, expected, "{kind} {payload}");
    }

    const KEY: &str = "0900000000000000000000000000000000000000000000000000000000000000";
    const REQUEST: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn broadcast_payloads() {
        check(
            "broadcast",
            json!({ "text": "Serverwartung heute 18 Uhr", "sent_at_ms": 5, "scope": "all" }),
            Ok(()),
        );
        // 4000 characters (umlauts are two bytes each, still one character).
        check(
            "broadcast",
            json!({ "text": "ä".repeat(4000), "sent_at_ms": 5, "scope": "all" }),
            Ok(()),
        );
        let refused = |reason: &str| Err(json!({ "applied": false, "reason": reason }));
        check(
            "broadcast",
            json!({ "text": "ä".repeat(4001), "sent_at_ms": 5, "scope": "all" }),
            refused("`text` must have 1 to 4000 characters, not 4001"),
        );
        check(
            "broadcast",
            json!({ "text": "", "sent_at_ms": 5, "scope": "all" }),
            refused("`text` must have 1 to 4000 characters, not 0"),
        );
        check(
            "broadcast",
            json!({ "text": 3, "sent_at_ms": 5, "scope": "all" }),
            refused("`text` must be a string"),
        );
        check(
            "broadcast",
            json!({ "text": "x", "sent_at_ms": "5", "scope": "all" }),
            refused("`sent_at_ms` must be an integer (ms)"),
        );
        check(
            "broadcast",
            json!({ "text": "x", "sent_at_ms": 5 }),
            refused("`scope` must be a string"),
        );
        check(
            "broadcast",
            json!({ "text": "x", "sent_at_ms": 5, "scope": "all", "from": "ceo" }),
            refused("unknown field \"from\""),
        );
        check(
            "broadcast",
            json!(["x"]),
            refused("the payload is not a JSON object"),
        );
    }

    #[test]
    fn archive_payloads() {
        let ok = json!({ "request": REQUEST, "from_ms": 10, "to_ms": 20, "archive_key": KEY });
        check("archive", ok.clone(), Ok(()));
        let Ok(Command::Archive(request)) = parse(&incoming("archive", ok)) else {
            panic!("parses")
        };
        assert_eq!(hex::encode(request.request), REQUEST);
        assert_eq!((request.from_ms, request.to_ms), (10, 20));
        assert_eq!(request.archive_key.to_hex(), KEY);

        let refused = |reason: &str| Err(json!({ "archived": false, "reason": reason }));
        check(
            "archive",
            json!({ "request": "0011", "from_ms": 10, "to_ms": 20, "archive_key": KEY }),
            refused("`request` must be 32 hex digits"),
        );
        check(
            "archive",
            json!({ "request": REQUEST.replace('0', "g"), "from_ms": 10, "to_ms": 20, "archive_key": KEY }),
            refused("`request` must be 32 hex digits"),
        );
        for (from, to) in [(20, 20), (21, 20)] {
            check(
                "archive",
                json!({ "request": REQUEST, "from_ms": from, "to_ms": to, "archive_key": KEY }),
                refused("`from_ms` must be before `to_ms` (the range is [from_ms, to_ms))"),
            );
        }
        check(
            "archive",
            json!({ "request": REQUEST, "from_ms": 10, "to_ms": 20, "archive_key": &KEY[2..] }),
            refused("`archive_key` must be 64 hex digits (X25519)"),
        );
        check(
            "archive",
            json!({ "request": REQUEST, "from_ms": 10, "to_ms": 20, "archive_key": "0".repeat(64) }),
            refused("`archive_key` is the all-zero key"),
        );
        check(
            "archive",
            json!({ "request": REQUEST, "from_ms": 1.5, "to_ms": 20, "archive_key": KEY }),
            refused("`from_ms` must be an integer (ms)"),
        );
    }

    #[test]
    fn unknown_kinds_are_refused_and_commands_read_from_the_relay() {
        check(
            "reboot",
            json!({}),
            Err(json!({ "applied": false, "reason": "unknown command" })),
        );
        check("wipe", json!({ "reason": "admin" }), Ok(()));
        check("policy", json!({ "allow_copy_paste": false }), Ok(()));
        assert_eq!(
            Incoming::from_json(
                &json!({ "id": 3, "kind": "wipe", "payload": null, "created_at_ms": 1 })
            ),
            Some(incoming("wipe", serde_json::Value::Null)).map(|i| Incoming { id: 3, ..i })
        );
        assert_eq!(Incoming::from_json(&json!({ "kind": "wipe" })), None);
    }
}
