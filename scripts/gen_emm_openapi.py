#!/usr/bin/env python3
"""Writes mdm-connector/openapi.json, the EMM API's OpenAPI 3.1 description.

Generated from the table below, like scripts/gen_admin_openapi.py; the
connector's tests check every documented operation is routed.
Run: python3 scripts/gen_emm_openapi.py
"""
import json, pathlib

ERR = {"$ref": "#/components/responses/Error"}
OBJ = {"type": "object"}
str_ = {"type": "string"}
bool_ = {"type": "boolean"}
J = lambda schema, ct="application/json": {"required": True, "content": {ct: {"schema": schema}}}

SCIM_ERR = {"description": "refused", "content": {"application/scim+json": {"schema": {"$ref": "#/components/schemas/Error"}}}}

def op(summary, body=None, ok="200", params=(), query=(), ct="application/json", security=True):
    err = SCIM_ERR if ct == "application/scim+json" or (body and "application/scim+json" in body.get("content", {})) else ERR
    o = {"summary": summary,
         "parameters": [{"name": p, "in": "path", "required": True, "schema": str_} for p in params]
                       + [{"name": q, "in": "query", "required": False, "schema": {"type": t}} for q, t in query],
         "responses": {ok: {"description": "done"} if ok == "204" else {"description": "done", "content": {ct: {"schema": OBJ}}},
                       "400": err, "401": err, "403": err, "404": err, "409": err, "413": err, "415": err, "500": err}}
    if security:
        o["security"] = [{"apiKey": []}]
    if body is not None:
        o["requestBody"] = body
    return o

fmt = {"enum": ["apple_plist", "android_json", "amapi"]}
ids = {"type": "object", "additionalProperties": False, "properties": {"udid": str_, "serial": str_, "android_device": str_, "enrollment_id": str_}}
settings = {"type": "object", "additionalProperties": False, "properties": {
    "copy_paste": bool_, "forwarding": bool_, "screenshots": bool_,
    "attachments": {"type": "array", "items": {"enum": ["images", "videos", "audio", "files"]}}}}
SCIM = "application/scim+json"
scim_user = {"type": "object", "required": ["schemas", "userName"], "properties": {"schemas": {"type": "array", "items": str_}, "userName": str_, "externalId": str_, "active": {}, "displayName": str_, "name": OBJ, "emails": {"type": "array"}}}
scim_group = {"type": "object", "required": ["schemas", "displayName"], "properties": {"schemas": {"type": "array", "items": str_}, "displayName": str_, "members": {"type": "array"}}}
patch = {"type": "object", "required": ["schemas", "Operations"], "properties": {"schemas": {"type": "array", "items": str_}, "Operations": {"type": "array", "items": OBJ}}}

paths = {
  "/emm/v1/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": OBJ}}}}}},
  "/emm/v1/configurations": {"post": op("A device's managed configuration with a fresh one-use enrollment token; the MDM's device identifiers are kept for wipes",
      J({"type": "object", "required": ["user_id", "format"], "additionalProperties": False, "properties": {"user_id": str_, "display_name": str_, "department": str_, "format": fmt, "device": ids}}), ok="201")},
  "/emm/v1/configurations/bulk": {"post": op("A department's managed configuration with one bulk enrollment token",
      J({"type": "object", "required": ["department", "uses", "format"], "additionalProperties": False, "properties": {"department": str_, "uses": {"type": "integer", "minimum": 1}, "format": fmt}}), ok="201")},
  "/emm/v1/wipe": {"post": op("Wipe by user, Kontor device, UDID, serial or Android device name: relay wipe, revocation on receipt, MDM-side command",
      J({"type": "object", "additionalProperties": False, "minProperties": 1, "maxProperties": 1, "properties": {"user_id": str_, "device_id": str_, "udid": str_, "serial": str_, "android_device": str_}}), ok="202")},
  "/emm/v1/policy/{scope}/{id}": {"put": op("Set restrictions (relay, devices) and send the matching MDM-side configuration update", J(settings), params=["scope", "id"]),
                                   "delete": op("Clear restrictions at a scope", params=["scope", "id"])},
  "/emm/v1/commands": {"get": op("Commands sent to MDMs and their reported state")},
  "/emm/v1/webhooks/nanomdm": {"post": op("NanoMDM webhook events (command results)", J(OBJ))},
  "/emm/v1/webhooks/android": {"post": op("Android Management API Pub/Sub push notifications", J(OBJ))},
  "/scim/v2/ServiceProviderConfig": {"get": op("What this SCIM service supports (public, RFC 7644 section 4)", ct=SCIM, security=False)},
  "/scim/v2/Users": {"get": op("Users, filtered (userName, externalId, id, displayName, emails eq; and)", query=[("filter", "string"), ("startIndex", "integer"), ("count", "integer")], ct=SCIM),
                     "post": op("Create a user", J(scim_user, SCIM), ok="201", ct=SCIM)},
  "/scim/v2/Users/{id}": {"get": op("A user", params=["id"], ct=SCIM),
                          "put": op("Replace a user", J(scim_user, SCIM), params=["id"], ct=SCIM),
                          "patch": op("Change a user (active=false blocks at once)", J(patch, SCIM), params=["id"], ct=SCIM),
                          "delete": op("Delete a user (certificates revoked, data erased)", params=["id"], ok="204", ct=SCIM)},
  "/scim/v2/Groups": {"get": op("Groups (Kontor departments), filtered by displayName", query=[("filter", "string"), ("startIndex", "integer"), ("count", "integer")], ct=SCIM),
                      "post": op("Create a group (department)", J(scim_group, SCIM), ok="201", ct=SCIM)},
  "/scim/v2/Groups/{id}": {"get": op("A group", params=["id"], ct=SCIM),
                           "patch": op("Add or remove members (moves users into or out of the department)", J(patch, SCIM), params=["id"], ct=SCIM),
                           "delete": op("Delete a group (its members leave it)", params=["id"], ok="204", ct=SCIM)},
}
doc = {"openapi": "3.1.0",
       "info": {"title": "Kontor EMM API", "version": "1",
                "description": "What EMM platforms call: managed configurations with enrollment tokens, wipe, policy push, SCIM 2.0 user sync and MDM webhooks. Authenticated by an integration's API key (an admin account with the emm role): Authorization: Bearer kak_..."},
       "paths": paths,
       "components": {"securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
                      "responses": {"Error": {"description": "refused", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
                      "schemas": {"Error": {"type": "object", "properties": {"error": str_, "message": str_, "detail": str_, "status": str_, "scimType": str_}}}}}
out = pathlib.Path(__file__).resolve().parent.parent / "mdm-connector" / "openapi.json"
out.write_text(json.dumps(doc, indent=2) + "\n")
print(f"wrote {out}")
