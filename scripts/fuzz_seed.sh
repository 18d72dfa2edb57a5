#!/usr/bin/env bash
# Writes the fuzz targets' seed corpora into fuzz/corpus/<target>/, the same
# bytes on every machine: the golden files in fixtures/, the protocol
# vectors, small hand-made inputs (below) and the inputs of past findings
# (fixtures/fuzz-regressions/). The three X.509 seeds (a CSR,
# a CSR with requested extensions, a self-signed device-like certificate)
# were made once with openssl 3.0 and are embedded here, because ECDSA
# signatures are not reproducible. Run from anywhere; needs python3.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 - <<'PY'
import base64, hashlib, json, os, plistlib, shutil, struct
from pathlib import Path

root = Path("fuzz/corpus")
if root.exists():
    shutil.rmtree(root)

def put(target, data, name=None):
    if isinstance(data, str):
        data = data.encode()
    d = root / target
    d.mkdir(parents=True, exist_ok=True)
    # Named by content, like libFuzzer's own corpus files.
    (d / (name or hashlib.sha1(data).hexdigest())).write_bytes(data)

def files(*globs):
    out = []
    for g in globs:
        out += sorted(Path(".").glob(g))
    return [p for p in out if p.is_file()]

vectors = json.loads(Path("fixtures/vectors/envelope-v1.json").read_text())
store = json.loads(Path("fixtures/vectors/store-v1.json").read_text())
sealed = [bytes.fromhex(r["sealed"]) for v in vectors["valid"] for r in v["recipients"]]
sealed += [bytes.fromhex(v["sealed"]) for v in vectors["invalid"]]

# crypto_open: mode byte, then input (see fuzz_targets/crypto_open.rs).
for s in sealed:
    put("crypto_open", b"\x00" + s)
    put("crypto_open", b"\x01" + s[309:])  # a body is shaped like a blob
for text in [b"", b"hello", b'{"kind":"text","conversation":{"user":"anna@example.org"},"text":"Hallo","sent_at_ms":1}']:
    put("crypto_open", b"\x02" + text)
    put("crypto_open", b"\x03\x00\x90\x01" + text)
put("crypto_open", b"\x04" + json.dumps({
    "v": 1, "request": "ab" * 16, "user": "anna@example.org", "device": "11" * 16,
    "from_ms": 0, "to_ms": 10, "exported_at_ms": 11,
    "messages": [{"conversation": "user:ben@example.org", "from": "ben@example.org",
                  "sent_at_ms": 5, "kind": "text", "text": "Treffen um 10 Uhr", "attachment": None}],
}, separators=(",", ":")).encode())

# key_file: u8 len || key file || u8 row id len || row id || record.
for v in store["valid"] + store["invalid"]:
    kf = bytes.fromhex(v["key_file"])
    put("key_file", bytes([len(kf)]) + kf)
for r in store["records"]:
    row = bytes.fromhex(r["row_id"])
    put("key_file", b"\x00" + bytes([len(row)]) + row + bytes.fromhex(r["record"]))
# A cheap key file (log2 N = 2, r = 1, p = 1) so the unlock path is reached.
kf = bytes.fromhex(store["valid"][0]["key_file"])
put("key_file", bytes([len(kf)]) + kf[:5] + b"\x02" + struct.pack(">II", 1, 1) + kf[14:])

# managed_config_plist: XML plists from the fixtures, and each also binary.
for p in files("fixtures/managed-config/apple/*.plist", "fixtures/mdm-connector/apple/*.plist",
               "fixtures/mdm-connector/apple/declarations/*.plist"):
    data = p.read_bytes()
    put("managed_config_plist", data)
    try:
        put("managed_config_plist", plistlib.dumps(plistlib.loads(data), fmt=plistlib.FMT_BINARY, sort_keys=True))
    except Exception:
        pass

# managed_config_json: bundles, AMAPI policies, policy files.
for p in files("fixtures/managed-config/android/bundle.json", "fixtures/managed-config/amapi/*.json",
               "fixtures/managed-config/policy.toml", "fixtures/mdm-connector/android/application*.json"):
    put("managed_config_json", p.read_bytes())

