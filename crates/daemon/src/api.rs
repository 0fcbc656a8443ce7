//! The HTTP API (`/v1/…`), `/metrics` and the OpenAPI document.

use crate::db::{now, Group};
use crate::scheduler::{Daemon, MessageEvent, Partial};

use crate::db::FINAL_STATES;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;

type Ctx = State<Arc<Daemon>>;

fn err(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({"error": msg.into()}))).into_response()
}

fn disk_full(e: &anyhow::Error) -> bool {
    store::is_no_space(e) || e.chain().any(|c| {
        matches!(
            c.downcast_ref::<rusqlite::Error>(),
            Some(rusqlite::Error::SqliteFailure(f, _)) if f.code == rusqlite::ErrorCode::DiskFull
        )
    })
}

fn internal(e: anyhow::Error) -> Response {
    if disk_full(&e) {
        return err(
            StatusCode::INSUFFICIENT_STORAGE,
            "the store's filesystem is full; nothing was accepted",
        );
    }
    err(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
}

/// Every route, as the OpenAPI document lists them (checked by a test).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/groups"),
    ("post", "/v1/groups"),
    ("get", "/v1/groups/{group}"),
    ("delete", "/v1/groups/{group}"),
    ("post", "/v1/groups/{group}/messages"),
    ("get", "/v1/messages"),
    ("get", "/v1/messages/{id}"),
    ("get", "/v1/messages/{id}/events"),
    ("get", "/v1/sessions"),
    ("delete", "/v1/sessions/{id}"),
    ("get", "/v1/status"),
    ("get", "/v1/openapi.json"),
    ("get", "/metrics"),
];

