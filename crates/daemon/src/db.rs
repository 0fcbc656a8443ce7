//! The daemon's durable state: groups and messages in SQLite (WAL) under
//! the store. A message is accepted only once its row is committed, so a
//! restart loses none.

use anyhow::{Context, Result};
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
    error TEXT,
    truncated INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_by_state ON messages(state, group_name, id);
";

/// The states a message ends in.
pub const FINAL_STATES: [&str; 2] = ["done", "failed"];

pub use session::Group;

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
    /// The output was cut at the daemon's `output_cap`.
    #[serde(default)]
    pub truncated: bool,
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

/// Makes everything committed to the database at `db` durable: in WAL
/// mode a commit is in the log, and an fsync of the log is what SQLite's
/// `synchronous = FULL` adds. Done outside the connection's lock, so the
/// scheduler never waits for a disk flush.
pub fn sync(db: &Path) -> Result<()> {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let file = match std::fs::File::open(&wal) {
        // No log (it was checkpointed away): the commit is in the database.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::File::open(db),
        other => other,
    };
    file.and_then(|f| f.sync_data())
        .with_context(|| format!("cannot sync {}", db.display()))
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
        truncated: r.get::<_, i64>("truncated")? != 0,
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
        user: r.get("user")?,
        created: r.get("created")?,
    })
}

impl Db {
    /// Runs a statement, prepared once per connection.
    fn exec(&self, sql: &str, p: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.conn.prepare_cached(sql)?.execute(p)
    }

