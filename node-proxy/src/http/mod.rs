//! The node proxy's two small HTTP/1.1 servers: the pod-event API on a unix socket (for the CNI
//! plugin) and the admin API on 127.0.0.1:15000. JSON in, JSON out; the plumbing is
//! `ambit_common::http_server`.

pub(crate) mod admin;
pub(crate) mod api;