pub fn router(d: Arc<Daemon>, token: Option<String>) -> Router {
    let r = Router::new()
        .route("/v1/groups", get(list_groups).post(add_group))
        .route("/v1/groups/{group}", get(show_group).delete(remove_group))
        .route("/v1/groups/{group}/messages", post(send))
        .route("/v1/messages", get(list_messages))
        .route("/v1/messages/{id}", get(show_message))
        .route("/v1/messages/{id}/events", get(events))
        .route("/v1/sessions", get(sessions))
        .route("/v1/sessions/{id}", delete(close_session))
        .route("/v1/status", get(status))
        .route("/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .with_state(d);
    match token {
        None => r,
        Some(t) => r.layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let t = t.clone();
                async move {
                    let ok = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .is_some_and(|v| constant_time_eq(v.as_bytes(), t.as_bytes()));
                    if ok {
                        next.run(req).await
                    } else {
                        (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response()
                    }
                }
            },
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn list_groups(State(d): Ctx) -> Response {
    match d.db.lock().unwrap().groups() {
        Ok(g) => Json(g).into_response(),
        Err(e) => internal(e),
    }
}

async fn add_group(State(d): Ctx, body: Bytes) -> Response {
    let mut g: Group = match serde_json::from_slice(&body) {
        Ok(g) => g,
        Err(e) => return err(StatusCode::BAD_REQUEST, format!("invalid group JSON: {e}")),
    };
    if let Err(e) = store::validate_segment("group name", &g.name, 63) {
        return err(StatusCode::BAD_REQUEST, e.to_string());
    }
    if g.agent.is_empty() {
        return err(StatusCode::BAD_REQUEST, "the group needs an agent command");
    }
    if let Some(u) = &g.user {
        if g.workspace.is_none() {
            return err(
                StatusCode::BAD_REQUEST,
                "a user names the owner of the group's workspace; give --workspace too",
            );
        }
        if let Err(e) = store::validate_segment("user", u, store::MAX_NAME_BYTES) {
            return err(StatusCode::BAD_REQUEST, e.to_string());
        }
    }
    for m in &g.mounts {
        if let Err(e) = m.parse::<session::MountSpec>() {
            return err(StatusCode::BAD_REQUEST, format!("{e:#}"));
        }
    }
    // Only what the operator listed may reach an agent: never the daemon's
    // whole environment.
    for name in &g.secrets {
        if !d.config.secrets.contains(name) {
            return err(
                StatusCode::BAD_REQUEST,
                format!(
                    "secret {} is not one the operator allows groups to use; add it to the daemon's `secrets` config key (now: {})",
                    store::quote_str(name),
                    if d.config.secrets.is_empty() {
                        "none".to_string()
                    } else {
                        d.config.secrets.join(", ")
                    }
                ),
            );
        }
    }
    g.created = store::now_rfc3339();
    // The backend checks what only it knows (the bot in this store, or
    // names on a cluster) and may call out, so off the async threads; the
    // database lock is held so no other group is added meanwhile.
    let d2 = d.clone();
    let res = tokio::task::spawn_blocking(move || {
        let db = d2.db.lock().unwrap();
        let others = db.groups()?;
        if others.iter().any(|o| o.name == g.name) {
            return Ok(Err((
                StatusCode::CONFLICT,
                format!("group {} already exists", store::quote_str(&g.name)),
            )));
        }
        if let Err(e) = d2.backend.admit_group(&d2.store, &g, &others) {
            return Ok(Err((StatusCode::BAD_REQUEST, format!("{e:#}"))));
        }
        db.add_group(&g).map(|()| Ok(g))
    })
    .await;
    match res {
        Ok(Ok(Ok(g))) => (StatusCode::CREATED, Json(g)).into_response(),
        Ok(Ok(Err((code, msg)))) => err(code, msg),
        Ok(Err(e)) if store::is_kind(&e, store::ErrorKind::AlreadyExists) => {
            err(StatusCode::CONFLICT, e.to_string())
        }
        Ok(Err(e)) => internal(e),
        Err(e) => internal(anyhow::anyhow!("{e}")),
    }
}

async fn show_group(State(d): Ctx, Path(g): Path<String>) -> Response {
    match d.db.lock().unwrap().group(&g) {
        Ok(Some(g)) => Json(g).into_response(),
        Ok(None) => err(StatusCode::NOT_FOUND, format!("no group {g}")),
        Err(e) => internal(e),
    }
}

async fn remove_group(State(d): Ctx, Path(g): Path<String>) -> Response {
    d.close_session(&g);
    let res = d.db.lock().unwrap().remove_group(&g);
    match res {
        Ok(Some(failed)) => {
            for id in failed {
                d.changed(id, "failed");
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(None) => err(StatusCode::NOT_FOUND, format!("no group {g}")),
        Err(e) => internal(e),
    }
}

async fn send(State(d): Ctx, Path(g): Path<String>, body: Bytes) -> Response {
    if body.len() as u64 > d.config.max_message_size {
        return err(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the message is {} bytes, over the limit of {}",
                body.len(),
                d.config.max_message_size
            ),
        );
    }
    if let Err(e) = serde_json::from_slice::<Value>(&body) {
        return err(
            StatusCode::BAD_REQUEST,
            format!("the message is not JSON: {e}"),
        );
    }
    if d.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return err(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is shutting down",
        );
    }
    let (id, db_path) = match accept(&d, &g, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    d.wake();
    // Accepted only once it is on disk.
    match tokio::task::spawn_blocking(move || crate::db::sync(&db_path)).await {
        Ok(Ok(())) => (
            StatusCode::ACCEPTED,
            Json(json!({"id": id, "group": g, "state": "queued"})),
        )
            .into_response(),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e.into()),
    }
}

/// Checks the group and its bot and writes the message (not yet synced).
fn accept(d: &Daemon, g: &str, body: &[u8]) -> Result<(i64, std::path::PathBuf), Box<Response>> {
    let db = d.db.lock().unwrap();
    let group = match db.group(g) {
        Ok(Some(g)) => g,
        Ok(None) => {
            return Err(Box::new(err(
                StatusCode::NOT_FOUND,
                format!("no group {g}"),
            )))
        }
        Err(e) => return Err(Box::new(internal(e))),
    };
    if bot::Bot::new(&d.store, &group.bot)
        .and_then(|b| b.load())
        .is_err()
    {
        return Err(Box::new(err(
            StatusCode::CONFLICT,
            format!("the bot {} of group {g} is gone", group.bot),
        )));
    }
    match db.enqueue(g, body) {
        Ok(id) => Ok((id, db.path())),
        Err(e) => Err(Box::new(internal(e))),
    }
}

#[derive(serde::Deserialize)]
struct ListQuery {
    group: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
}

async fn list_messages(State(d): Ctx, Query(q): Query<ListQuery>) -> Response {
    if let Some(s) = &q.state {
        if !["queued", "running", "done", "failed"].contains(&s.as_str()) {
            return err(
                StatusCode::BAD_REQUEST,
                "state must be queued, running, done or failed",
            );
        }
    }
    match d.db.lock().unwrap().messages(
        q.group.as_deref(),
        q.state.as_deref(),
        q.limit.unwrap_or(100),
    ) {
        Ok(m) => Json(m).into_response(),
        Err(e) => internal(e),
    }
}

async fn show_message(State(d): Ctx, Path(id): Path<i64>) -> Response {
    match d.db.lock().unwrap().message(id) {
        Ok(Some(m)) => Json(m).into_response(),
        Ok(None) => err(StatusCode::NOT_FOUND, format!("no message {id}")),
        Err(e) => internal(e),
    }
}

/// Server-sent events: the message's state whenever it changes, the
/// agent's output as it arrives (`output` events), and at the end the
/// whole message (`result`).
async fn events(State(d): Ctx, Path(id): Path<i64>) -> Response {
    // Watch first, then read: no change falls between the two.
    let (partial, rx) = d.watch(id);
    let m = d.db.lock().unwrap().message(id);
    if let Ok(Some(m)) = m {
        return Sse::new(event_stream(d, id, m.state, partial, rx))
            .keep_alive(axum::response::sse::KeepAlive::default())
            .into_response();
    }
    drop(rx);
    d.unwatch(id);
    match m {
        Ok(_) => err(StatusCode::NOT_FOUND, format!("no message {id}")),
        Err(e) => internal(e),
    }
}

fn event_stream(
    d: Arc<Daemon>,
    id: i64,
    state: String,
    partial: Partial,
    rx: tokio::sync::broadcast::Receiver<MessageEvent>,
) -> impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>> {
    use tokio::sync::broadcast::error::RecvError;
    /// Drops the message's channel when its last watcher leaves.
    struct Unwatch(Arc<Daemon>, i64);
    impl Drop for Unwatch {
        fn drop(&mut self) {
            self.0.unwatch(self.1);
        }
    }
    let (tx, mut out) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        // Declared before `rx`, so dropped after it.
        let _unwatch = Unwatch(d.clone(), id);
        let mut rx = rx;
        let send_state = |s: &str| {
            Event::default()
                .event("state")
                .data(json!({"id": id, "state": s}).to_string())
        };
        let mut last = state;
        if tx.send(Ok(send_state(&last))).await.is_err() {
            return;
        }
        // What the agent printed before this watcher came.
        let mut first = Vec::new();
        if !partial.text.is_empty() {
            first.push(output_event(id, &partial.text));
        }
        if partial.skipped > 0 {
            first.push(
                Event::default()
                    .event("lagged")
                    .data(json!({"id": id, "skipped_bytes": partial.skipped}).to_string()),
            );
        }
        for ev in first {
            if tx.send(Ok(ev)).await.is_err() {
                return;
            }
        }
        while !FINAL_STATES.contains(&last.as_str()) {
            // A watcher that leaves is let go at once, not at the next event.
            let next = tokio::select! {
                next = rx.recv() => next,
                _ = tx.closed() => return,
            };
            let ev = match next {
                Ok(MessageEvent::State(s)) if s != last => {
                    last = s;
                    send_state(&last)
                }
                Ok(MessageEvent::State(_)) => continue,
                Ok(MessageEvent::Output(data)) => output_event(id, &data),
                Err(RecvError::Lagged(n)) => Event::default()
                    .event("lagged")
                    .data(json!({"id": id, "skipped_frames": n}).to_string()),
                // The daemon dropped the channel; the database has the rest.
                Err(RecvError::Closed) => match d.db.lock().unwrap().message(id) {
                    Ok(Some(m)) if FINAL_STATES.contains(&m.state.as_str()) => {
                        last = m.state;
                        send_state(&last)
                    }
                    _ => break,
                },
            };
            if tx.send(Ok(ev)).await.is_err() {
                return;
            }
        }
        let m = d.db.lock().unwrap().message(id);
        if let Ok(Some(m)) = m {
            let ev = Event::default()
                .event("result")
                .data(serde_json::to_string(&m).unwrap_or_default());
            let _ = tx.send(Ok(ev)).await;
        }
    });
    futures_util::stream::poll_fn(move |cx| out.poll_recv(cx))
}

fn output_event(id: i64, data: &str) -> Event {
    Event::default()
        .event("output")
        .data(json!({"id": id, "data": data}).to_string())
}

fn sessions_json(d: &Daemon) -> Value {
    let live = d.live.lock().unwrap();
    let mut v: Vec<Value> = live
        .values()
        .map(|s| {
            json!({
                "id": s.group, "group": s.group, "started": s.started_at,
                "busy_with": s.busy.map(|b| b.0), "idle_seconds": s.busy.map_or(s.idle_since.elapsed().as_secs_f64(), |_| 0.0),
                "closing": s.closing, "answered": s.answered,
            })
        })
        .collect();
    v.sort_by(|a, b| a["group"].as_str().cmp(&b["group"].as_str()));
    Value::Array(v)
}

async fn sessions(State(d): Ctx) -> Response {
    Json(sessions_json(&d)).into_response()
}

async fn close_session(State(d): Ctx, Path(id): Path<String>) -> Response {
    if d.close_session(&id) {
        StatusCode::ACCEPTED.into_response()
    } else {
        err(StatusCode::NOT_FOUND, format!("no live session {id}"))
    }
}

async fn status(State(d): Ctx) -> Response {
    let counts = d.db.lock().unwrap().counts().unwrap_or_default();
    let queued: i64 = counts.iter().filter(|c| c.1 == "queued").map(|c| c.2).sum();
    let running: i64 = counts
        .iter()
        .filter(|c| c.1 == "running")
        .map(|c| c.2)
        .sum();
    Json(json!({
        "sessions": sessions_json(&d),
        "max_sessions": d.config.max_sessions,
        "backend": d.backend.name(),
        "notes": d.backend.notes(),
        "queued": queued,
        "running": running,
        "draining": d.draining.load(std::sync::atomic::Ordering::Relaxed),
        // Messages with an event stream open.
        "watched_messages": d.watched(),
        "time": now(),
    }))
    .into_response()
}

async fn openapi() -> Response {
    Json(crate::openapi::document()).into_response()
}

async fn metrics(State(d): Ctx, _h: HeaderMap) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        crate::metrics::render(&d),
    )
        .into_response()
}
