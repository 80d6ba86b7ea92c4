//! Error messages for people: an error and its causes on one line.

use std::error::Error;

/// `error: cause: cause…`, the whole source chain, leaving out a cause whose message a wrapper
/// already shows (many errors repeat their source in their own message).
pub fn error_chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{message}")]
    struct E {
        message: &'static str,
        #[source]
        source: Option<Box<E>>,
    }

    fn e(message: &'static str, source: Option<E>) -> E {
        E { message, source: source.map(Box::new) }
    }

    #[test]
    fn joins_causes_and_skips_the_ones_already_shown() {
        let root = e("connection refused", None);
        assert_eq!(
            error_chain(&e("connecting to 10.0.0.1:15008", Some(root))),
            "connecting to 10.0.0.1:15008: connection refused"
        );
        let repeated = e("connect: connection refused", Some(e("connection refused", None)));
        assert_eq!(
            error_chain(&repeated),
            "connect: connection refused",
            "a cause the wrapper already says is left out"
        );
        assert_eq!(error_chain(&e("alone", None)), "alone");
    }
}
