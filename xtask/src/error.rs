//! The one error type of xtask: a message for a human that says what failed and what to do.

use std::fmt;

/// What went wrong, phrased so the reader knows what to do next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Error(String);

pub(crate) type Result<T = ()> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}
