#!/usr/bin/env bash
# Enrolls one device with a running `kontor serve`, the way a device does,
# with openssl and curl: an enrollment token from the enrollment API's
# admin route (the server's --admin-key), a P-256 key and a CSR, then
# POST /v1/enroll. Writes OUT_DIR/chain.pem (the device certificate, then
# its issuing CA), OUT_DIR/key.pem (the key, PKCS#8, unencrypted) and
# OUT_DIR/device_id; prints the device id. For the scan and fuzzing
# scripts, which need a client certificate for the device API.
#
# Usage: scripts/enroll_device.sh ENROLL_BASE_URL ROOT_CA_PEM ADMIN_KEY USER OUT_DIR
# Needs: openssl, curl, python3.
set -euo pipefail
base=$1 ca=$2 admin_key=$3 user=$4 out=$5
mkdir -p "$out"
json() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
token=$(curl -sf --cacert "$ca" -H "authorization: Bearer $admin_key" -H 'content-type: application/json' \
    -d "{\"binding\":\"user\",\"bound_to\":\"$user\",\"lifetime_seconds\":600}" "$base/v1/admin/tokens" | json token)
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$out/key.pem" -subj "/CN=kontor device" -out "$out/csr.pem" 2>/dev/null
chmod 600 "$out/key.pem"
request=$(python3 - "$token" "$out/csr.pem" "$(openssl rand -hex 32)" <<'PY'
import json, sys
token, csr, identity = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3]
print(json.dumps({"token": token, "csr": csr, "identity_key": identity,
                  "platform": "linux", "device_name": "scan device"}))
PY
)
answer=$(curl -sf --cacert "$ca" -H 'content-type: application/json' -d "$request" "$base/v1/enroll")
json chain <<<"$answer" >"$out/chain.pem"
json device_id <<<"$answer" | tee "$out/device_id"
