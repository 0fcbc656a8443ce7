/// How long work reports its progress. The CLI draws bars from it when
/// stderr is a terminal; libraries only call it.
pub trait Progress: Sync {
    /// Starts a phase; `total` is the amount of work in `unit`s when known.
    fn phase(&self, _name: &str, _total: Option<u64>, _unit: Unit) {}
    /// Adds done work to the current phase.
    fn advance(&self, _n: u64) {}
    /// A one-line note (waiting for a lock, a skipped entry).
    fn note(&self, _msg: &str) {}
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Items,
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