# enrollment: 0 DER, 1 enrollment request JSON, 2 renewal PEMs, 3 text.
X509 = {
    "csr": "MIHhMIGJAgEAMCcxFDASBgNVBAoMC0V4YW1wbGUgT3JnMQ8wDQYDVQQDDAZkZXZpY2UwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAS1pTcER3dpqGuU4hX6X/vDhkuscNJIpegsRDno8pMQZugozAXWg6ahr0vO+asXwEJY0d5RwxHLCp1lxZpuIMbooAAwCgYIKoZIzj0EAwIDRwAwRAIgDyocWNvsNrdJfyOgXGYnIMyTG0qg/yPKTw/S0eVSmwECIDvsqDkbcIx/XvEvWWHxbk8O/jGYLtru90964oJ7X813",
    "csr_ext": "MIIBPzCB5QIBADARMQ8wDQYDVQQDDAZkZXZpY2UwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAS1pTcER3dpqGuU4hX6X/vDhkuscNJIpegsRDno8pMQZugozAXWg6ahr0vO+asXwEJY0d5RwxHLCp1lxZpuIMbooHIwcAYJKoZIhvcNAQkOMWMwYTA9BgNVHREENjA0hjJ1cm46a29udG9yOmRldmljZTowMDAxMDIwMzA0MDUwNjA3MDgwOTBhMGIwYzBkMGUwZjALBgNVHQ8EBAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUHAwIwCgYIKoZIzj0EAwIDSQAwRgIhAMwgXjRtS8KOpxSnwUNkSqKUsbabQ4BzqHO/Y1HvWpljAiEAmo/6Y9sKRnCBMJmI3eULVWd/bL0mBrjBdNMampXPw6o=",
    "cert": "MIICdzCCAh6gAwIBAgIUAUKoiGrEZ/FiQf/hZefZ2hh9c/0wCgYIKoZIzj0EAwIwUzEUMBIGA1UECgwLRXhhbXBsZSBPcmcxOzA5BgNVBAMMMnVybjprb250b3I6ZGV2aWNlOjAwMDEwMjAzMDQwNTA2MDcwODA5MGEwYjBjMGQwZTBmMB4XDTI2MTEyOTA5MjUwOVoXDTI3MDIyNzA5MjUwOVowUzEUMBIGA1UECgwLRXhhbXBsZSBPcmcxOzA5BgNVBAMMMnVybjprb250b3I6ZGV2aWNlOjAwMDEwMjAzMDQwNTA2MDcwODA5MGEwYjBjMGQwZTBmMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEtaU3BEd3aahrlOIV+l/7w4ZLrHDSSKXoLEQ56PKTEGboKMwF1oOmoa9LzvmrF8BCWNHeUcMRywqdZcWabiDG6KOBzzCBzDAdBgNVHQ4EFgQUwkUYRw0NT+o3R7RpBkOjbZY5IvswHwYDVR0jBBgwFoAUwkUYRw0NT+o3R7RpBkOjbZY5IvswDwYDVR0TAQH/BAUwAwEB/zA9BgNVHREENjA0hjJ1cm46a29udG9yOmRldmljZTowMDAxMDIwMzA0MDUwNjA3MDgwOTBhMGIwYzBkMGUwZjA6BhRpg4PDidGe75qq/7P1xqrmpMelQgQiBCARERERERERERERERERERERERERERERERERERERERERETAKBggqhkjOPQQDAgNHADBEAiAusdYERS5lagTwgaTVExbn6OmQrfDXrPRweOExCs98ZAIgLeh0abLz6hKjBZBnExotqO6pefYgi3w8GZmb2GilUU0=",
}
def pem(label, b64):
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return "-----BEGIN %s-----\n%s\n-----END %s-----\n" % (label, "\n".join(lines), label)
token = "kt1_0123456789abcdef_" + "ab" * 32
for name, b64 in X509.items():
    put("enrollment", b"\x00" + base64.b64decode(b64))
for name in ["csr", "csr_ext"]:
    put("enrollment", b"\x01" + json.dumps({
        "token": token, "csr": pem("CERTIFICATE REQUEST", X509[name]), "identity_key": "11" * 32,
        "platform": "ios", "device_name": "Annas iPhone", "user": "anna@example.org",
    }).encode())
put("enrollment", b"\x02" + (pem("CERTIFICATE", X509["cert"]) + pem("CERTIFICATE REQUEST", X509["csr"])).encode())
for text in [token, "11" * 32, pem("CERTIFICATE REQUEST", X509["csr"])]:
    put("enrollment", b"\x03" + text.encode())

# mdm_apple: command results and webhooks, good and bad, and NanoMDM answers.
for p in files("fixtures/mdm-connector/results/apple/*", "fixtures/mdm-connector/results/apple/malformed/*"):
    put("mdm_apple", p.read_bytes())
put("mdm_apple", '{"status":{"99385AF6-44CB-5621-A678-A321F4D9A2C8":{"push_result":"5736F13F-E2A2-E8B9-E21C-3973BDAA4054"},'
                 '"E9085AF6-DCCB-5661-A678-BCE8F4D9A2C8":{"push_error":"no push info","command_error":""}},'
                 '"command_uuid":"9b7c63eb-14b4-4739-96b0-750a5c967371","request_type":"ProvisioningProfileList"}')
