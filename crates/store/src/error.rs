//! Kinds of failure that callers decide on (retry, a status code, skip a
//! round), carried inside `anyhow` errors so the message a person reads
//! stays the one written where the failure happened.

/// What went wrong, for code to match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The thing to create is there already.
    AlreadyExists,
    /// A bot or workspace is not mounted (so there is nothing to unmount).
    NotMounted,
    /// Another botyard command holds its lock: retry when it is done.
    Busy,
    /// The kernel still holds an overlay's upper or work dir (EBUSY).
    InUse,
    /// An upper dir was made against other lower layers (ESTALE).
    StaleLowers,
}

/// An error of a known [`ErrorKind`], with the message to show.
#[derive(Debug)]
pub struct KindError {
    pub kind: ErrorKind,
    message: String,
}

impl std::fmt::Display for KindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for KindError {}

/// An error of `kind` reading `message`.
pub fn error(kind: ErrorKind, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(KindError {
        kind,
        message: message.into(),
    })
}

/// The kind of `e` (or of any cause in its chain), if it has one.
pub fn kind_of(e: &anyhow::Error) -> Option<ErrorKind> {
    e.chain()
        .find_map(|c| c.downcast_ref::<KindError>().map(|k| k.kind))
}

/// Whether `e` (or a cause) is of `kind`.
pub fn is_kind(e: &anyhow::Error, kind: ErrorKind) -> bool {
    kind_of(e) == Some(kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_kind_survives_context_and_the_message_is_unchanged() {
        let e: anyhow::Result<()> = Err(error(ErrorKind::Busy, "bot b1 is busy"));
        let e = e.context("cannot commit").unwrap_err();
        assert!(is_kind(&e, ErrorKind::Busy));
        assert!(!is_kind(&e, ErrorKind::InUse));
        assert_eq!(format!("{e:#}"), "cannot commit: bot b1 is busy");
        assert_eq!(kind_of(&anyhow::anyhow!("plain")), None);
    }
}
