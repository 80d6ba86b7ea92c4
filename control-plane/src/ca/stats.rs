//! What the CA has done, for `/ca` and `/metrics`: certificates issued, the last issuance, and
//! refusals by reason.

use std::{
    fmt::Write,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use serde::Serialize;

/// Why a request was refused: the `reason` label of `ambit_cp_cert_refusals_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// No credential, a malformed one, or one nobody recognises.
    Unauthenticated,
    /// A valid credential of someone who may not ask (another service account, not a waypoint's).
    NotANodeProxy,
    /// The identity is not that of a pod on the caller's node.
    NotOnNode,
    /// A waypoint asked for another identity than its own service account's (or its own could
    /// not be established from its pods).
    NotOwnIdentity,
    /// The identity is in another trust domain.
    TrustDomain,
    /// The identity is not a SPIFFE id, or the CSR does not parse or verify.
    InvalidRequest,
    /// The configuration is not read yet, or the token could not be reviewed.
    Unavailable,
    /// Signing itself failed.
    Internal,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 8] = [
        RefusalReason::Unauthenticated,
        RefusalReason::NotANodeProxy,
        RefusalReason::NotOnNode,
        RefusalReason::NotOwnIdentity,
        RefusalReason::TrustDomain,
        RefusalReason::InvalidRequest,
        RefusalReason::Unavailable,
        RefusalReason::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::Unauthenticated => "unauthenticated",
            RefusalReason::NotANodeProxy => "not_a_node_proxy",
            RefusalReason::NotOnNode => "not_on_node",
            RefusalReason::NotOwnIdentity => "not_own_identity",
            RefusalReason::TrustDomain => "trust_domain",
            RefusalReason::InvalidRequest => "invalid_request",
            RefusalReason::Unavailable => "unavailable",
            RefusalReason::Internal => "internal",
        }
    }
}

/// One issuance, as logged.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Issuance {
    pub requester: String,
    pub identity: String,
    pub serial: String,
    /// RFC 3339.
    pub not_after: String,
    pub issued_at: String,
}

#[derive(Default)]
pub struct CaStats {
    issued: AtomicU64,
    refusals: [AtomicU64; RefusalReason::ALL.len()],
    last: Mutex<Option<Issuance>>,
}

impl CaStats {
    pub fn issued(&self, issuance: Issuance) {
        self.issued.fetch_add(1, Ordering::Relaxed);
        *self.last.lock().expect("CA stats") = Some(issuance);
    }

    pub fn refused(&self, reason: RefusalReason) {
        let i = RefusalReason::ALL.iter().position(|r| *r == reason).expect("every reason is in ALL");
        self.refusals[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn issued_count(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    pub fn refusal_count(&self, reason: RefusalReason) -> u64 {
        let i = RefusalReason::ALL.iter().position(|r| *r == reason).expect("every reason is in ALL");
        self.refusals[i].load(Ordering::Relaxed)
    }

    pub fn last_issuance(&self) -> Option<Issuance> {
        self.last.lock().expect("CA stats").clone()
    }

    /// `ambit_cp_certs_issued_total` and `ambit_cp_cert_refusals_total{reason}`, Prometheus text.
    pub fn render_metrics(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP ambit_cp_certs_issued_total Workload certificates the CA signed.\n\
             # TYPE ambit_cp_certs_issued_total counter\nambit_cp_certs_issued_total {}",
            self.issued_count()
        );
        let _ = writeln!(
            out,
            "# HELP ambit_cp_cert_refusals_total Certificate requests the CA refused, by reason.\n\
             # TYPE ambit_cp_cert_refusals_total counter"
        );
        for reason in RefusalReason::ALL {
            let _ = writeln!(
                out,
                "ambit_cp_cert_refusals_total{{reason=\"{}\"}} {}",
                reason.as_str(),
                self.refusal_count(reason)
            );
        }
    }
}

/// RFC 3339 in UTC, second precision.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(0))
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}