put("mdm_apple", '{"no_push":true,"command_uuid":"598544b5-b681-4ce2-8914-ba7f45ff5c02","request_type":"CertificateList"}')

# mdm_android: notifications, devices, operations, tokens, errors.
for p in files("fixtures/mdm-connector/results/android/*", "fixtures/mdm-connector/results/android/malformed/*",
               "fixtures/mdm-connector/android/enrollment_token.json"):
    put("mdm_android", p.read_bytes())
put("mdm_android", '{"name":"enterprises/LC00abc/enrollmentTokens/tok","value":"ABCDEFGHIJ","expirationTimestamp":"2026-12-01T00:00:00Z","policyName":"enterprises/LC00abc/policies/kontor","qrCode":"{}"}')
put("mdm_android", '{"error":{"code":403,"message":"The caller does not have permission","status":"PERMISSION_DENIED"}}')
put("mdm_android", "120")
put("mdm_android", "Sun, 06 Nov 1994 08:49:37 GMT")

# scim_body and scim_filter.
for p in files("fixtures/mdm-connector/scim/*.json", "fixtures/mdm-connector/scim/golden/*.json"):
    if p.name != "filters.json":
        put("scim_body", p.read_bytes())
for case in json.loads(Path("fixtures/mdm-connector/scim/filters.json").read_text()):
    put("scim_filter", case["filter"])
put("scim_filter", "1&10")

# relay_wire: posted envelopes, frames and a batch, from the vectors.
def envelope(group, blobs, deliveries, body):
    out = b"KENV\x01" + (b"\x01" + group if group else b"\x00")
    out += struct.pack(">H", len(blobs)) + b"".join(blobs)
    out += struct.pack(">H", len(deliveries)) + b"".join(deliveries)
    return out + struct.pack(">I", len(body)) + body
for v in vectors["valid"]:
    rs = [bytes.fromhex(r["sealed"]) for r in v["recipients"]]
    body = rs[0][309:]
    put("relay_wire", envelope(None, [], [s[:305] for s in rs], body))
    put("relay_wire", envelope(b"\x07" * 16, [b"\x08" * 16], [s[:305] for s in rs], body))
frames = [struct.pack(">QQ", i + 1, 1767225600000) + s for i, s in enumerate(sealed[:3])]
for f in frames:
    put("relay_wire", f)
put("relay_wire", struct.pack(">I", len(frames)) + b"".join(struct.pack(">I", len(f)) + f for f in frames))

# agent_command: one of each command, a list, a WebSocket frame.
commands = [
    {"id": 1, "kind": "wipe", "payload": {}},
    {"id": 2, "kind": "policy", "payload": {"allow_forwarding": False, "pin_min_length": 6}},
    {"id": 3, "kind": "broadcast", "payload": {"text": "Wartung heute Abend", "sent_at_ms": 1767225600000, "scope": "organisation"}},
    {"id": 4, "kind": "archive", "payload": {"request": "ab" * 16, "from_ms": 0, "to_ms": 10, "archive_key": "11" * 32}},
    {"id": 5, "kind": "unknown", "payload": None},
]
for c in commands:
    put("agent_command", json.dumps(c))
put("agent_command", json.dumps(commands))
put("agent_command", json.dumps({"command": commands[2]}))

# admin_input: the CSV import, then field / user id / department lines.
put("admin_input", "user_id,display_name,department\nanna@example.org,Anna Schmidt,hr\nbad id,Someone,\n"
                   "ben@example.org,Ben\nanna@example.org,Anna Again,\ncarl@example.org,Carl,\n")
for text in ["kak_0123456789abcdef_" + "cd" * 32, "2026-11-29T09:30:00.123Z\nanna@example.org",
             "@example.org\nanna@example.org\nhr", "department:hr\nanna@example.org\nhr",
             "anna@example.org\nanna@example.org", "organisation", "blocked"]:
    put("admin_input", text)

# Inputs a long run found (fixtures/fuzz-regressions/<target>-<what>.<ext>):
# every run, CI's brief one included, starts from them again.
for p in files("fixtures/fuzz-regressions/*"):
    target = p.name.split("-", 1)[0]
    assert (Path("fuzz/fuzz_targets") / (target + ".rs")).exists(), p
    put(target, p.read_bytes())

total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
count = sum(1 for f in root.rglob("*") if f.is_file())
print(f"fuzz_seed: {count} seeds, {total} bytes, in {root}/")
PY
