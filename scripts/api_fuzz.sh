#!/usr/bin/env bash
# API fuzzing: schemathesis against the admin API, the EMM API and the
# relay's device API of a running `kontor serve`, from their OpenAPI
# documents. Fails on any 5xx, any undocumented status code or content
# type and any answer that breaks the schema.
#
# The device API takes mutual TLS only: a device is enrolled first
# (scripts/enroll_device.sh: token, CSR, POST /v1/enroll) and schemathesis
# presents its certificate (--request-cert, --request-cert-key).
#
# The device API runs on SQLite and, when KONTOR_TEST_POSTGRES_URL and
# KONTOR_TEST_NATS_URL are set (CI sets them), once more on PostgreSQL +
# NATS, in a deployment of its own whose schemas are dropped afterwards
# (with psql, where installed).
#
# Usage: scripts/api_fuzz.sh [KONTOR_BINARY] [EXAMPLES_PER_OPERATION]
# Needs: schemathesis (pip install schemathesis), curl, openssl.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/kontor}
examples=${2:-25}
work=$(mktemp -d)
trap 'kill "$server" ${pg_server:-} 2>/dev/null || true; rm -rf "$work"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
admin_port=$(port); device_port=$(port); enroll_port=$(port)
admin_key=$(openssl rand -hex 16)
password='api fuzzing owner password'
KONTOR_ADMIN_PASSWORD="$password" "$bin" admin create-owner --data-dir "$work/data" --login owner --org-id acme >/dev/null 2>&1 \
    || { mkdir -p "$work/data"; KONTOR_ADMIN_PASSWORD="$password" "$bin" admin create-owner --data-dir "$work/data" --login owner --org-id acme >/dev/null; }
KONTOR_ADMIN_KEY="$admin_key" "$bin" serve --data-dir "$work/data" --org-id acme \
    --device-listen "127.0.0.1:$device_port" --enroll-listen "127.0.0.1:$enroll_port" \
    --admin-listen "127.0.0.1:$admin_port" >"$work/serve.out" 2>"$work/serve.log" &
server=$!
for _ in $(seq 50); do grep -q "root CA" "$work/serve.out" 2>/dev/null && break; sleep 0.2; done
base="https://localhost:$admin_port"
ca="$work/data/root.pem"
login=$(curl -sf --cacert "$ca" -c "$work/jar" -H 'content-type: application/json' \
    -d "{\"login\":\"owner\",\"password\":\"$password\"}" "$base/v1/session")
csrf=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["csrf_token"])' <<<"$login")
key_for() { # role -> API key of a new account with that role
    local account
    account=$(curl -sf --cacert "$ca" -b "$work/jar" -H "x-csrf-token: $csrf" -H 'content-type: application/json' \
        -d "{\"login\":\"fuzz-$1\",\"password\":\"$password\",\"role\":\"$1\"}" "$base/v1/accounts" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    curl -sf --cacert "$ca" -b "$work/jar" -H "x-csrf-token: $csrf" -H 'content-type: application/json' \
        -d "{\"account\":\"$account\",\"label\":\"fuzz\"}" "$base/v1/api-keys" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}
owner_key=$(key_for owner)
emm_key=$(key_for emm)
# A device, for the device API.
scripts/enroll_device.sh "https://localhost:$enroll_port" "$ca" "$admin_key" fuzz@acme.example "$work/device" >/dev/null
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
status=0
# The device API first: the admin API's bulk operations (POST
# /v1/users/bulk with a filter) block, wipe or move every user the filter
# matches, and schemathesis blocked the device's user that way.
fuzz_device() { # device port, root CA, device dir, label
    echo "== schemathesis: relay/openapi.json on $4 (mutual TLS, an enrolled device)"
    SCHEMATHESIS_HOOKS=scripts/schemathesis_hooks.py st run relay/openapi.json \
        --url "https://localhost:$1" --tls-verify "$2" \
        --request-cert "$3/chain.pem" --request-cert-key "$3/key.pem" \
        --checks "$checks" --max-examples "$examples" --seed 20261129 --no-color || status=1
}
fuzz_device "$device_port" "$ca" "$work/device" SQLite
# The relay's PostgreSQL store refuses what SQLite takes (NUL in text was
# a 500 there): the device API again in the scale-out mode, where CI's
# services are configured.
if [ -n "${KONTOR_TEST_POSTGRES_URL:-}" ] && [ -n "${KONTOR_TEST_NATS_URL:-}" ]; then
    deployment="apifuzz$(openssl rand -hex 4)"
    pg_device=$(port); pg_enroll=$(port)
    KONTOR_ADMIN_KEY="$admin_key" "$bin" serve --data-dir "$work/pgdata" \
        --postgres "$KONTOR_TEST_POSTGRES_URL" --nats "$KONTOR_TEST_NATS_URL" --deployment "$deployment" \
        --device-listen "127.0.0.1:$pg_device" --enroll-listen "127.0.0.1:$pg_enroll" \
        --admin-listen "127.0.0.1:$(port)" >"$work/pgserve.out" 2>"$work/pgserve.log" &
    pg_server=$!
    for _ in $(seq 100); do grep -q "root CA" "$work/pgserve.out" 2>/dev/null && break; sleep 0.2; done
    scripts/enroll_device.sh "https://localhost:$pg_enroll" "$work/pgdata/root.pem" "$admin_key" \
        fuzz@acme.example "$work/pgdevice" >/dev/null
    fuzz_device "$pg_device" "$work/pgdata/root.pem" "$work/pgdevice" "PostgreSQL + NATS"
    kill "$pg_server"; wait "$pg_server" 2>/dev/null || true
    if grep -q " ERROR " "$work/pgserve.log"; then
        echo "the PostgreSQL server logged errors during fuzzing:"; grep " ERROR " "$work/pgserve.log" | head -20; status=1
    fi
    if command -v psql >/dev/null 2>&1; then
        PGOPTIONS=--client-min-messages=warning psql -q "$KONTOR_TEST_POSTGRES_URL" -c "DROP SCHEMA IF EXISTS ${deployment}_provisioning, ${deployment}_relay CASCADE" || true
    fi
else
    echo "== the device API on PostgreSQL + NATS: skipped (KONTOR_TEST_POSTGRES_URL, KONTOR_TEST_NATS_URL unset)"
fi
for spec in "admin/openapi.json:$owner_key" "mdm-connector/openapi.json:$emm_key"; do
    doc=${spec%%:*}
    key=${spec#*:}
    echo "== schemathesis: $doc"
    st run "$doc" --url "$base" --tls-verify "$ca" -H "Authorization: Bearer $key" \
        --checks "$checks" --max-examples "$examples" --seed 20261129 --no-color || status=1
done
if grep -q " ERROR " "$work/serve.log"; then
    echo "the server logged errors during fuzzing:"; grep " ERROR " "$work/serve.log" | head -20; status=1
fi
exit $status
