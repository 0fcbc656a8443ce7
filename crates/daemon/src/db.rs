//! The daemon's durable state: groups and messages in SQLite (WAL) under
//! the store. A message is accepted only once its row is committed, so a
//! restart loses none.

use anyhow::{bail, Context, Result};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS groups (
    name TEXT PRIMARY KEY,
    bot TEXT NOT NULL,
    agent TEXT NOT NULL,
    main INTEGER NOT NULL DEFAULT 0,
    mounts TEXT NOT NULL DEFAULT '[]',
    secrets TEXT NOT NULL DEFAULT '[]',
    workspace TEXT,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_name TEXT NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    exit_code INTEGER,
    output TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS messages_by_state ON messages(state, group_name, id);
";

/// A group: a bot, the agent command, and how its sessions run.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Group {
    pub name: String,
    pub bot: String,
    /// The agent's argv.
    pub agent: Vec<String>,
    #[serde(default)]
    pub main: bool,
    #[serde(default)]
    pub mounts: Vec<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub workspace: Option<String>,
    #[serde(default)]
    pub created: String,
}

/// A message's state: `queued` → `running` → `done` or `failed` (after
/// the last retry), or back to `queued` for a retry.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Message {
    pub id: i64,
    pub group: String,
    pub state: String,
    pub attempts: i64,
    pub created: f64,
    pub started: Option<f64>,
    pub finished: Option<f64>,
    pub exit_code: Option<i64>,
    pub output: Option<String>,
    pub error: Option<String>,
    /// The message itself (JSON text).
    pub body: String,
}

pub struct Db {
    conn: Connection,
}

pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn message_row(r: &rusqlite::Row) -> rusqlite::Result<Message> {
    let body: Vec<u8> = r.get("body")?;
    Ok(Message {
        id: r.get("id")?,
        group: r.get("group_name")?,
        state: r.get("state")?,
        attempts: r.get("attempts")?,
        created: r.get("created")?,
        started: r.get("started")?,
        finished: r.get("finished")?,
        exit_code: r.get("exit_code")?,
        output: r.get("output")?,
        error: r.get("error")?,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn group_row(r: &rusqlite::Row) -> rusqlite::Result<Group> {
    let j = |s: String| serde_json::from_str(&s).unwrap_or_default();
    Ok(Group {
        name: r.get("name")?,
        bot: r.get("bot")?,
        agent: j(r.get("agent")?),
        main: r.get::<_, i64>("main")? != 0,
        mounts: j(r.get("mounts")?),
        secrets: j(r.get("secrets")?),
        workspace: r.get("workspace")?,
        created: r.get("created")?,
    })
}

impl Db {
    /// Opens (creating) the database at `path`, owner-only.
    pub fn open(path: &Path) -> Result<Db> {
        let existed = path.exists();
        let conn =
            Connection::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        if !existed {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // State changes survive a crash of the daemon at once and a power
        // loss from the next checkpoint; accepting a message syncs (below).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Db { conn })
    }

    pub fn add_group(&self, g: &Group) -> Result<()> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO groups (name, bot, agent, main, mounts, secrets, workspace, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                g.name,
                g.bot,
                serde_json::to_string(&g.agent)?,
                g.main as i64,
                serde_json::to_string(&g.mounts)?,
                serde_json::to_string(&g.secrets)?,
                g.workspace,
                g.created
            ],
        )?;
        if n == 0 {
            bail!("group {} already exists", g.name);
        }
        Ok(())
    }

    pub fn group(&self, name: &str) -> Result<Option<Group>> {
        Ok(self
            .conn
            .query_row("SELECT * FROM groups WHERE name = ?1", [name], group_row)
            .optional()?)
    }

    pub fn groups(&self) -> Result<Vec<Group>> {
        let mut st = self.conn.prepare("SELECT * FROM groups ORDER BY name")?;
        let rows = st.query_map([], group_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn remove_group(&self, name: &str) -> Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM groups WHERE name = ?1", [name])?
            > 0)
    }

    /// Accepts a message: synced to disk before this returns.
    pub fn enqueue(&self, group: &str, body: &[u8]) -> Result<i64> {
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        let res = self.conn.execute(
            "INSERT INTO messages (group_name, body, state, created) VALUES (?1, ?2, 'queued', ?3)",
            params![group, body, now()],
        );
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        res?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn message(&self, id: i64) -> Result<Option<Message>> {
        Ok(self
            .conn
            .query_row("SELECT * FROM messages WHERE id = ?1", [id], message_row)
            .optional()?)
    }

    pub fn messages(
        &self,
        group: Option<&str>,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Message>> {
        let mut st = self.conn.prepare(
            "SELECT * FROM messages WHERE (?1 IS NULL OR group_name = ?1) AND (?2 IS NULL OR state = ?2)
             ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = st.query_map(params![group, state, limit], message_row)?;
        let mut v: Vec<Message> = rows.collect::<rusqlite::Result<_>>()?;
        v.reverse();
        Ok(v)
    }

    /// The oldest message of `group` that may run now.
    pub fn next_for(&self, group: &str) -> Result<Option<Message>> {
        Ok(self
            .conn
            .query_row(
                "SELECT * FROM messages WHERE group_name = ?1 AND state = 'queued' AND not_before <= ?2
                 ORDER BY id LIMIT 1",
                params![group, now()],
                message_row,
            )
            .optional()?)
    }

    /// Groups with a message that may run now, each once.
    pub fn groups_waiting(&self) -> Result<Vec<String>> {
        let mut st = self.conn.prepare(
            "SELECT DISTINCT group_name FROM messages WHERE state = 'queued' AND not_before <= ?1 ORDER BY group_name",
        )?;
        let rows = st.query_map([now()], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn mark_running(&self, id: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE messages SET state = 'running', started = ?2, attempts = attempts + 1 WHERE id = ?1",
            params![id, now()],
        )?;
        Ok(())
    }

    pub fn mark_done(&self, id: i64, exit_code: i64, output: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE messages SET state = 'done', finished = ?2, exit_code = ?3, output = ?4, error = NULL
             WHERE id = ?1",
            params![id, now(), exit_code, output],
        )?;
        Ok(())
    }

    /// A run that did not give a result: retried with backoff 5 s × 2^n
    /// until `max_tries`, then failed with `why`.
    pub fn mark_failed_attempt(&self, id: i64, why: &str, max_tries: i64) -> Result<String> {
        let attempts: i64 =
            self.conn
                .query_row("SELECT attempts FROM messages WHERE id = ?1", [id], |r| {
                    r.get(0)
                })?;
        if attempts >= max_tries {
            self.conn.execute(
                "UPDATE messages SET state = 'failed', finished = ?2, error = ?3 WHERE id = ?1",
                params![id, now(), format!("{why} (after {attempts} tries)")],
            )?;
            Ok("failed".into())
        } else {
            let backoff = 5.0 * 2f64.powi(attempts as i32 - 1);
            self.conn.execute(
                "UPDATE messages SET state = 'queued', not_before = ?2, error = ?3 WHERE id = ?1",
                params![id, now() + backoff, why],
            )?;
            Ok("queued".into())
        }
    }

    /// After a restart: messages that were running when the daemon died
    /// go back to the queue (at-least-once: the agent may have seen them).
    pub fn requeue_running(&self, why: &str) -> Result<usize> {
        Ok(self.conn.execute(
            "UPDATE messages SET state = 'queued', error = ?1 WHERE state = 'running'",
            [why],
        )?)
    }

    /// Queued and running messages per group.
    pub fn counts(&self) -> Result<Vec<(String, String, i64)>> {
        let mut st = self.conn.prepare(
            "SELECT group_name, state, COUNT(*) FROM messages WHERE state IN ('queued', 'running')
             GROUP BY group_name, state ORDER BY group_name",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
