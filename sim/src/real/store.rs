//! The fenced store of a real run: a raw NATS client of the runner, subscribed to the store's
//! subject on the first node's server (the first side of every partition, as in the simulator), taking every write the agents' test-only writers
//! (`--test-fenced-writes`) publish, refusing a token below the highest it accepted (unless it
//! is the known-bad store), and judging what it accepted with the simulator's effects oracle,
//! stamped with true time (the host's `CLOCK_MONOTONIC`). It reconnects while its server is
//! down; writes published meanwhile are lost, as they would be for a real store.

use super::procs::true_ns;
use crate::oracle::effects::{Effects, Write};
use std::io::{Read, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running store.
pub struct Store {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    effects: Arc<Mutex<Effects>>,
}

impl Store {
    /// Starts the store on the server at `port`, for `subject`; writes are stamped with true
    /// time less `t0`; `checks`: whether it refuses stale tokens.
    pub fn start(port: u16, subject: String, checks: bool, t0: u128) -> Store {
        let stop = Arc::new(AtomicBool::new(false));
        let effects = Arc::new(Mutex::new(Effects::default()));
        let (s, e) = (stop.clone(), effects.clone());
        let thread = std::thread::spawn(move || {
            let mut highest = 0u64;
            while !s.load(Ordering::SeqCst) {
                serve(port, &subject, &s, &mut |body| {
                    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
                        return;
                    };
                    let (Some(node), Some(token)) = (v["node"].as_str(), v["token"].as_u64()) else {
                        return;
                    };
                    let accepted = !checks || token >= highest;
                    if accepted {
                        highest = highest.max(token);
                    }
                    e.lock().unwrap_or_else(|p| p.into_inner()).take(Write {
                        at: true_ns().saturating_sub(t0),
                        node: node.to_string(),
                        token,
                        accepted,
                    });
                });
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Store {
            stop,
            thread: Some(thread),
            effects,
        }
    }

    /// What the store accepted so far, judged.
    pub fn effects(&self) -> Effects {
        self.effects.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One connection: subscribes to `subject` and hands every message's payload to `take` until
/// the connection ends or `stop` is set.
pub(crate) fn serve(port: u16, subject: &str, stop: &AtomicBool, take: &mut dyn FnMut(&[u8])) {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let hello = format!("CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\nSUB {subject} 1\r\nPING\r\n");
    if s.write_all(hello.as_bytes()).is_err() {
        return;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while !stop.load(Ordering::SeqCst) {
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => return,
        }
        for f in frames(&mut buf) {
            match f {
                Frame::Msg(body) => take(&body),
                Frame::Ping => {
                    if s.write_all(b"PONG\r\n").is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// What the server sent that the store acts on.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Msg(Vec<u8>),
    Ping,
}

/// Takes every complete frame off the front of `buf` (a partial one stays for the next read).
fn frames(buf: &mut Vec<u8>) -> Vec<Frame> {
    let mut out = Vec::new();
    while let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") {
        let line = String::from_utf8_lossy(&buf[..eol]).to_string();
        if let Some(rest) = line.strip_prefix("MSG ") {
            let Some(len) = rest.split_whitespace().last().and_then(|n| n.parse::<usize>().ok()) else {
                buf.drain(..eol + 2);
                continue;
            };
            let end = eol + 2 + len + 2;
            if buf.len() < end {
                break;
            }
            out.push(Frame::Msg(buf[eol + 2..eol + 2 + len].to_vec()));
            buf.drain(..end);
        } else {
            if line == "PING" {
                out.push(Frame::Ping);
            }
            buf.drain(..eol + 2);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_taken_whole_and_a_partial_one_waits() {
        let mut buf = b"INFO {}\r\n+OK\r\nMSG s 1 5\r\nhello\r\nPING\r\nMSG s 1 _INBOX.x 3\r\nab".to_vec();
        assert_eq!(frames(&mut buf), vec![Frame::Msg(b"hello".to_vec()), Frame::Ping]);
        assert_eq!(buf, b"MSG s 1 _INBOX.x 3\r\nab", "the partial message stays");
        buf.extend_from_slice(b"c\r\n");
        assert_eq!(frames(&mut buf), vec![Frame::Msg(b"abc".to_vec())]);
        assert!(buf.is_empty());
    }
}
