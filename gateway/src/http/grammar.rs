//! The byte grammar of HTTP/1.x (RFC 9110 §5.5, §5.6; RFC 9112; RFC 3986 §3.2.2) shared by the
//! head parser and the chunked decoder: byte classes, word-at-a-time scanners for the long runs,
//! and whitespace trimming. One place, so both parsers agree on what each byte is.

/// tchar (RFC 9110 §5.6.2). The table lives in `responder` because the CGI, ISAPI and config
/// checks use it too; re-exported so the HTTP parsers take all byte classes from here.
pub(crate) use crate::responder::is_tchar;

// Byte classes, one table lookup per byte on the hot loops.
const TOKEN: u8 = 1; // tchar (RFC 9110 §5.6.2)
/// Visible ASCII: what a request-target may contain.
pub(super) const VCHAR: u8 = 2;
const VALUE: u8 = 4; // field-value octet: HTAB, SP, VCHAR, obs-text (RFC 9110 §5.5)
/// reg-name octet: unreserved / sub-delims / '%' (RFC 3986 §3.2.2).
pub(super) const REG_NAME: u8 = 8;

const fn class_of(b: u8) -> u8 {
    let mut c = 0;
    if is_tchar(b) {
        c |= TOKEN;
    }
    if b >= 0x21 && b <= 0x7e {
        c |= VCHAR;
    }
    if b == b'\t' || (b >= 0x20 && b != 0x7f) {
        c |= VALUE;
    }
    let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    let sub_delims = matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    );
    if unreserved || sub_delims || b == b'%' {
        c |= REG_NAME;
    }
    c
}

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = class_of(i as u8);
        i += 1;
    }
    t
};

#[inline(always)]
pub(super) fn is(b: u8, class: u8) -> bool {
    CLASS[b as usize] & class != 0
}

// Word-at-a-time scanning for the long runs (values, targets): eight bytes per step, falling
// back to the table at the first word that holds a byte needing a closer look.
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Some byte of `x` is below `n` (n <= 0x80; exact as to existence).
#[inline(always)]
fn has_below(x: u64, n: u8) -> bool {
    x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS != 0
}

/// Some byte of `x` is DEL.
#[inline(always)]
fn has_del(x: u64) -> bool {
    let y = x ^ (ONES * 0x7f);
    y.wrapping_sub(ONES) & !y & HIGHS != 0
}

#[inline(always)]
fn word_at(b: &[u8], i: usize) -> Option<u64> {
    let w: [u8; 8] = b.get(i..i.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(w))
}

/// First index in `i..lim` whose byte is not a tchar (or `lim`). Names and methods are short:
/// a byte loop.
#[inline(always)]
pub(super) fn skip_token(b: &[u8], mut i: usize, lim: usize) -> usize {
    while i < lim && is(b[i], TOKEN) {
        i += 1;
    }
    i
}

/// First index in `i..lim` whose byte is not a field-value octet (or `lim`).
#[inline(always)]
pub(super) fn skip_value(b: &[u8], mut i: usize, lim: usize) -> usize {
    while i + 8 <= lim {
        match word_at(b, i) {
            // HTAB is a CTL too, so a word with one takes the byte loop; that is rare.
            Some(x) if !has_below(x, 0x20) && !has_del(x) => i += 8,
            _ => break,
        }
    }
    while i < lim && is(b[i], VALUE) {
        i += 1;
    }
    i
}

/// First index in `i..lim` whose byte is not VCHAR (or `lim`).
#[inline(always)]
pub(super) fn skip_vchar(b: &[u8], mut i: usize, lim: usize) -> usize {
    while i + 8 <= lim {
        match word_at(b, i) {
            Some(x) if !has_below(x, 0x21) && !has_del(x) && x & HIGHS == 0 => i += 8,
            _ => break,
        }
    }
    while i < lim && is(b[i], VCHAR) {
        i += 1;
    }
    i
}

/// An octet allowed in a field value (HTAB, SP, VCHAR, obs-text); shared with the chunked
/// decoder's trailers.
pub(super) fn is_field_value_byte(b: u8) -> bool {
    is(b, VALUE)
}

pub(super) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is(b, TOKEN))
}

pub(super) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// `s..e` of `b` without the OWS (SP, HTAB) at both ends.
#[inline]
pub(super) fn trim_span(b: &[u8], mut s: usize, mut e: usize) -> (usize, usize) {
    while s < e && matches!(b[s], b' ' | b'\t') {
        s += 1;
    }
    while e > s && matches!(b[e - 1], b' ' | b'\t') {
        e -= 1;
    }
    (s, e)
}

/// RFC 9110 §5.6.4 qdtext.
pub(super) fn is_qdtext(c: u8) -> bool {
    c == b'\t'
        || c == b' '
        || c == 0x21
        || (0x23..=0x5b).contains(&c)
        || (0x5d..=0x7e).contains(&c)
        || c >= 0x80
}

pub(super) fn hex_value(c: u8) -> Option<u64> {
    char::from(c).to_digit(16).map(u64::from)
}
