//! Raw HTTP/2 framing over prior-knowledge h2c, for what the `h2` client
//! will not send: frames written by hand and header blocks of HPACK
//! literals (never indexed, never Huffman-coded), so a test can put any
//! byte in a name or value.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const CONTINUATION: u8 = 9;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const ACK: u8 = 0x1;

/// One frame: 9-byte head, then `payload`.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or GOAWAY frame.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        let code = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([code[0], code[1], code[2], code[3]]))
    }
}

pub async fn read<R: AsyncRead + Unpin>(s: &mut R) -> std::io::Result<Frame> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await?;
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await?;
    Ok(Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        payload,
    })
}

/// Connects, exchanges the preface and SETTINGS (acknowledging the
/// server's), and returns the stream.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    loop {
        let f = read(&mut s).await.unwrap();
        if f.kind == SETTINGS && f.flags & ACK == 0 {
            s.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
            return s;
        }
    }
}

/// Reads frames until a GOAWAY and returns its error code, or `None`
/// when the connection ends without one.
pub async fn goaway_code<R: AsyncRead + Unpin>(s: &mut R) -> Option<u32> {
    while let Ok(f) = read(s).await {
        if f.kind == GOAWAY {
            return f.error_code();
        }
    }
    None
}

/// An HPACK string length (7-bit prefix integer, no Huffman).
pub fn length(mut n: usize, out: &mut Vec<u8>) {
    if n < 127 {
        out.push(n as u8);
        return;
    }
    out.push(127);
    n -= 127;
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
}

/// One header field as an HPACK literal without indexing, with a literal
/// name: the bytes reach the server's decoder exactly as given.
pub fn literal(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.push(0x00);
    length(name.len(), out);
    out.extend_from_slice(name);
    length(value.len(), out);
    out.extend_from_slice(value);
}

/// GET `path` on authority `x`: static-table method and scheme, literal
/// path and authority without indexing.
pub fn get(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x04];
    length(path.len(), &mut block);
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x01, 0x01, b'x']);
    block
}

/// The `:status` at the start of a response header block that h2 encoded:
/// an indexed static-table status (200, 204, 206, 304, 400, 404, 500) or a
/// literal one with the static `:status` name and a plain value. `None`
/// for anything else (a Huffman-coded value, say).
pub fn status(block: &[u8]) -> Option<u16> {
    // Skip dynamic table size updates (001xxxxx).
    let start = block.iter().position(|b| b & 0xe0 != 0x20)?;
    let block = &block[start..];
    const INDEXED: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];
    match *block.first()? {
        b @ 0x88..=0x8e => Some(INDEXED[usize::from(b - 0x88)]),
        // Literal with incremental indexing / without / never, name index 8.
        0x48 | 0x08 | 0x18 => {
            let len = *block.get(1)?;
            if len & 0x80 != 0 {
                return None;
            }
            let value = block.get(2..2 + usize::from(len))?;
            std::str::from_utf8(value).ok()?.parse().ok()
        }
        _ => None,
    }
}
