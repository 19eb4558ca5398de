//! The GOAWAY `ENHANCE_YOUR_CALM` that ends an HTTP/2 connection whose
//! client resets most of its streams right after starting them. hyper can
//! only shut a connection down with `NO_ERROR`, so the client socket's
//! wrapper (`client_io::ClientStream`) follows the frames hyper writes
//! (`OutFrames`) and, once the connection is told to calm down, puts this
//! frame on the wire at the next frame boundary instead of what hyper
//! writes from then on (`Calm`).
//! Invariant: the GOAWAY never lands inside another frame; nothing hyper
//! writes after it reaches the client.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::AsyncWrite;

/// HTTP/2 frame header size.
const HEADER: usize = 9;
/// RFC 9113 error code `ENHANCE_YOUR_CALM`.
const ENHANCE_YOUR_CALM: u32 = 0xb;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_GOAWAY: u8 = 0x7;

/// Where the server's outgoing HTTP/2 byte stream is: inside a frame
/// header, inside a payload, or between frames. Starts between frames
/// (the server's first bytes are its SETTINGS frame).
#[derive(Debug, Default)]
pub struct OutFrames {
    header: [u8; HEADER],
    have: usize,
    payload_left: usize,
    /// The highest stream the server answered (sent HEADERS on).
    last_stream: u32,
}

impl OutFrames {
    /// Follows `bytes`, written in this order.
    pub fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let skip = self.payload_left.min(bytes.len());
                self.payload_left -= skip;
                bytes = &bytes[skip..];
                continue;
            }
            let take = (HEADER - self.have).min(bytes.len());
            self.header[self.have..self.have + take].copy_from_slice(&bytes[..take]);
            self.have += take;
            bytes = &bytes[take..];
            if self.have == HEADER {
                let h = &self.header;
                self.payload_left =
                    usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                if h[3] == TYPE_HEADERS {
                    self.last_stream = self.last_stream.max(stream);
                }
                self.have = 0;
            }
        }
    }

    /// Follows the first `n` bytes of `bufs`.
    pub fn advance_vectored(&mut self, bufs: &[io::IoSlice<'_>], mut n: usize) {
        for buf in bufs {
            if n == 0 {
                break;
            }
            let take = n.min(buf.len());
            self.advance(&buf[..take]);
            n -= take;
        }
    }

    /// Between two frames: a new frame may start here.
    pub fn is_at_boundary(&self) -> bool {
        self.have == 0 && self.payload_left == 0
    }

    /// GOAWAY `ENHANCE_YOUR_CALM` naming the last stream answered.
    fn goaway(&self) -> [u8; HEADER + 8] {
        let mut frame = [0u8; HEADER + 8];
        frame[2] = 8;
        frame[3] = TYPE_GOAWAY;
        frame[HEADER..HEADER + 4].copy_from_slice(&self.last_stream.to_be_bytes());
        frame[HEADER + 4..].copy_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
        frame
    }
}

/// The GOAWAY on its way out: written over as many polls as the socket
/// needs, then flushed; after that every write fails.
#[derive(Debug)]
pub struct Calm {
    frame: [u8; HEADER + 8],
    written: usize,
}

impl Calm {
    pub fn new(frames: &OutFrames) -> Self {
        Calm {
            frame: frames.goaway(),
            written: 0,
        }
    }

    /// Writes what is left of the frame to `inner` and flushes it; then
    /// fails, which ends hyper's connection (the socket closes with it).
    pub fn poll_write<S: AsyncWrite + Unpin>(
        &mut self,
        inner: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        while self.written < self.frame.len() {
            let n = ready!(Pin::new(&mut *inner).poll_write(cx, &self.frame[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        ready!(Pin::new(&mut *inner).poll_flush(cx))?;
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "GOAWAY ENHANCE_YOUR_CALM sent: most streams were reset right after they started",
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, stream: u32, payload: usize) -> Vec<u8> {
        let mut f = vec![
            (payload >> 16) as u8,
            (payload >> 8) as u8,
            payload as u8,
            kind,
            0,
        ];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend(std::iter::repeat_n(0xaa, payload));
        f
    }

    #[test]
    fn frame_boundaries_are_found_however_the_bytes_are_cut() {
        let mut wire = frame(0x4, 0, 12); // SETTINGS
        wire.extend(frame(TYPE_HEADERS, 1, 30));
        wire.extend(frame(0x0, 1, 300)); // DATA
        wire.extend(frame(TYPE_HEADERS, 7, 5));
        for cut in [1, 2, 9, 10, 64, wire.len()] {
            let mut frames = OutFrames::default();
            let mut boundaries = 0;
            for chunk in wire.chunks(cut) {
                frames.advance(chunk);
                boundaries += usize::from(frames.is_at_boundary());
            }
            assert!(frames.is_at_boundary(), "cut {cut}");
            assert_eq!(frames.last_stream, 7, "cut {cut}");
            assert!(boundaries >= 1);
        }
        let mut frames = OutFrames::default();
        frames.advance(&wire[..20]);
        assert!(!frames.is_at_boundary(), "inside the HEADERS frame");
    }

    #[test]
    fn vectored_writes_are_followed_up_to_what_was_written() {
        let a = frame(TYPE_HEADERS, 3, 4);
        let b = frame(0x0, 3, 10);
        let bufs = [io::IoSlice::new(&a), io::IoSlice::new(&b)];
        let mut frames = OutFrames::default();
        frames.advance_vectored(&bufs, a.len() + 4);
        assert!(!frames.is_at_boundary());
        frames.advance(&b[4..]);
        assert!(frames.is_at_boundary());
        assert_eq!(frames.last_stream, 3);
    }

    #[test]
    fn the_goaway_names_the_last_answered_stream_and_enhance_your_calm() {
        let mut frames = OutFrames::default();
        frames.advance(&frame(TYPE_HEADERS, 41, 3));
        let goaway = frames.goaway();
        assert_eq!(&goaway[..9], &[0, 0, 8, TYPE_GOAWAY, 0, 0, 0, 0, 0]);
        assert_eq!(&goaway[9..13], &41u32.to_be_bytes());
        assert_eq!(&goaway[13..], &ENHANCE_YOUR_CALM.to_be_bytes());
    }
}
