#!/usr/bin/env bash
# API fuzzing: schemathesis against the admin API and the EMM API of a
# running `kontor serve`, from their OpenAPI documents. Fails on any 5xx,
# any undocumented status code and any answer that breaks the schema.
#
# Usage: scripts/api_fuzz.sh [KONTOR_BINARY] [EXAMPLES_PER_OPERATION]
# Needs: schemathesis (pip install schemathesis), curl.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/kontor}
examples=${2:-25}
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
admin_port=$(port)
password='api fuzzing owner password'
KONTOR_ADMIN_PASSWORD="$password" "$bin" admin create-owner --data-dir "$work/data" --login owner --org-id acme >/dev/null 2>&1 \
    || { mkdir -p "$work/data"; KONTOR_ADMIN_PASSWORD="$password" "$bin" admin create-owner --data-dir "$work/data" --login owner --org-id acme >/dev/null; }
"$bin" serve --data-dir "$work/data" --org-id acme \
    --device-listen "127.0.0.1:$(port)" --enroll-listen "127.0.0.1:$(port)" \
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
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
status=0
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
