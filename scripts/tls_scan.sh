#!/usr/bin/env bash
# TLS scan of every HTTPS listener of a running `kontor serve` with
# testssl.sh (Debian's 3.0 line: findings, no grade). Fails on any finding
# rated MEDIUM or worse, on any protocol besides TLS 1.2 and 1.3, and on a
# missing or short HSTS header (checked separately: testssl does not count
# it).
#
# Usage: scripts/tls_scan.sh [KONTOR_BINARY]
# Needs: testssl (apt-get install testssl.sh), curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/kontor}
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
device=$(port); enroll=$(port); admin=$(port)
"$bin" serve --data-dir "$work/data" --device-listen "127.0.0.1:$device" \
    --enroll-listen "127.0.0.1:$enroll" --admin-listen "127.0.0.1:$admin" \
    >"$work/serve.out" 2>"$work/serve.log" &
server=$!
for _ in $(seq 50); do grep -q "root CA" "$work/serve.out" 2>/dev/null && break; sleep 0.2; done
ca="$work/data/root.pem"
status=0
for listener in "device:$device" "enrollment:$enroll" "admin:$admin"; do
    name=${listener%%:*}; p=${listener#*:}
    echo "== testssl: $name listener (127.0.0.1:$p)"
    testssl --quiet --color 0 --warnings off --add-ca "$ca" --fast \
        --jsonfile-pretty "$work/$name.json" "127.0.0.1:$p" >"$work/$name.txt" 2>&1 || true
    python3 - "$work/$name.json" "$name" <<'PY' || status=1
import json, sys
doc = json.load(open(sys.argv[1]))
bad = []
allowed = {"TLS1_2", "TLS1_3"}
for scan in doc.get("scanResult", []):
    for section, items in scan.items():
        if not isinstance(items, list):
            continue
        for f in items:
            if not isinstance(f, dict):
                continue
            sev, fid, finding = f.get("severity", ""), f.get("id", ""), f.get("finding", "")
            if sev in ("MEDIUM", "HIGH", "CRITICAL"):
                bad.append(f"{sev} {fid}: {finding}")
            if fid in ("SSLv2", "SSLv3", "TLS1", "TLS1_1") and "not offered" not in finding:
                bad.append(f"protocol {fid} offered: {finding}")
            if fid in allowed and fid == "TLS1_3" and "offered" not in finding:
                bad.append(f"TLS 1.3 not offered: {finding}")
for b in bad:
    print(f"  {sys.argv[2]}: {b}")
print(f"  {sys.argv[2]}: {'FAILED' if bad else 'no finding rated medium or worse; TLS 1.2 and 1.3 only'}")
sys.exit(1 if bad else 0)
PY
done
# HSTS, separately: at least a year, on an answer of each listener that
# answers without a client certificate.
for p in "$enroll" "$admin"; do
    hsts=$(curl -s -o /dev/null -D - --cacert "$ca" "https://localhost:$p/v1/openapi.json" "https://localhost:$p/pki/root.pem" \
        | tr -d '\r' | grep -i '^strict-transport-security:' | head -1 || true)
    age=$(sed -n 's/.*max-age=\([0-9]*\).*/\1/p' <<<"$hsts")
    if [ -z "$age" ] || [ "$age" -lt 31536000 ]; then
        echo "  HSTS missing or shorter than a year on 127.0.0.1:$p: '$hsts'"; status=1
    else
        echo "  HSTS on 127.0.0.1:$p: max-age=$age"
    fi
done
exit $status
