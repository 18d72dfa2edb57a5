#!/usr/bin/env python3
"""A second implementation of Kontor protocol v1, written from
shared/design/protocol.md, on Python's `cryptography` package (OpenSSL).

It checks vector files in protocol.md's format: every valid case must seal
byte for byte and open; every invalid case must fail at the named step.

Usage: python3 tests/interop/protocol_v1.py FILE...
Prints one line per failure and a last line `N passed, M failed`; exits 1
on any failure and 2 when a file cannot be read.
"""

import hashlib
import hmac
import json
import struct
import sys

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class StepError(Exception):
    """Opening failed at a named step of protocol.md."""

    def __init__(self, step):
        super().__init__(step)
        self.step = step


def cbc_encrypt(key, iv, data):
    padder = padding.PKCS7(128).padder()
    padded = padder.update(data) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(padded) + enc.finalize()


def cbc_decrypt(key, iv, data, step):
    if len(data) == 0 or len(data) % 16:
        raise StepError(step)
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = dec.update(data) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise StepError(step) from None


def mac(key, *parts):
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def x25519(private, public):
    # The `cryptography` package refuses an all-zero result itself; protocol
    # v1 calls that step `low_order` either way.
    try:
        out = X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        raise StepError("low_order") from None
    if out == bytes(32):
        raise StepError("low_order")
    return out


def public_of(private):
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def hkdf64(salt, ikm, info):
    return HKDF(algorithm=hashes.SHA256(), length=64, salt=salt, info=info).derive(ikm)


def body(ck, iv, message_id, sender_device, plaintext, label=b"kontor-v1-body"):
    ct = cbc_encrypt(ck[:32], iv, plaintext)
    return iv + ct + mac(ck[32:], label + message_id + sender_device, iv, ct)


def seal_for(case, recipient, body_bytes):
    message_id = bytes.fromhex(case["message_id"])
    sender_device = bytes.fromhex(case["sender_device_id"])
    sender_private = bytes.fromhex(case["sender_identity_private"])
    e_private = bytes.fromhex(case["ephemeral_private"])
    ck = bytes.fromhex(case["content_key"])
    rcpt_public = bytes.fromhex(recipient["identity_public"])
    header = (b"\x01" + message_id + sender_device + public_of(sender_private)
              + bytes.fromhex(recipient["device_id"]) + rcpt_public + public_of(e_private))
    assert len(header) == 145
    dh1 = x25519(e_private, rcpt_public)
    dh2 = x25519(sender_private, rcpt_public)
    okm = hkdf64(public_of(e_private), dh1 + dh2, b"kontor-v1-wrap" + header)
    wrap_iv = bytes.fromhex(recipient["wrap_iv"])
    wrap_ct = cbc_encrypt(okm[:32], wrap_iv, ck + hashlib.sha256(body_bytes).digest())
    wrap = wrap_iv + wrap_ct + mac(okm[32:], header, wrap_iv, wrap_ct)
    assert len(wrap) == 160
    return header + wrap + struct.pack(">I", len(body_bytes)) + body_bytes


def open_sealed(sealed, recipient_private, expected_sender_public):
    if len(sealed) < 1 or sealed[0] != 0x01:
        raise StepError("version")
    if len(sealed) < 145 + 160 + 4:
        raise StepError("length")
    header, wrap, rest = sealed[:145], sealed[145:305], sealed[305:]
    (length,) = struct.unpack(">I", rest[:4])
    body_bytes = rest[4:]
    if length != len(body_bytes) or len(body_bytes) < 64:
        raise StepError("length")
    message_id, sender_device = header[1:17], header[17:33]
    sender_public, rcpt_public, e_public = header[33:65], header[81:113], header[113:145]
    if not hmac.compare_digest(rcpt_public, public_of(recipient_private)):
        raise StepError("recipient")
    if not hmac.compare_digest(sender_public, expected_sender_public):
        raise StepError("sender_key")
    dh1 = x25519(recipient_private, e_public)
    dh2 = x25519(recipient_private, sender_public)
    okm = hkdf64(e_public, dh1 + dh2, b"kontor-v1-wrap" + header)
    wrap_iv, wrap_ct, wrap_mac = wrap[:16], wrap[16:128], wrap[128:]
    if not hmac.compare_digest(mac(okm[32:], header, wrap_iv, wrap_ct), wrap_mac):
        raise StepError("wrap_mac")
    wrapped = cbc_decrypt(okm[:32], wrap_iv, wrap_ct, "wrap_padding")
    if len(wrapped) != 96:
        raise StepError("wrap_padding")
    ck, body_hash = wrapped[:64], wrapped[64:]
    if not hmac.compare_digest(hashlib.sha256(body_bytes).digest(), body_hash):
        raise StepError("body_hash")
    iv, ct, body_mac = body_bytes[:16], body_bytes[16:-32], body_bytes[-32:]
    if not hmac.compare_digest(mac(ck[32:], b"kontor-v1-body" + message_id + sender_device, iv, ct), body_mac):
        raise StepError("body_mac")
    return cbc_decrypt(ck[:32], iv, ct, "body_padding")


