//! Incremental, strict decoder for the chunked transfer coding (RFC 9112 §7.1).
//!
//! A byte-at-a-time state machine for the framing and a block copy for chunk data, so any split
//! of the input across calls (and any size of `out`) gives the same bytes and the same errors.
//! Extensions are validated and dropped; trailers are validated and dropped, never surfaced.
//! Hand-written, like the head parser: stricter than httparse's `parse_chunk_size`, and it covers
//! the trailers, which that leaves to the caller. `fuzz/fuzz_targets/chunked.rs` checks that any
//! split gives the same result. The byte classes are `grammar`'s, the same the head parser uses.

use super::grammar::{hex_value, is_field_value_byte, is_qdtext, is_tchar};
use crate::reject::Reject;

/// Any chunked framing error: the caller answers 400 and closes.
const fn fail(reason: &'static str) -> Reject {
    Reject::new(400, reason)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Start of a chunk-size line: a HEXDIG is required.
    SizeStart,
    Size,
    /// BWS after the size: only legal before a `;`.
    SizeBws,
    ExtBeforeName,
    ExtName,
    /// BWS after an extension name: `=` or `;` must follow.
    ExtAfterName,
    ExtBeforeValue,
    ExtToken,
    ExtQuoted,
    ExtQuotedPair,
    /// After a value: BWS then `;`, or CR directly after the value.
    ExtAfterValue,
    ExtAfterValueBws,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    FinalLf,
    Done,
    Failed,
}

/// Longest trailer name we must recognise (`transfer-encoding`).
const NAME_BUF: usize = 17;

/// Trailer fields refused with 400. Trailers never reach environ, so every other field is
/// validated, counted against the size cap and dropped. RFC 9110 §6.5.1 lists what cannot be
/// a trailer; of that, refused is only what would make a component that merges trailers into
/// the header section read the connection differently from us:
/// - message framing: Content-Length, Transfer-Encoding (RFC 9112 §6, §7.1.2);
/// - routing: Host (RFC 9110 §7.2);
/// - connection control, which decides what the bytes after this message are: Connection
///   (persistence, RFC 9110 §7.6.1) and Upgrade (a protocol switch, §7.8).
///
/// Dropped, as harmless once the content is in and unseen by the app: request modifiers
/// (Expect, TE, Cache-Control, conditionals, Range), authentication (Authorization,
/// Proxy-Authorization), content format (Content-Type, Content-Encoding), Trailer, and all
/// other fields (Vary, X-Forwarded-*, ...).
const FORBIDDEN_TRAILERS: [&[u8]; 5] = [
    b"content-length",
    b"transfer-encoding",
    b"host",
    b"connection",
    b"upgrade",
];

/// Decodes one chunked body. Feed it with `decode` until `is_done`.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// Chunk size being read, then the data bytes still to copy.
    size: u64,
    /// Bytes of the current size line so far: digits, BWS and extensions (not the CRLF).
    line_len: usize,
    /// Bytes of the trailer section so far (field lines with their CRLFs).
    trailer_len: usize,
    /// Start of the current trailer name (enough to recognise a forbidden one).
    name: [u8; NAME_BUF],
    name_len: usize,
    max_line_len: usize,
    max_trailer_size: usize,
}

impl ChunkedDecoder {
    /// The limits request bodies are decoded with (size line 4 KiB, trailers 64 KiB).
    pub fn for_requests() -> Self {
        Self::new(4096, 64 * 1024)
    }

    /// `max_line_len`: longest chunk-size line without its CRLF, the size's digits (leading
    /// zeros too) and the extensions together; `max_trailer_size`: the trailer section's
    /// field lines with their CRLFs.
    pub fn new(max_line_len: usize, max_trailer_size: usize) -> Self {
        ChunkedDecoder {
            state: State::SizeStart,
            size: 0,
            line_len: 0,
            trailer_len: 0,
            name: [0; NAME_BUF],
            name_len: 0,
            max_line_len,
            max_trailer_size,
        }
    }