    /// One row or none, with a statement prepared once per connection.
    fn row<T>(
        &self,
        sql: &str,
        p: impl rusqlite::Params,
        f: impl FnOnce(&rusqlite::Row) -> rusqlite::Result<T>,
    ) -> Result<Option<T>> {
        Ok(self.conn.prepare_cached(sql)?.query_row(p, f).optional()?)
    }
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
        // Databases from before `truncated` existed.
        let has: bool = conn.query_row(
            "SELECT COUNT(*) FROM pragma_table_info('messages') WHERE name = 'truncated'",
            [],
            |r| r.get::<_, i64>(0).map(|n| n > 0),
        )?;
        if !has {
            conn.execute_batch(
                "ALTER TABLE messages ADD COLUMN truncated INTEGER NOT NULL DEFAULT 0",
            )?;
        }
        // And before `user`.
        let has: bool = conn.query_row(
            "SELECT COUNT(*) FROM pragma_table_info('groups') WHERE name = 'user'",
            [],
            |r| r.get::<_, i64>(0).map(|n| n > 0),
        )?;
        if !has {
            conn.execute_batch("ALTER TABLE groups ADD COLUMN user TEXT")?;
        }
        Ok(Db { conn })
    }

    pub fn add_group(&self, g: &Group) -> Result<()> {
        let n = self.exec(
            "INSERT OR IGNORE INTO groups (name, bot, agent, main, mounts, secrets, workspace, created, user)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                g.name,
                g.bot,
                serde_json::to_string(&g.agent)?,
                g.main as i64,
                serde_json::to_string(&g.mounts)?,
                serde_json::to_string(&g.secrets)?,
                g.workspace,
                g.created,
                g.user
            ],
        )?;
        if n == 0 {
            return Err(store::error(
                store::ErrorKind::AlreadyExists,
                format!("group {} already exists", g.name),
            ));
        }
        Ok(())
    }

    pub fn group(&self, name: &str) -> Result<Option<Group>> {
        self.row("SELECT * FROM groups WHERE name = ?1", [name], group_row)
    }

    pub fn groups(&self) -> Result<Vec<Group>> {
        let mut st = self.conn.prepare("SELECT * FROM groups ORDER BY name")?;
        let rows = st.query_map([], group_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Removes a group; its queued messages fail (they cannot run).
    /// Returns the ids of those messages, or None if there is no group.
    pub fn remove_group(&self, name: &str) -> Result<Option<Vec<i64>>> {
        let tx = self.conn.unchecked_transaction()?;
        if tx.execute("DELETE FROM groups WHERE name = ?1", [name])? == 0 {
            return Ok(None);
        }
        let ids = {
            let mut st = tx.prepare(
                "UPDATE messages SET state = 'failed', finished = ?2, error = ?3
                 WHERE group_name = ?1 AND state = 'queued' RETURNING id",
            )?;
            let rows = st.query_map(
                params![name, now(), format!("group {name} was removed")],
                |r| r.get(0),
            )?;
            rows.collect::<rusqlite::Result<Vec<i64>>>()?
        };
        tx.commit()?;
        Ok(Some(ids))
    }

    /// Accepts a message. It is durable once [`Db::sync`] returns, which
    /// the caller runs without holding the connection.
    pub fn enqueue(&self, group: &str, body: &[u8]) -> Result<i64> {
        self.exec(
            "INSERT INTO messages (group_name, body, state, created) VALUES (?1, ?2, 'queued', ?3)",
            params![group, body, now()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The database's file, for [`sync`].
    pub fn path(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(self.conn.path().unwrap_or_default())
    }

    pub fn message(&self, id: i64) -> Result<Option<Message>> {
        self.row("SELECT * FROM messages WHERE id = ?1", [id], message_row)
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
        self.row(
            "SELECT * FROM messages WHERE group_name = ?1 AND state = 'queued' AND not_before <= ?2
                 ORDER BY id LIMIT 1",
            params![group, now()],
            message_row,
        )
    }

    /// Groups with a message that may run now, each once, with their
    /// bots. One index look-up per group, however long the queue.
    pub fn groups_waiting(&self) -> Result<Vec<(String, String)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT name, bot FROM groups WHERE EXISTS (SELECT 1 FROM messages
               WHERE state = 'queued' AND group_name = groups.name AND not_before <= ?1)
             ORDER BY name",
        )?;
        let rows = st.query_map([now()], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn mark_running(&self, id: i64) -> Result<()> {
        self.exec(
            "UPDATE messages SET state = 'running', started = ?2, attempts = attempts + 1 WHERE id = ?1",
            params![id, now()],
        )?;
        Ok(())
    }

    pub fn mark_done(&self, id: i64, exit_code: i64, output: &str, truncated: bool) -> Result<()> {
        self.exec(
            "UPDATE messages SET state = 'done', finished = ?2, exit_code = ?3, output = ?4, error = NULL,
             truncated = ?5 WHERE id = ?1",
            params![id, now(), exit_code, output, truncated],
        )?;
        Ok(())
    }

    /// A run that did not give a result: retried with backoff 5 s × 2^n
    /// until `max_tries`, then failed with `why`. A message whose group
    /// was removed fails at once (nothing would run it).
    pub fn mark_failed_attempt(&self, id: i64, why: &str, max_tries: i64) -> Result<String> {
        let (attempts, group): (i64, Option<String>) = self
            .row(
                "SELECT attempts, (SELECT name FROM groups WHERE name = group_name) FROM messages WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .with_context(|| format!("no message {id}"))?;
        if group.is_none() || attempts >= max_tries {
            let why = match group {
                None => format!("{why}; its group was removed"),
                Some(_) => format!("{why} (after {attempts} tries)"),
            };
            self.exec(
                "UPDATE messages SET state = 'failed', finished = ?2, error = ?3 WHERE id = ?1",
                params![id, now(), why],
            )?;
            Ok("failed".into())
        } else {
            let backoff = 5.0 * 2f64.powi(attempts as i32 - 1);
            self.exec(
                "UPDATE messages SET state = 'queued', not_before = ?2, error = ?3 WHERE id = ?1",
                params![id, now() + backoff, why],
            )?;
            Ok("queued".into())
        }
    }

    /// After a restart: messages that were running when the daemon died
    /// go back to the queue (at-least-once: the agent may have seen them),
    /// or fail if their group is gone.
    pub fn requeue_running(&self, why: &str) -> Result<usize> {
        self.exec(
            "UPDATE messages SET state = 'failed', finished = ?2, error = ?1 || '; its group was removed'
             WHERE state = 'running' AND group_name NOT IN (SELECT name FROM groups)",
            params![why, now()],
        )?;
        Ok(self.exec(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_from_before_users_gains_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let old = Connection::open(&path).unwrap();
        // SCHEMA is the table as it was; `user` comes by migration.
        old.execute_batch(SCHEMA).unwrap();
        old.execute(
            "INSERT INTO groups (name, bot, agent, created) VALUES ('g', 'b', '[\"cat\"]', '')",
            [],
        )
        .unwrap();
        drop(old);
        let db = Db::open(&path).unwrap();
        let g = db.group("g").unwrap().unwrap();
        assert_eq!((g.user, g.agent), (None, vec!["cat".to_string()]));
    }

    #[test]
    fn an_accepted_message_is_synced_with_or_without_a_log() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("state.db")).unwrap();
        db.add_group(&Group {
            name: "g".into(),
            bot: "b".into(),
            agent: vec!["cat".into()],
            main: false,
            mounts: vec![],
            secrets: vec![],
            workspace: Some("w".into()),
            user: Some("alice".into()),
            created: String::new(),
        })
        .unwrap();
        assert_eq!(
            db.group("g").unwrap().unwrap().user.as_deref(),
            Some("alice")
        );
        let id = db.enqueue("g", b"{}").unwrap();
        assert!(dir.path().join("state.db-wal").exists());
        sync(&db.path()).unwrap();
        assert_eq!(db.message(id).unwrap().unwrap().state, "queued");
        // A database whose log is gone: the file itself is synced.
        let plain = dir.path().join("plain.db");
        std::fs::write(&plain, b"x").unwrap();
        sync(&plain).unwrap();
        let err = sync(&dir.path().join("missing.db")).unwrap_err();
        assert!(format!("{err:#}").contains("cannot sync"), "{err:#}");
    }
}
