//! The OpenAPI document served at `/v1/openapi.json`.

use serde_json::{json, Value};

fn op(
    summary: &str,
    params: &[(&str, &str)],
    body: Option<&str>,
    responses: &[(&str, &str)],
) -> Value {
    let mut o = json!({"summary": summary, "responses": {}});
    let ps: Vec<Value> = params
        .iter()
        .map(|(name, place)| json!({"name": name, "in": place, "required": *place == "path", "schema": {"type": "string"}}))
        .collect();
    if !ps.is_empty() {
        o["parameters"] = Value::Array(ps);
    }
    if let Some(b) = body {
        o["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{b}")}}}});
    }
    for (code, desc) in responses {
        o["responses"][*code] = json!({"description": desc});
    }
    o
}

pub fn document() -> Value {
    let g = [("group", "path")];
    let id = [("id", "path")];
    json!({
        "openapi": "3.0.3",
        "info": {"title": "botyard daemon", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Groups of agents on bots, a durable fair message queue, sessions and metrics. Over TCP every request needs `Authorization: Bearer TOKEN`."},
        "paths": {
            "/v1/groups": {
                "get": op("List groups", &[], None, &[("200", "the groups")]),
                "post": op("Add a group", &[], Some("Group"), &[("201", "added"), ("400", "invalid"), ("409", "exists")])
            },
            "/v1/groups/{group}": {
                "get": op("Show a group", &g, None, &[("200", "the group"), ("404", "no such group")]),
                "delete": op("Remove a group (its session is closed)", &g, None, &[("204", "removed"), ("404", "no such group")])
            },
            "/v1/groups/{group}/messages": {
                "post": op("Send a message (any JSON, up to the size cap)", &g, Some("Message"),
                    &[("202", "accepted and stored"), ("400", "not JSON"), ("404", "no such group"), ("409", "the group's bot is gone"),
                      ("413", "over the size cap"), ("503", "shutting down"), ("507", "the store's disk is full")])
            },
            "/v1/messages": {
                "get": op("List messages", &[("group", "query"), ("state", "query"), ("limit", "query")], None, &[("200", "the messages"), ("400", "bad state")])
            },
            "/v1/messages/{id}": {
                "get": op("Show a message: state, attempts, exit code, output, error", &id, None, &[("200", "the message"), ("404", "no such message")])
            },
            "/v1/messages/{id}/events": {
                "get": op("Server-sent events (text/event-stream): `state` on each change; `output` with the agent's output as it arrives (first what it printed before you connected); `lagged` when output was left out; finally `result` with the whole message", &id, None, &[("200", "an event stream"), ("404", "no such message")])
            },
            "/v1/sessions": {
                "get": op("Live sessions", &[], None, &[("200", "the sessions")])
            },
            "/v1/sessions/{id}": {
                "delete": op("Close a session (the sandbox is stopped if it is busy)", &id, None, &[("202", "closing"), ("404", "no such session")])
            },
            "/v1/status": {
                "get": op("Sessions and queue depth at a glance", &[], None, &[("200", "the status")])
            },
            "/v1/openapi.json": {
                "get": op("This document", &[], None, &[("200", "OpenAPI 3")])
            },
            "/metrics": {
                "get": op("Prometheus metrics", &[], None, &[("200", "text format 0.0.4")])
            }
        },
        "components": {
            "schemas": {
                "Group": {"type": "object", "required": ["name", "bot", "agent"], "properties": {
                    "name": {"type": "string"}, "bot": {"type": "string"},
                    "agent": {"type": "array", "items": {"type": "string"}},
                    "main": {"type": "boolean"}, "mounts": {"type": "array", "items": {"type": "string"}},
                    "secrets": {"type": "array", "items": {"type": "string"}}, "workspace": {"type": "string", "nullable": true}, "user": {"type": "string", "nullable": true}}},
                "Message": {"description": "Any JSON value; the agent reads it on stdin."}
            }
        }
    })
}
