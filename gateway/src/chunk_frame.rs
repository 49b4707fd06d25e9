//! The chunked transfer coding on the way out (RFC 9112 §7.1): what goes before and after a
//! chunk's bytes, and the last chunk. Every front end that chunk-encodes a response (the HTTP
//! listener; the ISAPI extension, IIS sending its bytes as they are) frames with this.

/// What follows a chunk's bytes.
pub const CHUNK_END: &[u8] = b"\r\n";

/// The last chunk, with no trailer: the end of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The size line that goes before a chunk of `len` bytes (`{len:x}\r\n`), made on the stack.
#[derive(Clone, Copy)]
pub struct ChunkSize {
    line: [u8; 18],
    start: usize,
}

impl ChunkSize {
    pub fn new(len: usize) -> ChunkSize {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        // 16 hex digits hold any usize; CRLF after them.
        let mut line = [0u8; 18];
        line[16] = b'\r';
        line[17] = b'\n';
        let mut i = 16;
        let mut n = len;
        loop {
            i -= 1;
            line[i] = DIGITS[n & 15];
            n >>= 4;
            if n == 0 || i == 0 {
                break;
            }
        }
        ChunkSize { line, start: i }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.line[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_lines_are_lower_case_hex() {
        assert_eq!(ChunkSize::new(0).as_bytes(), b"0\r\n");
        assert_eq!(ChunkSize::new(5).as_bytes(), b"5\r\n");
        assert_eq!(ChunkSize::new(255).as_bytes(), b"ff\r\n");
        assert_eq!(ChunkSize::new(0xabc).as_bytes(), b"abc\r\n");
        assert_eq!(ChunkSize::new(65536).as_bytes(), b"10000\r\n");
        assert_eq!(ChunkSize::new(16 * 1024).as_bytes(), b"4000\r\n");
        let max = format!("{:x}\r\n", usize::MAX);
        assert_eq!(ChunkSize::new(usize::MAX).as_bytes(), max.as_bytes());
    }
}
