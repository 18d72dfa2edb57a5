#!/usr/bin/env python3
"""Writes admin/openapi.json, the admin API's OpenAPI 3.1 description.

The document is generated from the table below so every operation has the
same security, error answers and parameter style; the admin crate's tests
check that every route is documented and every documented route exists.
Run: python3 scripts/gen_admin_openapi.py
"""
import json, pathlib

ERR = {"$ref": "#/components/responses/Error"}
J = lambda schema: {"required": True, "content": {"application/json": {"schema": schema}}}
OBJ = {"type": "object"}

NAME = {"type": "string", "minLength": 1, "maxLength": 200,
        "pattern": "^[^\\s\\x00-\\x1f\\x7f-\\x9f](?:[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f])?$"}
USER = {"type": "string", "minLength": 3, "maxLength": 254, "pattern": "^[!-?A-~][!-?A-~]*@?[!-?A-~]*[!-?A-~]$"}
PARAMS = {
    "user": USER,
    "name": NAME,
    "scope": {"enum": ["org", "department", "group", "user"]},
    "entry": {"type": "string", "pattern": "^(@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+|department:[^\\s\\x00-\\x1f\\x7f]{1,200}|[!-?A-~]{3,254})$"},
    "device": {"type": "string", "pattern": "^[0-9a-fA-F]{32}$"},
    "account": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
    "key": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
    "archive": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
}

def op(summary, perm, body=None, ok="200", params=(), query=(), ok_content="application/json"):
    o = {
        "summary": summary,
        "description": f"Needs the permission `{perm}`." if perm else "Any signed-in admin.",
        "security": [{"session": [], "csrf": []}, {"apiKey": []}],
        "parameters": [{"name": p, "in": "path", "required": True, "schema": PARAMS.get(p, {"type": "string"})} for p in params]
                      + [{"name": q, "in": "query", "required": False, "schema": t if isinstance(t, dict) else {"type": t}} for q, t in query],
        "responses": {ok: {"description": "done"} if ok in ("204",) else {"description": "done", "content": {ok_content: {"schema": OBJ if ok_content == "application/json" else {"type": "string"}}}},
                      "400": ERR, "401": ERR, "403": ERR, "404": ERR, "409": ERR, "415": ERR, "429": ERR},
    }
    if body is not None:
        o["requestBody"] = body
    return o

bool_ = {"type": "boolean"}
str_ = {"type": "string"}
settings = {"type": "object", "additionalProperties": False, "properties": {
    "copy_paste": bool_, "forwarding": bool_, "screenshots": bool_,
    "attachments": {"type": "array", "items": {"enum": ["images", "videos", "audio", "files"]}}}}
filter_ = {"type": "object", "additionalProperties": False, "properties": {
    "department": str_, "status": {"enum": ["invited", "active", "blocked"]}, "platform": str_,
    "enrollment": {"enum": ["enrolled", "not_enrolled"]}, "inactive_days": {"type": "integer", "minimum": 1, "maximum": 3650},
    "active_days": {"type": "integer", "minimum": 1, "maximum": 3650}, "text": str_}}
DAYS = {"type": "integer", "minimum": 1, "maximum": 3650}
user_query = [("department", "string"), ("status", {"enum": ["invited", "active", "blocked"]}), ("platform", "string"),
              ("enrollment", {"enum": ["enrolled", "not_enrolled"]}),
              ("inactive_days", DAYS), ("active_days", DAYS), ("text", {"type": "string", "maxLength": 200})]

