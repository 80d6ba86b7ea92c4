//! Protocol detection for ports whose protocol is not declared: the first bytes a client sends
//! decide. The HTTP/2 connection preface means h2c with prior knowledge; an HTTP/1 request line
//! (a method token, a space) means HTTP/1.1; anything else, or silence (a server-first protocol
//! such as MySQL), is TCP.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// How long a silent client is given before its connection is treated as TCP (Istio's old
/// `protocolDetectionTimeout` default).
pub const DETECTION_TIMEOUT: Duration = Duration::from_millis(100);

/// Bytes read at most before deciding.
const MAX_PEEK: usize = 64;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A method token is at most this long (the longest registered method is 17 bytes).
const MAX_METHOD: usize = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    Http1,
    Http2,
    Tcp,
}

/// The protocol `prefix` shows, or `None` when more bytes are needed to tell.
pub fn classify(prefix: &[u8]) -> Option<Detected> {
    let n = prefix.len().min(H2_PREFACE.len());
    if prefix[..n] == H2_PREFACE[..n] {
        return if n == H2_PREFACE.len() { Some(Detected::Http2) } else { None };
    }
    match prefix.iter().position(|&b| b == b' ') {
        Some(0) => Some(Detected::Tcp),
        Some(end) if end <= MAX_METHOD && prefix[..end].iter().all(|&b| is_method_char(b)) => Some(Detected::Http1),
        Some(_) => Some(Detected::Tcp),
        None if prefix.len() > MAX_METHOD || !prefix.iter().all(|&b| is_method_char(b)) => Some(Detected::Tcp),
        None => None,
    }
}

/// Methods are tokens; in practice upper-case letters, `-` and `_` (`GET`, `M-SEARCH`).
fn is_method_char(b: u8) -> bool {
    b.is_ascii_uppercase() || b == b'-' || b == b'_'
}

/// Reads from `io` until the protocol is known (or the client is silent or closes); returns it
/// with the bytes read, which the caller must replay ([`crate::io::Rewind`]).
pub async fn detect<IO: AsyncRead + Unpin>(io: &mut IO) -> std::io::Result<(Detected, Bytes)> {
    let mut buf = BytesMut::with_capacity(MAX_PEEK);
    loop {
        if let Some(found) = classify(&buf) {
            return Ok((found, buf.freeze()));
        }
        let read = tokio::time::timeout(DETECTION_TIMEOUT, io.read_buf(&mut buf)).await;
        match read {
            Ok(Ok(0)) | Err(_) => return Ok((Detected::Tcp, buf.freeze())),
            Ok(Ok(_)) if buf.len() >= MAX_PEEK => {
                return Ok((classify(&buf).unwrap_or(Detected::Tcp), buf.freeze()));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[test]
    fn the_first_bytes_decide() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Detected::Http1));
        assert_eq!(classify(b"M-SEARCH * HTTP/1.1"), Some(Detected::Http1));
        assert_eq!(classify(H2_PREFACE), Some(Detected::Http2));
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n"), None, "a preface prefix needs more");
        assert_eq!(classify(b"PRI * HTTP/1.1"), Some(Detected::Http1), "a PRI request that is no preface");
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b""), None);
        assert_eq!(classify(b"\x16\x03\x01\x02\x00"), Some(Detected::Tcp), "a TLS ClientHello");
        assert_eq!(classify(b"get / HTTP/1.1"), Some(Detected::Tcp), "methods are case-sensitive");
        assert_eq!(classify(b" GET"), Some(Detected::Tcp));
        assert_eq!(classify(b"AAAAAAAAAAAAAAAAAAAAAAAAA"), Some(Detected::Tcp), "too long for a method");
    }

    #[tokio::test]
    async fn a_silent_client_is_tcp_and_bytes_are_kept() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"GE").await.unwrap();
        let detecting = tokio::spawn(async move { detect(&mut server).await.unwrap() });
        tokio::task::yield_now().await;
        client.write_all(b"T /x HTTP/1.1\r\n").await.unwrap();
        let (found, bytes) = detecting.await.unwrap();
        assert_eq!(found, Detected::Http1);
        assert!(bytes.starts_with(b"GET"));

        let (_client, mut server) = tokio::io::duplex(1024);
        let (found, bytes) = detect(&mut server).await.unwrap();
        assert_eq!((found, bytes.len()), (Detected::Tcp, 0), "nothing sent within the timeout");
    }
}