def wrap_store_key(pin, store_key, salt, iv, log2_n, r, p):
    pin_key = hashlib.scrypt(pin.encode(), salt=salt, n=1 << log2_n, r=r, p=p, dklen=64, maxmem=(1 << 31) - 1)
    head = b"KTRK" + bytes([1, log2_n]) + struct.pack(">II", r, p) + salt + iv + cbc_encrypt(pin_key[:32], iv, store_key)
    return head + mac(pin_key[32:], head)


def open_key_file(pin, data):
    if len(data) < 14 or data[:4] != b"KTRK":
        raise StepError("format")
    if data[4] != 1:
        raise StepError("version")
    if len(data) != 4 + 1 + 1 + 4 + 4 + 16 + 16 + 48 + 32:
        raise StepError("format")
    log2_n = data[5]
    r, p = struct.unpack(">II", data[6:14])
    if not (1 <= log2_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16 and (128 * r << log2_n) <= 1 << 30):
        raise StepError("format")
    salt, iv, ct, tag = data[14:30], data[30:46], data[46:94], data[94:]
    pin_key = hashlib.scrypt(pin.encode(), salt=salt, n=1 << log2_n, r=r, p=p, dklen=64, maxmem=(1 << 31) - 1)
    if not hmac.compare_digest(mac(pin_key[32:], data[:94]), tag):
        raise StepError("pin")
    key = cbc_decrypt(pin_key[:32], iv, ct, "format")
    if len(key) != 32:
        raise StepError("format")
    return key


def check_envelope(doc):
    results = []
    for case in doc["valid"]:
        try:
            plaintext = bytes.fromhex(case["plaintext"])
            sender_private = bytes.fromhex(case["sender_identity_private"])
            assert public_of(sender_private).hex() == case["sender_identity_public"], "sender public key"
            b = body(bytes.fromhex(case["content_key"]), bytes.fromhex(case["body_iv"]),
                     bytes.fromhex(case["message_id"]), bytes.fromhex(case["sender_device_id"]), plaintext)
            for i, rcpt in enumerate(case["recipients"]):
                sealed = seal_for(case, rcpt, b)
                assert sealed.hex() == rcpt["sealed"], f"recipient {i}: sealed differs"
                opened = open_sealed(sealed, bytes.fromhex(rcpt["identity_private"]), public_of(sender_private))
                assert opened == plaintext, f"recipient {i}: plaintext differs"
            results.append((case["name"], None))
        except (AssertionError, StepError) as e:
            results.append((case["name"], str(e)))
    for case in doc["invalid"]:
        try:
            open_sealed(bytes.fromhex(case["sealed"]), bytes.fromhex(case["recipient_identity_private"]),
                        bytes.fromhex(case["sender_identity_public"]))
            results.append((case["name"], f"opened, expected {case['error']}"))
        except StepError as e:
            results.append((case["name"], None if e.step == case["error"] else f"step {e.step}, expected {case['error']}"))
    return results


def check_store(doc):
    results = []
    for case in doc["valid"]:
        h = bytes.fromhex
        made = wrap_store_key(case["pin"], h(case["store_key"]), h(case["salt"]), h(case["iv"]), case["log2_n"], case["r"], case["p"])
        if made.hex() != case["key_file"]:
            results.append((case["name"], "key_file differs"))
            continue
        try:
            key = open_key_file(case["pin"], made)
            results.append((case["name"], None if key.hex() == case["store_key"] else "store_key differs"))
        except StepError as e:
            results.append((case["name"], f"failed at {e.step}"))
    for case in doc["invalid"]:
        try:
            open_key_file(case["pin"], bytes.fromhex(case["key_file"]))
            results.append((case["name"], f"opened, expected {case['error']}"))
        except StepError as e:
            results.append((case["name"], None if e.step == case["error"] else f"step {e.step}, expected {case['error']}"))
    return results


def main(paths):
    if not paths:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    results = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            print(f"cannot read {path}: {e}", file=sys.stderr)
            return 2
        if doc.get("protocol") == "kontor-envelope-v1":
            results += check_envelope(doc)
        elif doc.get("protocol") == "kontor-store-v1":
            results += check_store(doc)
        else:
            print(f"{path}: unknown protocol {doc.get('protocol')!r}", file=sys.stderr)
            return 2
    failed = [(n, why) for n, why in results if why]
    for name, why in failed:
        print(f"FAILED {name}: {why}")
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