paths = {
  "/v1/openapi.json": {"get": {"summary": "This document", "security": [], "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": OBJ}}}}}},
  "/v1/session": {
    "post": {"summary": "Sign in; sets the __Host-kontor_session cookie and returns the CSRF token", "security": [],
             "requestBody": J({"type": "object", "required": ["login", "password"], "additionalProperties": False,
                               "properties": {"login": str_, "password": str_, "totp": str_}}),
             "responses": {"200": {"description": "signed in", "content": {"application/json": {"schema": OBJ}}}, "400": ERR, "401": ERR, "415": ERR, "429": ERR}},
    "get": op("The signed-in admin and the session's CSRF token", None),
    "delete": op("Sign out", None, ok="204")},
  "/v1/me/totp": {"post": op("Turn on TOTP for the signed-in admin; returns the secret once", None)},
  "/v1/accounts": {"get": op("Admin accounts of the organisation", "manage_admins"),
                   "post": op("Create an admin account", "manage_admins", J({"type": "object", "required": ["login", "password", "role"], "additionalProperties": False,
                               "properties": {"login": NAME, "password": {"type": "string", "minLength": 12, "maxLength": 128}, "role": {"enum": ["owner", "admin", "helpdesk", "auditor", "archivist", "emm"]}}}), ok="201")},
  "/v1/accounts/{account}/disable": {"post": op("Disable an account; its sessions and API keys end at once", "manage_admins", params=["account"], ok="204")},
  "/v1/api-keys": {"get": op("API keys (never their secrets)", "manage_admins"),
                   "post": op("Create an API key for an account; the key is shown once", "manage_admins", J({"type": "object", "required": ["account", "label"], "additionalProperties": False, "properties": {"account": PARAMS["account"], "label": NAME}}), ok="201")},
  "/v1/api-keys/{key}": {"delete": op("Revoke an API key", "manage_admins", params=["key"], ok="204")},
  "/v1/users": {"get": op("Users matching a filter", "read_directory", query=user_query),
                "post": op("Invite a user: enrollment token, managed configuration (iOS plist, Android JSON) and QR code", "invite",
                           J({"type": "object", "required": ["user_id"], "additionalProperties": False, "properties": {"user_id": USER, "display_name": NAME, "department": {"oneOf": [NAME, {"type": "null"}]}, "devices": {"type": "integer", "minimum": 1, "maximum": 10}}}), ok="201")},
  "/v1/users/import": {"post": op("Import users from CSV (user_id,display_name,department); a line-by-line report", "manage_policy",
                                  {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}, query=[("dry_run", "boolean")])},
  "/v1/users/bulk": {"post": op("Apply block, unblock, move, restrict, invite or wipe to a filtered set or a selection, with a dry run", "read_directory and the action's permission",
                                J({"type": "object", "required": ["operation"], "additionalProperties": False, "oneOf": [{"required": ["filter"], "not": {"required": ["users"]}}, {"required": ["users"], "not": {"required": ["filter"]}}], "properties": {
                                    "filter": filter_, "users": {"type": "array", "items": USER, "minItems": 1, "maxItems": 10000}, "dry_run": bool_,
                                    "operation": {"type": "object", "required": ["action"], "properties": {"action": {"enum": ["block", "unblock", "move", "restrict", "invite", "wipe"]}, "department": {"type": ["string", "null"]}, "settings": settings}}}}))},
  "/v1/users/{user}": {"get": op("A user: devices, status, activity, effective restrictions", "read_directory", params=["user"]),
                       "delete": op("Remove and erase a user (DSGVO Art. 17): certificates revoked, queues dropped, data erased; the audit trail keeps only the user's pseudonym", "remove_user", params=["user"], ok="204")},
  "/v1/users/{user}/export": {"get": op("Every personal datum held about a user (DSGVO Art. 15/20); audited", "remove_user", params=["user"])},
  "/v1/users/{user}/activity": {"get": op("Messages sent and received per day (counts only)", "read_directory", params=["user"])},
  "/v1/users/{user}/block": {"post": op("Block a user at once", "block", params=["user"], ok="204")},
  "/v1/users/{user}/unblock": {"post": op("Unblock a user", "block", params=["user"], ok="204")},
  "/v1/users/{user}/department": {"put": op("Move a user to a department (null: none)", "manage_policy", J({"type": "object", "required": ["department"], "additionalProperties": False, "properties": {"department": {"oneOf": [NAME, {"type": "null"}]}}}), params=["user"], ok="204")},
  "/v1/users/{user}/wipe": {"post": op("Wipe every device of a user", "wipe", params=["user"], ok="202")},
  "/v1/devices/{device}/wipe": {"post": op("Wipe a device (optionally revoking its certificate at once)", "wipe", params=["device"], ok="202")},
  "/v1/wipes": {"get": op("Wipes and their states: requested, delivered, confirmed", "wipe")},
  "/v1/departments": {"get": op("Departments and the barrier matrix", "read_directory")},
  "/v1/departments/{name}": {"put": op("Create or change a department (closed: a closed area)", "manage_policy", J({"type": "object", "required": ["closed"], "additionalProperties": False, "properties": {"closed": bool_}}), params=["name"], ok="204"),
                             "delete": op("Delete an empty department", "manage_policy", params=["name"], ok="204")},
  "/v1/barriers": {"put": op("Set what two departments may exchange", "manage_policy", J({"type": "object", "required": ["a", "b", "messages", "groups", "files"], "additionalProperties": False, "properties": {"a": {"oneOf": [NAME, {"const": ""}]}, "b": {"oneOf": [NAME, {"const": ""}]}, "messages": bool_, "groups": bool_, "files": bool_}}), ok="204")},
  "/v1/allow-list": {"get": op("The allow-list", "read_directory")},
  "/v1/allow-list/{entry}": {"put": op("Add an entry (user id, @domain or department:NAME)", "manage_policy", params=["entry"], ok="204"),
                             "delete": op("Remove an entry; open invitations no longer admitted are revoked", "manage_policy", params=["entry"], ok="204")},
  "/v1/restrictions": {"get": op("Restriction settings at every scope", "read_directory")},
  "/v1/restrictions/{scope}/{id}": {"put": op("Set restrictions for the organisation, a department, a group or a user; pushed to devices at once", "manage_policy", J(settings), params=["scope", "id"]),
                                    "delete": op("Clear restrictions at a scope", "manage_policy", params=["scope", "id"])},
  "/v1/broadcasts": {"post": op("Send an administration message to every device or a department", "broadcast", J({"type": "object", "required": ["text"], "additionalProperties": False, "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 4000, "pattern": "\\S"}, "department": {"oneOf": [NAME, {"type": "null"}]}}}), ok="202")},
  "/v1/audit": {"get": op("The audit trail, filtered (actor and target match a user id or its pseudonym); as JSON ({entries, names}: names resolves pseudonyms of users not erased), JSON lines (each with its names) or syslog (RFC 5424, pseudonyms only)", "read_audit",
                          query=[("actor", {"type": "string", "minLength": 1}), ("action", {"type": "string", "minLength": 1}), ("target", {"type": "string", "minLength": 1}), ("since", {"type": "string", "format": "date-time"}), ("until", {"type": "string", "format": "date-time"}), ("after_seq", {"type": "integer", "minimum": 0}), ("limit", {"type": "integer", "minimum": 1, "maximum": 10000}), ("format", {"enum": ["json", "jsonl", "syslog"]})])},
  "/v1/settings/archive-key": {"put": op("Set the organisation's archive public key (X25519, hex)", "manage_admins", J({"type": "object", "required": ["public_key"], "additionalProperties": False, "properties": {"public_key": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}}}), ok="204")},
  "/v1/archives": {"get": op("Archive requests", "archive"),
                   "post": op("Request an archive of users' chats for a time range", "archive", J({"type": "object", "required": ["users", "from_ms", "to_ms"], "additionalProperties": False, "properties": {"users": {"type": "array", "items": USER, "minItems": 1, "maxItems": 1000}, "from_ms": {"type": "integer", "minimum": 0}, "to_ms": {"type": "integer", "minimum": 1}}}), ok="202")},
  "/v1/archives/{archive}": {"get": op("An archive request: each device's state and the sealed parts", "archive", params=["archive"])},
  "/v1/archives/{archive}/parts/{part}": {"get": op("One sealed part, for kontor archive open (audited)", "archive", params=["archive", "part"], ok_content="application/octet-stream")},
}

doc = {
  "openapi": "3.1.0",
  "info": {"title": "Kontor admin API", "version": "1",
           "description": "Administration of a Kontor organisation. People sign in (POST /v1/session) and send the CSRF token in X-CSRF-Token on every state change; scripts use API keys (Authorization: Bearer kak_...). Every answer carries HSTS, CSP, X-Frame-Options and Referrer-Policy; every error is {error, message}."},
  "paths": paths,
  "components": {
    "securitySchemes": {
      "session": {"type": "apiKey", "in": "cookie", "name": "__Host-kontor_session"},
      "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
      "apiKey": {"type": "http", "scheme": "bearer", "description": "kak_<16 hex>_<64 hex>"}},
    "responses": {"Error": {"description": "refused", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
    "schemas": {"Error": {"type": "object", "required": ["error", "message"], "properties": {"error": str_, "message": str_}}}},
}
# The audit trail answers in the format asked for.
paths["/v1/audit"]["get"]["responses"]["200"]["content"] = {
    "application/json": {"schema": OBJ},
    "application/x-ndjson": {"schema": {"type": "string"}},
    "text/plain": {"schema": {"type": "string"}},
}

out = pathlib.Path(__file__).resolve().parent.parent / "admin" / "openapi.json"
out.write_text(json.dumps(doc, indent=2) + "\n")
print(f"wrote {out}")
