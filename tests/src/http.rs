//! A tiny blocking HTTP/1.1 GET over a TCP socket made inside a network namespace (for the node
//! proxy's admin API, which listens on 127.0.0.1 inside the node's namespace).

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use ambit_common::netns::Netns;

/// `GET path` on `addr` from inside `netns`; returns (status, body).
pub fn get(netns: &Netns, addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<(u16, Vec<u8>)> {
    let mut stream = netns.run(|| TcpStream::connect_timeout(&addr, timeout))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    parse(&response).map_err(|m| io::Error::new(io::ErrorKind::InvalidData, format!("GET {path}: {m}")))
}

/// Parses a complete `Connection: close` response (Content-Length, chunked, or read-to-EOF body).
pub fn parse(response: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&response[..split]).map_err(|_| "headers are not UTF-8")?;
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("bad status line")?;
    let body = &response[split + 4..];
    let header = |name: &str| {
        head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return dechunk(body).map(|b| (status, b));
    }
    match header("content-length").map(|v| v.parse::<usize>()) {
        Some(Ok(n)) if n <= body.len() => Ok((status, body[..n].to_vec())),
        Some(Ok(_)) => Err("body shorter than Content-Length".into()),
        Some(Err(_)) => Err("bad Content-Length".into()),
        None => Ok((status, body.to_vec())),
    }
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&body[..line_end]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size {size_text:?}"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_chunked_and_eof_bodies() {
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap(), (200, b"{}".to_vec()));
        let chunked =
            b"HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse(chunked).unwrap(), (503, b"abcde".to_vec()));
        assert_eq!(parse(b"HTTP/1.1 404 Not Found\r\n\r\nnope").unwrap(), (404, b"nope".to_vec()));
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}").is_err());
        assert!(parse(b"garbage").is_err());
    }
}
