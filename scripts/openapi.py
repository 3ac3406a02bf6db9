#!/usr/bin/env python3
"""Writes core/assets/openapi.json, the OpenAPI 3.1 document of mcpgw's REST API (served at
/openapi.json by both runtimes). The test suite runs this with --check: it fails when the
committed document differs from what this script writes, and core's route test fails when a
route exists that the document lacks, or the reverse.

    python3 scripts/openapi.py          write the document
    python3 scripts/openapi.py --check  exit 1 if the committed one differs
"""
import json
import os
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "core", "assets", "openapi.json")


def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def resp(ref_name, description):
    return {"$ref": f"#/components/responses/{ref_name}"} if ref_name else {"description": description}


def json_body(schema, description):
    return {"description": description, "content": {"application/json": {"schema": schema}}}


STR = {"type": "string"}
OPT_STR = {"type": ["string", "null"]}
STRS = {"type": "array", "items": STR}
MAP = {"type": "object", "additionalProperties": STR}
ANY_OBJ = {"type": "object"}

# What every stored record carries besides its definition.
STORED = {
    "id": {"type": "string", "description": "Record id (32 hex digits)."},
    "created_at": {"type": "integer", "description": "When it was created, ms since the epoch."},
    "updated_at": {"type": "integer", "description": "When it was last changed, ms since the epoch."},
}

COMMON = {
    "name": {"type": "string", "minLength": 1},
    "scope": {"type": "string", "description": "A scope callers need to see it."},
    "title": STR,
    "description": STR,
}


def record(props, required):
    """A definition as written (input) and as read back (with the stored fields)."""
    return {"type": "object", "properties": props, "required": required}


def stored(name):
    return {"allOf": [ref(name), {"type": "object", "properties": STORED, "required": list(STORED)}]}


SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "Machine-readable: validation_failed, not_found, conflict, ..."},
                    "message": STR,
                    "field": {"type": "string", "description": "The field a validation error is about."},
                },
            }
        },
    },
    "Tool": record(
        {
            **COMMON,
            "url": {"type": "string", "description": "The REST endpoint (an RFC 6570 template over the arguments)."},
            "method": {"type": "string", "enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
            "headers": {**MAP, "description": "Sent with each call; masked when read back."},
            "input_schema": ANY_OBJ,
            "output_schema": ANY_OBJ,
            "annotations": ANY_OBJ,
        },
        ["name", "url"],
    ),
    "Resource": record(
        {
            **COMMON,
            "uri": STR,
            "uri_template": STR,
            "mime_type": STR,
            "text": STR,
            "blob": {"type": "string", "description": "Base64."},
            "annotations": ANY_OBJ,
            "completions": {"type": "object", "additionalProperties": STRS},
        },
        ["name"],
    ),
    "Prompt": record(
        {
            **COMMON,
            "template": STR,
            "messages": {"type": "array", "items": ANY_OBJ},
            "arguments": {"type": "array", "items": ANY_OBJ},
        },
        ["name"],
    ),
    "Server": record(
        {
            **COMMON,
            "tools": STRS,
            "resources": STRS,
            "prompts": STRS,
            "upstreams": STRS,
            "original_names": {"type": "boolean"},
        },
        ["name"],
    ),
    "Upstream": record(
        {
            **COMMON,
            "slug": {"type": "string", "description": "The prefix of its members' names (default: from the name)."},
            "url": STR,
            "urls": {**STRS, "description": "Endpoints tried in order (failover)."},
            "transport": {"type": "string", "enum": ["streamable-http", "sse", "stdio", "openapi"]},
            "kind": {
                "type": "string",
                "enum": ["mcp", "peer"],
                "description": "peer: another mcpgw (origins tracked: no loops, no duplicates).",
            },
            "conflicts": {
                "type": "string",
                "enum": ["namespace", "prefer-local", "refuse"],
                "description": "A peer's members: all namespaced, or under their own names with a clash served namespaced or left out.",
            },
            "openapi": {
                "type": "object",
                "description": "transport openapi: the OpenAPI 3.0/3.1 document inline (instead of url).",
            },
            "base_url": {**STR, "description": "transport openapi: the API's base URL, instead of the document's server."},
            "command": STR,
            "args": STRS,
            "env": MAP,
            "headers": {**MAP, "description": "Sent to the upstream; masked when read back."},
            "tls": {
                "type": "object",
                "additionalProperties": False,
                "description": "Its own TLS settings (native gateway only; https URLs only).",
                "properties": {
                    "ca": {"type": "string", "description": "PEM CA certificates trusted instead of the gateway's roots."},
                    "client_cert": {"type": "string", "description": "PEM client certificate chain (mTLS)."},
                    "client_key": {"type": "string", "description": "PEM private key; masked when read back."},
                },
            },
            "auth": {
                "type": "object",
                "additionalProperties": False,
                "description": "How the upstream authenticates the gateway besides headers (streamable HTTP only). client-credentials: the gateway gets a token of its own from the upstream's authorization server (discovered from its protected-resource metadata unless issuer is set) for the upstream as the resource, keeps it and renews it. user: each caller authorizes the gateway there once (authorization code with PKCE; see /me/connections), the tokens kept in the vault. token-exchange: the caller's token exchanged at token_service for one for the upstream (RFC 8693). enterprise: the caller's token exchanged at idp.issuer for an ID-JAG, then at the upstream's authorization server for an access token (RFC 7523).",
                "properties": {
                    "mode": {"type": "string", "enum": ["client-credentials", "user", "token-exchange", "enterprise"]},
                    "token_service": {**STR, "description": "token-exchange: the token service's issuer."},
                    "audience": {**STR, "description": "token-exchange: the audience asked for."},
                    "subject_token_type": {**STR, "description": "token-exchange: the caller's token's type URN (default: access token)."},
                    "idp": {
                        "type": "object",
                        "additionalProperties": False,
                        "description": "enterprise: the IdP and the gateway's client there (its secret or key masked and sealed like client_secret).",
                        "properties": {
                            "issuer": STR,
                            "client_id": STR,
                            "client_secret": STR,
                            "private_key": STR,
                            "method": {"type": "string", "enum": ["client_secret_basic", "client_secret_post", "private_key_jwt"]},
                            "subject_token_type": STR,
                        },
                        "required": ["issuer", "client_id"],
                    },
                    "client_id": {**STR, "description": "The client registered for the gateway at the authorization server. Optional in the user mode only: without one the gateway uses its client ID metadata document (/oauth/client.json, when MCPGW_PUBLIC_URL is https and the server takes them), else registers itself (RFC 7591)."},
                    "client_secret": {"type": "string", "description": "client_secret_basic and client_secret_post: masked when read back; sealed at rest (needs MCPGW_ENCRYPTION_KEY)."},
                    "private_key": {"type": "string", "description": "private_key_jwt: the private JWK (RSA, P-256 or Ed25519) as JSON text; masked and sealed like client_secret."},
                    "method": {"type": "string", "enum": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"], "default": "client_secret_basic", "description": "none: a public client, for the user mode only."},
                    "scope": {**STR, "description": "Space-separated scopes asked for (default: the challenge's, else the resource's scopes_supported)."},
                    "issuer": {**STR, "description": "The authorization server's issuer (default: discovered)."},
                },
                "required": ["mode"],
            },
            "timeout_ms": {"type": "integer", "minimum": 0},
            "refresh_secs": {"type": "integer", "minimum": 0},
        },
        ["name"],
    ),
    "UpstreamState": {
        "allOf": [
            stored("Upstream"),
            {
                "type": "object",
                "properties": {
                    "catalog": {"type": "object", "description": "What the upstream listed when last read."},
                    "status": {"type": ["object", "null"], "description": "Its health as this instance saw it."},
                    "changed": {"type": "boolean", "description": "After a refresh: whether the catalog changed."},
                    "peer_upstreams": {
                        "type": "array",
                        "items": {"type": "object"},
                        "description": "A peer's own upstreams and their health, as it tells them now: {name, kind, healthy, last_error}.",
                    },
                    "peer_upstreams_error": {"type": "string", "description": "Why the peer could not tell them."},
                    "name_conflicts": {
                        "type": "array",
                        "items": {"type": "object"},
                        "description": "A peer's members whose names were taken here: {name, served_as} (null: left out).",
                    },
                },
            },
        ]
    },
    "Revocation": record(
        {
            "jti": {"type": "string", "minLength": 1},
            "exp": {"type": ["integer", "null"], "description": "The token's exp (seconds), if known."},
            "reason": OPT_STR,
        },
        ["jti"],
    ),
}

RESPONSES = {
    "Unauthorized": json_body(ref("Error"), "No credentials, or ones that are not valid (see WWW-Authenticate)."),
    "Forbidden": json_body(ref("Error"), "Valid credentials without the admin scope; or a Host or Origin that is not allowed."),
    "NotFound": json_body(ref("Error"), "No such record."),
    "Invalid": json_body(ref("Error"), "The definition is not valid; `field` names the field."),
    "Conflict": json_body(ref("Error"), "The name (or URI) is taken."),
    "BadBody": json_body(ref("Error"), "The body is not JSON."),
    "MediaType": json_body(ref("Error"), "The body is not application/json."),
    "TooLarge": json_body(ref("Error"), "The body is over the size limit."),
    "RateLimited": json_body(ref("Error"), "The caller's rate limit is spent (see Retry-After)."),
    "Unavailable": json_body(ref("Error"), "The registry store cannot be reached."),
}

SECURITY = [{"bearer": []}, {"basic": []}]


def refusals(*codes):
    names = {
        400: "BadBody",
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        409: "Conflict",
        413: "TooLarge",
        415: "MediaType",
        422: "Invalid",
        429: "RateLimited",
        503: "Unavailable",
    }
    return {str(c): {"$ref": f"#/components/responses/{names[c]}"} for c in codes}


ID = {"name": "id", "in": "path", "required": True, "description": "Record id or name.", "schema": STR}


def collection(path, schema, what, tag):
    item = stored(schema)
    one = {
        "get": {
            "tags": [tag],
            "summary": f"One {what}",
            "operationId": f"get_{tag}",
            "parameters": [ID],
            "security": SECURITY,
            "responses": {"200": json_body(item, f"The {what}."), **refusals(401, 403, 404, 429, 503)},
        },
        "put": {
            "tags": [tag],
            "summary": f"Replace a {what}",
            "operationId": f"replace_{tag}",
            "parameters": [ID],
            "security": SECURITY,
            "requestBody": {"required": True, "content": {"application/json": {"schema": ref(schema)}}},
            "responses": {
                "200": json_body(item, f"The {what} as stored."),
                **refusals(400, 401, 403, 404, 409, 413, 415, 422, 429, 503),
            },
        },
        "patch": {
            "tags": [tag],
            "summary": f"Change some fields of a {what}",
            "operationId": f"patch_{tag}",
            "parameters": [ID],
            "security": SECURITY,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {
                "200": json_body(item, f"The {what} as stored."),
                **refusals(400, 401, 403, 404, 409, 413, 415, 422, 429, 503),
            },
        },
        "delete": {
            "tags": [tag],
            "summary": f"Delete a {what}",
            "operationId": f"delete_{tag}",
            "parameters": [ID],
            "security": SECURITY,
            "responses": {"204": {"description": "Deleted."}, **refusals(401, 403, 404, 429, 503)},
        },
    }
    many = {
        "get": {
            "tags": [tag],
            "summary": f"Every {what}",
            "operationId": f"list_{tag}",
            "security": SECURITY,
            "responses": {
                "200": json_body({"type": "array", "items": item}, f"Every {what}."),
                **refusals(401, 403, 429, 503),
            },
        },
        "post": {
            "tags": [tag],
            "summary": f"Create a {what}",
            "operationId": f"create_{tag}",
            "security": SECURITY,
            "requestBody": {"required": True, "content": {"application/json": {"schema": ref(schema)}}},
            "responses": {
                "201": {
                    **json_body(item, f"The {what} as stored."),
                    "headers": {"Location": {"schema": STR, "description": "The new record's path."}},
                },
                **refusals(400, 401, 403, 409, 413, 415, 422, 429, 503),
            },
        },
    }
    return {path: many, f"{path}/{{id}}": one}


def upstreams():
    paths = collection("/gateways", "Upstream", "upstream", "upstreams")
    state = ref("UpstreamState")
    for m in paths["/gateways"].values():
        m["responses"] = {
            k: (json_body({"type": "array", "items": state}, v["description"]) if k == "200" else v)
            for k, v in m["responses"].items()
        }
    paths["/gateways"]["post"]["responses"]["201"]["content"]["application/json"]["schema"] = state
    paths["/gateways"]["post"]["description"] = (
        "Connects to the upstream and reads its catalog before storing it; an upstream that cannot "
        "be reached is refused with 502 and nothing is stored."
    )
    for op in ("get", "put", "patch"):
        paths["/gateways/{id}"][op]["responses"]["200"]["content"]["application/json"]["schema"] = state
    bad_gateway = json_body(ref("Error"), "The upstream could not be reached or read.")
    for path, op in (("/gateways", "post"), ("/gateways/{id}", "put"), ("/gateways/{id}", "patch")):
        paths[path][op]["responses"]["502"] = bad_gateway
    paths["/gateways/{id}/refresh"] = {
        "post": {
            "tags": ["upstreams"],
            "summary": "Read an upstream's catalog again now",
            "operationId": "refresh_upstreams",
            "parameters": [ID],
            "security": SECURITY,
            "responses": {
                "200": json_body(state, "The upstream with its catalog; `changed` says whether it moved."),
                "502": bad_gateway,
                **refusals(401, 403, 404, 429, 503),
            },
        }
    }
    return paths


def connections():
    """The caller's own connections to upstreams that act for each caller (auth.mode = user)."""
    connection = {
        "type": "object",
        "required": ["id", "name", "connected"],
        "properties": {
            "id": {**STR, "description": "The upstream's id."},
            "name": {**STR, "description": "The upstream's name."},
            "connected": {"type": "boolean", "description": "Whether the caller has authorized the gateway there."},
            "issuer": {"type": ["string", "null"], "description": "The authorization server that issued the tokens."},
            "scope": {"type": ["string", "null"], "description": "The scopes granted."},
            "expires_at": {"type": ["integer", "null"], "description": "When the access token expires (ms since the epoch)."},
            "connected_at": {"type": ["integer", "null"], "description": "When the caller connected (ms since the epoch)."},
            "refreshable": {"type": ["boolean", "null"], "description": "Whether a refresh token is held."},
        },
    }
    client = [{"bearer": []}]
    one = {**ID, "description": "The upstream's id or name."}
    return {
        "/me/connections": {
            "get": {
                "tags": ["connections"],
                "summary": "The upstreams acting for each caller, and the caller's connection to each",
                "description": "For any client token (the caller's own); tokens are never shown.",
                "operationId": "list_connections",
                "security": client,
                "responses": {
                    "200": json_body({"type": "array", "items": connection}, "One entry per such upstream."),
                    **refusals(401, 403, 429),
                },
            }
        },
        "/me/connections/{id}": {
            "post": {
                "tags": ["connections"],
                "summary": "A link to connect the upstream (open it in a browser, signed in as the caller)",
                "operationId": "connect_upstream",
                "parameters": [one],
                "security": client,
                "responses": {
                    "201": json_body(
                        {
                            "type": "object",
                            "required": ["url"],
                            "properties": {"url": STR, "expires_in": {"type": "integer"}},
                        },
                        "The connect link, valid for expires_in seconds, single-use.",
                    ),
                    **refusals(401, 403, 404, 429),
                },
            },
            "delete": {
                "tags": ["connections"],
                "summary": "Disconnect: the tokens revoked at the authorization server and forgotten",
                "operationId": "disconnect_upstream",
                "parameters": [one],
                "security": client,
                "responses": {"204": {"description": "Disconnected."}, **refusals(401, 403, 404, 429)},
            },
        },
    }


def operations():
    def op(op_id, summary, body, description=None, extra=None):
        o = {
            "tags": ["operations"],
            "summary": summary,
            "operationId": op_id,
            "security": [],
            "responses": {"200": body, **(extra or {})},
        }
        if description:
            o["description"] = description
        return {"get": o}

    status = lambda word: {  # noqa: E731
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string", "const": word}},
    }
    metrics = op(
        "metrics",
        "Metrics in the Prometheus text format",
        {"description": "Every metric.", "content": {"text/plain": {"schema": STR}}},
        "Natively; for admins (or on MCPGW_METRICS_ADDR without credentials). The edge sends its "
        "metrics to Analytics Engine instead and answers 404.",
        {"404": {"$ref": "#/components/responses/NotFound"}, **refusals(401, 403, 429)},
    )
    metrics["get"]["security"] = SECURITY
    peer = {
        "type": "object",
        "required": ["id", "url"],
        "properties": {
            "id": {**STR, "description": "The gateway's id (TXT id)."},
            "name": {**STR, "description": "Its mDNS instance name."},
            "version": STR,
            "url": {**STR, "description": "Its MCP endpoint."},
            "auth": {"type": "boolean", "description": "Whether it asks for credentials."},
            "addresses": STRS,
        },
    }
    discovered = op(
        "discovered_peers",
        "Gateways found by mDNS",
        json_body({"type": "array", "items": peer}, "The gateways advertising _mcp-gateway._tcp on the local network."),
        "Natively with MCPGW_MDNS on; for admins. Without discovery (the edge, or MCPGW_MDNS=off) 404.",
        {"404": {"$ref": "#/components/responses/NotFound"}, **refusals(401, 403, 429)},
    )
    discovered["get"]["security"] = SECURITY
    discovered["get"]["tags"] = ["upstreams"]
    return {
        "/peers/discovered": discovered,
        "/health": op("health", "Liveness", json_body(status("ok"), "The process answers.")),
        "/ready": op(
            "ready",
            "Readiness: the registry store answers",
            json_body(status("ready"), "Ready."),
            extra={"503": {"$ref": "#/components/responses/Unavailable"}},
        ),
        "/version": op(
            "version",
            "Name, version, protocol revisions served",
            json_body(
                {
                    "type": "object",
                    "required": ["name", "version", "protocol_versions"],
                    "properties": {"name": STR, "version": STR, "protocol_versions": STRS, "instance": STR},
                },
                "The version.",
            ),
        ),
        "/metrics": metrics,
        "/openapi.json": op("openapi", "This document", json_body({"type": "object"}, "The OpenAPI document.")),
        "/oauth/client.json": op(
            "client_metadata",
            "The gateway's OAuth Client ID Metadata Document (its URL is its client id at authorization servers that take them; published when MCPGW_PUBLIC_URL is an https URL)",
            json_body({"type": "object"}, "The document."),
            extra={"404": {"$ref": "#/components/responses/NotFound"}},
        ),
        "/.well-known/oauth-protected-resource": op(
            "resource_metadata",
            "OAuth protected-resource metadata (RFC 9728)",
            json_body({"type": "object"}, "The metadata."),
            extra={"404": {"$ref": "#/components/responses/NotFound"}},
        ),
    }


def document():
    paths = {}
    paths.update(collection("/tools", "Tool", "REST tool", "tools"))
    paths.update(collection("/resources", "Resource", "resource", "resources"))
    paths.update(collection("/prompts", "Prompt", "prompt", "prompts"))
    paths.update(collection("/servers", "Server", "virtual server", "servers"))
    paths.update(upstreams())
    paths.update(collection("/auth/revocations", "Revocation", "token revocation", "revocations"))
    for p in ("/auth/revocations/{id}",):
        for m in paths[p].values():
            m["parameters"] = [{**ID, "description": "The token's jti."}]
    paths.update(operations())
    paths.update(connections())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mcpgw REST API",
            "version": "1",
            "description": (
                "The admin API of mcpgw, a Model Context Protocol gateway: the registry (REST tools, "
                "resources, prompts, virtual servers, upstreams), token revocations, and the operations "
                "endpoints. MCP clients use /mcp, /servers/{id}/mcp, /sse, /message and /rpc, which "
                "speak JSON-RPC and are described by the MCP specification, not here."
            ),
        },
        "security": SECURITY,
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": SCHEMAS,
            "responses": RESPONSES,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                           "description": "A token with the admin scope (mcpgw:admin by default)."},
                "basic": {"type": "http", "scheme": "basic",
                          "description": "MCPGW_ADMIN_USER and its password, where configured."},
            },
        },
    }


def main():
    text = json.dumps(document(), indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    if "--check" in sys.argv:
        current = open(OUT, encoding="utf-8").read() if os.path.exists(OUT) else ""
        if current != text:
            print("core/assets/openapi.json is not what scripts/openapi.py writes: run it", file=sys.stderr)
            sys.exit(1)
        return
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