    /// True once the last chunk, the trailers and the final CRLF have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decode from `input` into `out`. Returns (consumed, produced). Stops when input is
    /// exhausted, `out` is full and chunk data comes next, or the body (incl. trailers and
    /// final CRLF) is complete; bytes after the body are not consumed. After an error every
    /// further call fails too.
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), Reject> {
        if self.state == State::Failed {
            return Err(fail("chunked body already failed"));
        }
        let mut i = 0;
        let mut o = 0;
        while i < input.len() {
            match self.state {
                State::Data => {
                    let room = out.len() - o;
                    if room == 0 {
                        break;
                    }
                    let window = room.min(input.len() - i);
                    let n = usize::try_from(self.size).map_or(window, |s| s.min(window));
                    out[o..o + n].copy_from_slice(&input[i..i + n]);
                    i += n;
                    o += n;
                    // n <= size by construction, so this never saturates.
                    self.size = self.size.saturating_sub(n as u64);
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                }
                State::Done | State::Failed => break,
                _ => {
                    let c = input[i];
                    i += 1;
                    if let Err(e) = self.step(c) {
                        self.state = State::Failed;
                        return Err(e);
                    }
                }
            }
        }
        Ok((i, o))
    }

    /// One framing byte.
    fn step(&mut self, c: u8) -> Result<(), Reject> {
        use State::*;
        let is_ws = c == b' ' || c == b'\t';
        // Every byte of a size line before its CR counts against the cap, the digits too:
        // leading zeros never overflow the size, and would otherwise be a line without end.
        if c != b'\r'
            && matches!(
                self.state,
                SizeStart
                    | Size
                    | SizeBws
                    | ExtBeforeName
                    | ExtName
                    | ExtAfterName
                    | ExtBeforeValue
                    | ExtToken
                    | ExtQuoted
                    | ExtQuotedPair
                    | ExtAfterValue
                    | ExtAfterValueBws
            )
        {
            self.line_len = self.line_len.saturating_add(1);
            if self.line_len > self.max_line_len {
                return Err(fail("chunk size line too long"));
            }
        }
        if matches!(self.state, TrailerName | TrailerValue | TrailerLf)
            || (self.state == TrailerStart && c != b'\r')
        {
            self.trailer_len = self.trailer_len.saturating_add(1);
            if self.trailer_len > self.max_trailer_size {
                return Err(fail("trailer section too large"));
            }
        }

        self.state = match (self.state, c) {
            (SizeStart | Size, _) if c.is_ascii_hexdigit() => {
                let d = hex_value(c).ok_or(fail("invalid chunk size"))?;
                self.size = self
                    .size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(d))
                    .ok_or(fail("chunk size overflow"))?;
                Size
            }
            (SizeStart, _) => return Err(fail("chunk size missing")),
            (Size, b'\r') => SizeLf,
            (Size | SizeBws, b';') => ExtBeforeName,
            (Size | SizeBws, _) if is_ws => SizeBws,
            (Size, _) => return Err(fail("invalid chunk size")),
            (SizeBws, _) => return Err(fail("whitespace after chunk size")),

            (ExtBeforeName, _) if is_ws => ExtBeforeName,
            (ExtBeforeName | ExtName, _) if is_tchar(c) => ExtName,
            (ExtName | ExtAfterName, b';') => ExtBeforeName,
            (ExtName | ExtAfterName, b'=') => ExtBeforeValue,
            (ExtName | ExtAfterName, _) if is_ws => ExtAfterName,
            (ExtName, b'\r') => SizeLf,

            (ExtBeforeValue, _) if is_ws => ExtBeforeValue,
            (ExtBeforeValue | ExtToken, _) if is_tchar(c) => ExtToken,
            (ExtBeforeValue, b'"') => ExtQuoted,
            (ExtQuoted, b'"') => ExtAfterValue,
            (ExtQuoted, b'\\') => ExtQuotedPair,
            (ExtQuoted, _) if is_qdtext(c) => ExtQuoted,
            (ExtQuotedPair, _)
                if c == b'\t' || c == b' ' || (0x21..=0x7e).contains(&c) || c >= 0x80 =>
            {
                ExtQuoted
            }
            (ExtToken | ExtAfterValue, b'\r') => SizeLf,
            (ExtToken | ExtAfterValue | ExtAfterValueBws, b';') => ExtBeforeName,
            (ExtToken | ExtAfterValue | ExtAfterValueBws, _) if is_ws => ExtAfterValueBws,
            (
                ExtBeforeName | ExtName | ExtAfterName | ExtBeforeValue | ExtToken | ExtQuoted
                | ExtQuotedPair | ExtAfterValue | ExtAfterValueBws,
                _,
            ) => return Err(fail("invalid chunk extension")),

            (SizeLf, b'\n') => {
                self.line_len = 0;
                if self.size == 0 {
                    TrailerStart
                } else {
                    Data
                }
            }
            (SizeLf, _) => return Err(fail("bare CR on chunk size line")),

            (DataCr, b'\r') => DataLf,
            (DataCr, _) => return Err(fail("chunk data not followed by CRLF")),
            (DataLf, b'\n') => SizeStart,
            (DataLf, _) => return Err(fail("bare CR after chunk data")),

            (TrailerStart, b'\r') => FinalLf,
            (TrailerStart, _) if is_tchar(c) => {
                self.name_len = 0;
                self.push_name(c);
                TrailerName
            }
            (TrailerStart, _) => return Err(fail("invalid trailer line")),
            (TrailerName, _) if is_tchar(c) => {
                self.push_name(c);
                TrailerName
            }
            (TrailerName, b':') => {
                if self.forbidden_name() {
                    return Err(fail("forbidden trailer field"));
                }
                TrailerValue
            }
            (TrailerName, _) => return Err(fail("invalid trailer name")),
            (TrailerValue, b'\r') => TrailerLf,
            (TrailerValue, _) if is_field_value_byte(c) => TrailerValue,
            (TrailerValue, _) => return Err(fail("invalid byte in trailer value")),
            (TrailerLf, b'\n') => TrailerStart,
            (TrailerLf, _) => return Err(fail("bare CR in trailer")),
            (FinalLf, b'\n') => Done,
            (FinalLf, _) => return Err(fail("missing final CRLF")),

            // decode() never steps in these states.
            (Data | Done | Failed, _) => return Err(fail("internal state error")),
        };
        Ok(())
    }

    fn push_name(&mut self, c: u8) {
        if let Some(slot) = self.name.get_mut(self.name_len) {
            *slot = c;
        }
        self.name_len = self.name_len.saturating_add(1);
    }

    fn forbidden_name(&self) -> bool {
        // A name longer than the buffer is longer than every forbidden one.
        self.name
            .get(..self.name_len)
            .is_some_and(|n| FORBIDDEN_TRAILERS.iter().any(|f| n.eq_ignore_ascii_case(f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXT: usize = 64;
    const TRAILERS: usize = 128;

    #[derive(Debug, PartialEq, Eq)]
    struct Outcome {
        body: Vec<u8>,
        consumed: usize,
        done: bool,
        error: Option<&'static str>,
    }

    /// Feeds `input` cut at `cuts`, decoding into an `out` of `out_len` bytes each call.
    fn run(input: &[u8], cuts: &[usize], out_len: usize, ext: usize, trailers: usize) -> Outcome {
        let mut d = ChunkedDecoder::new(ext, trailers);
        let mut body = Vec::new();
        let mut out = vec![0u8; out_len];
        let mut consumed = 0;
        let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c < input.len()).collect();
        bounds.push(input.len());
        let mut start = 0;
        for end in bounds {
            let piece = &input[start..end.max(start)];
            let mut p = 0;
            while p < piece.len() && !d.is_done() {
                match d.decode(&piece[p..], &mut out) {
                    Ok((c, o)) => {
                        assert!(c > 0 || o > 0, "no progress");
                        p += c;
                        consumed += c;
                        body.extend_from_slice(&out[..o]);
                    }
                    Err(e) => {
                        // Output of a failing call is not reported, so only the error compares.
                        return Outcome {
                            body: Vec::new(),
                            consumed: 0,
                            done: false,
                            error: Some(static_reason(e)),
                        };
                    }
                }
            }
            start = end.max(start);
            if d.is_done() {
                break;
            }
        }
        Outcome {
            body,
            consumed,
            done: d.is_done(),
            error: None,
        }
    }

    /// The decoder's reasons are fixed text, so outcomes compare as plain `&str`s.
    fn static_reason(e: Reject) -> &'static str {
        match e.reason {
            std::borrow::Cow::Borrowed(r) => r,
            std::borrow::Cow::Owned(r) => panic!("an allocated reason: {r}"),
        }
    }

    fn whole(input: &[u8]) -> Outcome {
        run(input, &[], 1 << 20, EXT, TRAILERS)
    }

    /// Decodes in one go, then checks every single cut, byte-by-byte feeding, 1-byte `out`
    /// and random cuts give exactly the same outcome.
    fn decode_all_ways(input: &[u8], ext: usize, trailers: usize) -> Outcome {
        let one = run(input, &[], 1 << 20, ext, trailers);
        for cut in 0..=input.len() {
            assert_eq!(
                run(input, &[cut], 1 << 20, ext, trailers),
                one,
                "cut at {cut}"
            );
        }
        let every: Vec<usize> = (1..input.len()).collect();
        assert_eq!(
            run(input, &every, 1 << 20, ext, trailers),
            one,
            "byte by byte"
        );
        for out_len in [1, 2, 3, 7] {
            assert_eq!(
                run(input, &[], out_len, ext, trailers),
                one,
                "out of {out_len}"
            );
            assert_eq!(
                run(input, &every, out_len, ext, trailers),
                one,
                "byte by byte, out of {out_len}"
            );
        }
        let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ input.len() as u64;
        for _ in 0..50 {
            let mut cuts = Vec::new();
            let mut at = 0usize;
            loop {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                at += 1 + (rng % 9) as usize;
                if at >= input.len() {
                    break;
                }
                cuts.push(at);
            }
            let out_len = 1 + (rng % 13) as usize;
            assert_eq!(
                run(input, &cuts, out_len, ext, trailers),
                one,
                "cuts {cuts:?}, out {out_len}"
            );
        }
        one
    }

    fn ok(input: &[u8]) -> Vec<u8> {
        let o = decode_all_ways(input, EXT, TRAILERS);
        assert_eq!(o.error, None, "{:?}", String::from_utf8_lossy(input));
        assert!(o.done, "{:?} not done", String::from_utf8_lossy(input));
        assert_eq!(o.consumed, input.len());
        o.body
    }

    fn bad(input: &[u8]) -> &'static str {
        let o = decode_all_ways(input, EXT, TRAILERS);
        match o.error {
            Some(reason) => reason,
            None => panic!("{:?} accepted: {o:?}", String::from_utf8_lossy(input)),
        }
    }

    fn encode(body: &[u8], chunk: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for c in body.chunks(chunk) {
            v.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            v.extend_from_slice(c);
            v.extend_from_slice(b"\r\n");
        }
        v.extend_from_slice(b"0\r\n\r\n");
        v
    }

    #[test]
    fn single_chunk() {
        assert_eq!(ok(b"5\r\nhello\r\n0\r\n\r\n"), b"hello");
    }

    #[test]
    fn several_chunks() {
        assert_eq!(ok(b"3\r\nabc\r\n1\r\nd\r\n2\r\nef\r\n0\r\n\r\n"), b"abcdef");
    }

    #[test]
    fn empty_body() {
        assert_eq!(ok(b"0\r\n\r\n"), b"");
    }

    #[test]
    fn hex_case_and_leading_zeros() {
        assert_eq!(
            ok(b"a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n").len(),
            20
        );
        assert_eq!(ok(b"0005\r\nhello\r\n000\r\n\r\n"), b"hello");
        assert_eq!(
            ok(b"1F\r\n0123456789012345678901234567890\r\n0\r\n\r\n").len(),
            31
        );
    }

    #[test]
    fn data_may_contain_crlf_and_anything() {
        assert_eq!(ok(b"7\r\n\r\n0\r\n\r\n\r\n0\r\n\r\n"), b"\r\n0\r\n\r\n");
        assert_eq!(ok(b"3\r\n\0\xff\n\r\n0\r\n\r\n"), b"\0\xff\n");
    }

    #[test]
    fn size_overflow() {
        bad(b"10000000000000000\r\n");
        bad(b"fffffffffffffffff\r\n");
        // u64::MAX itself is a size (the body limit is the caller's business).
        let mut d = ChunkedDecoder::new(EXT, TRAILERS);
        assert_eq!(
            d.decode(b"ffffffffffffffff\r\nab", &mut [0; 8]),
            Ok((20, 2))
        );
        // Leading zeros do not count towards overflow.
        assert_eq!(
            ok(b"0000000000000000000000000000000000001\r\nx\r\n0\r\n\r\n"),
            b"x"
        );
    }

    #[test]
    fn size_prefixes_and_signs() {
        for input in [
            &b"0x5\r\nhello\r\n0\r\n\r\n"[..],
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"6_0\r\n",
            b"x5\r\n",
            b"5g\r\n",
            b"0x04\r\nabcd\r\n0\r\n\r\n",
        ] {
            bad(input);
        }
    }

    #[test]
    fn size_whitespace() {
        bad(b" 5\r\nhello\r\n0\r\n\r\n");
        bad(b"5 \r\nhello\r\n0\r\n\r\n");
        bad(b"5\t\r\nhello\r\n0\r\n\r\n");
        bad(b"\t5\r\nhello\r\n0\r\n\r\n");
        bad(b"0 \r\n\r\n");
    }

    #[test]
    fn empty_size_line() {
        bad(b"\r\nhello\r\n0\r\n\r\n");
        bad(b"5\r\nhello\r\n\r\n");
    }

    #[test]
    fn extension_without_size() {
        bad(b";a=b\r\nhello\r\n0\r\n\r\n");
    }

    #[test]
    fn bare_lf_after_size() {
        bad(b"5\nhello\r\n0\r\n\r\n");
        bad(b"0\n\r\n");
    }

    #[test]
    fn bare_cr_after_size() {
        bad(b"5\rhello\r\n0\r\n\r\n");
        bad(b"5\r\rhello\r\n0\r\n\r\n");
    }

    #[test]
    fn extensions_ignored() {
        for input in [
            &b"5;a\r\nhello\r\n0\r\n\r\n"[..],
            b"5;a=b\r\nhello\r\n0;last\r\n\r\n",
            b"5;a=\"quoted; value\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"q\\\"x\\\\\"\r\nhello\r\n0\r\n\r\n",
            b"5;a;b=c;d=\"\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"\xe9\"\r\nhello\r\n0\r\n\r\n",
        ] {
            assert_eq!(ok(input), b"hello", "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn extension_bws() {
        // RFC 9112 §7.1.1: BWS around ';' and '=' is parsed (and removed).
        assert_eq!(ok(b"5 ;a\r\nhello\r\n0\r\n\r\n"), b"hello");
        assert_eq!(ok(b"5\t; a = b ;\tc\r\nhello\r\n0\r\n\r\n"), b"hello");
        assert_eq!(ok(b"5;a =\"x\" ; b\r\nhello\r\n0\r\n\r\n"), b"hello");
    }

    #[test]
    fn extension_syntax_errors() {
        for input in [
            &b"5;\r\nhello\r\n0\r\n\r\n"[..],
            b"5;a=\r\nhello\r\n0\r\n\r\n",
            b"5;=b\r\nhello\r\n0\r\n\r\n",
            b"5;a b\r\nhello\r\n0\r\n\r\n",
            b"5;a=b \r\nhello\r\n0\r\n\r\n",
            b"5;a \r\nhello\r\n0\r\n\r\n",
            b"5;a=b c\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\"y\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"x\\\x01\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=\x80\r\nhello\r\n0\r\n\r\n",
            b"5;a(b\r\nhello\r\n0\r\n\r\n",
        ] {
            bad(input);
        }
    }

    #[test]
    fn bare_lf_or_cr_in_extension() {
        bad(b"5;a\nhello\r\n0\r\n\r\n");
        bad(b"5;a\rb\r\nhello\r\n0\r\n\r\n");
        bad(b"5;a=\"\n\"\r\nhello\r\n0\r\n\r\n");
    }

    #[test]
    fn extension_length_cap() {
        // A 9-byte size line: "5" and ";abc=def".
        let input = b"5;abc=def\r\nhello\r\n0\r\n\r\n";
        let o = decode_all_ways(input, 9, TRAILERS);
        assert_eq!((o.error, o.body.as_slice()), (None, &b"hello"[..]));
        let o = decode_all_ways(input, 8, TRAILERS);
        assert_eq!(o.error, Some("chunk size line too long"));
        // The cap is per line, not per body.
        let o = decode_all_ways(
            b"1;abcdefg\r\na\r\n1;abcdefg\r\nb\r\n0;abcdefg\r\n\r\n",
            9,
            TRAILERS,
        );
        assert_eq!((o.error, o.body.as_slice()), (None, &b"ab"[..]));
    }

    #[test]
    fn size_line_cap_counts_the_digits() {
        // Issue 16 item 12: leading zeros never overflow the size, so unless the digits count
        // against the cap a size line could grow without end.
        let o = decode_all_ways(b"00000005\r\nhello\r\n0\r\n\r\n", 8, TRAILERS);
        assert_eq!((o.error, o.body.as_slice()), (None, &b"hello"[..]));
        let o = decode_all_ways(b"000000005\r\nhello\r\n0\r\n\r\n", 8, TRAILERS);
        assert_eq!(o.error, Some("chunk size line too long"));
        // Digits and extensions share it.
        let o = decode_all_ways(b"05;a=bcd\r\nhello\r\n0\r\n\r\n", 8, TRAILERS);
        assert_eq!((o.error, o.body.as_slice()), (None, &b"hello"[..]));
        let o = decode_all_ways(b"005;a=bcd\r\nhello\r\n0\r\n\r\n", 8, TRAILERS);
        assert_eq!(o.error, Some("chunk size line too long"));
        // The last chunk's line too, and for requests the cap is 4 KiB.
        let o = decode_all_ways(b"000000000\r\n\r\n", 8, TRAILERS);
        assert_eq!(o.error, Some("chunk size line too long"));
        let mut d = ChunkedDecoder::for_requests();
        let zeros = [b'0'; 4096];
        assert_eq!(d.decode(&zeros, &mut [0; 8]), Ok((4096, 0)));
        assert_eq!(
            d.decode(b"1\r\nx\r\n0\r\n\r\n", &mut [0; 8]),
            Err(fail("chunk size line too long"))
        );
    }

    #[test]
    fn data_must_end_with_crlf() {
        bad(b"5\r\nhelloX\r\n0\r\n\r\n");
        bad(b"5\r\nhello\n0\r\n\r\n");
        bad(b"5\r\nhello\rX0\r\n\r\n");
        bad(b"5\r\nhello0\r\n\r\n");
        bad(b"3\r\nhello\r\n0\r\n\r\n");
    }

    #[test]
    fn missing_final_crlf() {
        bad(b"0\r\n\x00");
        bad(b"0\r\n\rX");
        bad(b"0\r\n\n");
        let o = whole(b"5\r\nhello\r\n0\r\n");
        assert_eq!((o.done, o.error), (false, None));
    }

    #[test]
    fn trailers_dropped() {
        assert_eq!(
            ok(b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other:\r\n\r\n"),
            b"hello"
        );
        assert_eq!(ok(b"0\r\nX: caf\xe9\t!\r\n\r\n"), b"");
        assert_eq!(
            ok(b"0\r\nauthorization-x: 1\r\ncontent-lengthy: 2\r\n\r\n"),
            b""
        );
    }

    #[test]
    fn forbidden_trailers() {
        for name in [
            "Content-Length",
            "transfer-encoding",
            "HOST",
            "Connection",
            "UPGRADE",
        ] {
            let input = format!("5\r\nhello\r\n0\r\nX-Fine: 1\r\n{name}: 5\r\n\r\n");
            assert_eq!(bad(input.as_bytes()), "forbidden trailer field", "{name}");
        }
    }

    #[test]
    fn ordinary_trailers_dropped() {
        // Issue 16 item 17: fields that cannot change framing or routing are dropped, not
        // refused; the size cap still holds for them.
        for name in [
            "Content-Type",
            "Vary",
            "Authorization",
            "Proxy-Authorization",
            "Expect",
            "Content-Encoding",
            "Trailer",
            "TE",
            "X-Forwarded-For",
            "Content-Lengths",
            "Hosts",
        ] {
            let input = format!("5\r\nhello\r\n0\r\n{name}: x\r\nVary: y\r\n\r\n");
            assert_eq!(ok(input.as_bytes()), b"hello", "{name}");
        }
        let input = b"0\r\nContent-Type: text/plain\r\nVary: x\r\n\r\n";
        let o = decode_all_ways(input, EXT, 35);
        assert_eq!((o.error, o.done), (None, true));
        let o = decode_all_ways(input, EXT, 34);
        assert_eq!(o.error, Some("trailer section too large"));
    }

    #[test]
    fn trailer_syntax_errors() {
        for input in [
            &b"0\r\nX: a\r\n b\r\n\r\n"[..],
            b"0\r\n X: a\r\n\r\n",
            b"0\r\nX : a\r\n\r\n",
            b"0\r\n: a\r\n\r\n",
            b"0\r\nNoColon\r\n\r\n",
            b"0\r\nX: a\nY: b\r\n\r\n",
            b"0\r\nX: a\rY: b\r\n\r\n",
            b"0\r\nX: a\0b\r\n\r\n",
            b"0\r\nX: \x7f\r\n\r\n",
            b"0\r\nX\xe9: a\r\n\r\n",
        ] {
            bad(input);
        }
    }

    #[test]
    fn trailer_size_cap() {
        // "X: 1234\r\n" is 9 bytes; the final CRLF does not count.
        let input = b"0\r\nX: 1234\r\n\r\n";
        let o = decode_all_ways(input, EXT, 9);
        assert_eq!((o.error, o.done), (None, true));
        let o = decode_all_ways(input, EXT, 8);
        assert_eq!(o.error, Some("trailer section too large"));
        let o = decode_all_ways(b"0\r\n\r\n", EXT, 0);
        assert_eq!((o.error, o.done), (None, true));
    }

    #[test]
    fn pipelined_bytes_are_not_consumed() {
        let input = b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        let mut d = ChunkedDecoder::new(EXT, TRAILERS);
        let mut out = [0u8; 64];
        assert_eq!(d.decode(input, &mut out), Ok((15, 5)));
        assert!(d.is_done());
        assert_eq!(d.decode(&input[15..], &mut out), Ok((0, 0)));
        let o = decode_all_ways(input, EXT, TRAILERS);
        assert_eq!(
            (o.consumed, o.done, o.body.as_slice()),
            (15, true, &b"hello"[..])
        );
    }

    #[test]
    fn full_out_stops_only_before_data() {
        let mut d = ChunkedDecoder::new(EXT, TRAILERS);
        let mut out = [0u8; 5];
        // Framing after the last data byte is consumed even though `out` is full.
        assert_eq!(d.decode(b"5\r\nhello\r\n0\r\n\r\n", &mut out), Ok((15, 5)));
        assert!(d.is_done());
        let mut d = ChunkedDecoder::new(EXT, TRAILERS);
        assert_eq!(
            d.decode(b"2\r\nab\r\n2\r\ncd\r\n", &mut out[..2]),
            Ok((10, 2))
        );
        assert_eq!(d.decode(b"cd\r\n", &mut []), Ok((0, 0)));
        assert_eq!(d.decode(b"cd\r\n", &mut out[..1]), Ok((1, 1)));
    }

    #[test]
    fn errors_are_sticky() {
        let mut d = ChunkedDecoder::new(EXT, TRAILERS);
        assert!(d.decode(b"zz", &mut [0; 4]).is_err());
        assert!(d.decode(b"5\r\nhello\r\n0\r\n\r\n", &mut [0; 8]).is_err());
        assert!(d.decode(b"", &mut [0; 8]).is_err());
        assert!(!d.is_done());
    }

    #[test]
    fn error_stops_at_the_bad_byte() {
        let mut d = ChunkedDecoder::new(EXT, TRAILERS);
        let mut out = [0u8; 16];
        assert_eq!(d.decode(b"3\r\nabc\r\n", &mut out), Ok((8, 3)));
        assert_eq!(
            d.decode(b"+1\r\n", &mut out),
            Err(Reject::new(400, "chunk size missing"))
        );
    }

    #[test]
    fn big_body_in_4k_chunks() {
        let body: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
        let input = encode(&body, 4096);
        for out_len in [1, 1000, 4096, 65536] {
            let o = run(
                &input,
                &[1, 4099, 4100, 9000, 30000],
                out_len,
                EXT,
                TRAILERS,
            );
            assert_eq!((o.done, o.consumed), (true, input.len()));
            assert_eq!(o.body, body);
        }
    }

    #[test]
    fn random_bodies_round_trip() {
        let mut rng = 12345u64;
        for _ in 0..40 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let len = (rng % 300) as usize;
            let body: Vec<u8> = (0..len).map(|i| (i as u64 ^ rng) as u8).collect();
            let input = encode(&body, 1 + (rng % 50) as usize);
            assert_eq!(ok(&input), body);
        }
    }

    /// Mutated bodies: any split gives what one call gives, and nothing panics.
    #[test]
    fn mutated_bodies_agree_across_splits() {
        let seeds: [&[u8]; 3] = [
            b"5;a=\"b\"\r\nhello\r\n0\r\nX: y\r\n\r\n",
            b"1 ; x = y\r\nA\r\n0\r\n\r\n",
            b"a\r\n0123456789\r\n0;z\r\nT: 1\r\nU: \xe9\r\n\r\nNEXT",
        ];
        let alphabet = b"\r\n \t;=\"\\:0aFx\x00\x7f\x80";
        let mut rng = 0xdead_beef_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..400 {
            let mut v = seeds[(next() % 3) as usize].to_vec();
            for _ in 0..(1 + next() % 3) {
                let at = (next() as usize) % v.len();
                v[at] = alphabet[(next() as usize) % alphabet.len()];
            }
            decode_all_ways(&v, 6, 10);
        }
    }
}
