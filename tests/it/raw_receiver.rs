//! A receiver scripted byte by byte on a plain TCP socket, for what no HTTP framework will do on purpose:
//! answer bodies that never end or end after 50 MB, answers that drip one byte at a time, invalid UTF-8,
//! connections that are accepted and never answered or dropped half-way through the request, and garbage
//! where a TLS handshake should be. Every accepted connection is counted, so a test can also prove that the
//! daemon never connected at all.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP listener on 127.0.0.1 that hands every connection to a script.
pub struct RawReceiver {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    accepted: Arc<AtomicUsize>,
    /// Connection scripts that have returned (the peer closed, or the script gave up on the socket).
    finished: Arc<AtomicUsize>,
    accept_loop: JoinHandle<()>,
}

impl RawReceiver {
    /// Starts listening; each accepted connection runs `script` in its own task.
    pub async fn start<F, Fut>(script: F) -> RawReceiver
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let finished = Arc::new(AtomicUsize::new(0));
        let done = Arc::clone(&finished);
        let accept_loop = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let connection = script(stream);
                let done = Arc::clone(&done);
                tokio::spawn(async move {
                    connection.await;
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        RawReceiver {
            addr,
            accepted,
            finished,
            accept_loop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The same port spoken to with TLS, which this receiver does not speak.
    pub fn https_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connection scripts that have ended.
    pub fn finished(&self) -> usize {
        self.finished.load(Ordering::SeqCst)
    }
}

impl Drop for RawReceiver {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

/// Reads one request: the head up to the blank line, then `Content-Length` bytes of body. `None` when the
/// peer closed or sent something that is not an HTTP/1.1 request head.
pub async fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = find(&buffer, b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buffer.split_off(head_end);
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads the request and writes `answer` (status line, headers and body, verbatim), then closes.
pub async fn answer_with(mut stream: TcpStream, answer: &[u8]) {
    if read_request(&mut stream).await.is_some() {
        let _ = stream.write_all(answer).await;
        let _ = stream.shutdown().await;
    }
}

/// Holds the connection, reading and discarding whatever comes, until the peer closes it.
pub async fn hold_until_closed(stream: &mut TcpStream) {
    let mut sink = [0u8; 8192];
    while let Ok(n) = stream.read(&mut sink).await {
        if n == 0 {
            return;
        }
    }
}

/// Writes `piece` every `every` until the peer stops taking it.
pub async fn drip(stream: &mut TcpStream, piece: &[u8], every: Duration) {
    loop {
        if stream.write_all(piece).await.is_err() || stream.flush().await.is_err() {
            return;
        }
        tokio::time::sleep(every).await;
    }
}

/// Writes `head` and then up to `total` body bytes in 64 KiB chunks, adding what was written to `written`;
/// stops when the peer stops reading (it hung up).
pub async fn stream_body(stream: &mut TcpStream, head: &[u8], total: usize, written: &AtomicUsize) {
    if stream.write_all(head).await.is_err() {
        return;
    }
    let chunk = vec![b'x'; 64 * 1024];
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk.len());
        match stream.write(&chunk[..n]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                written.fetch_add(n, Ordering::SeqCst);
                left -= n;
            }
        }
    }
}
