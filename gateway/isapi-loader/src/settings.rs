//! The three keys of `wsgi-gateway.toml` the loader needs, read without a TOML library (this
//! DLL stays small and Python-free): `python-dll` and `core`, the two DLLs it loads, and
//! `error-log`, where a failure is reported. Other top-level keys are skipped whatever their
//! value (multi-line strings and arrays included); the core parses the whole file again with a
//! full TOML parser, so the loader only has to read these strings the way TOML defines them.

/// The values found (each a TOML string), still as written: relative or absolute.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub python_dll: Option<String>,
    pub core: Option<String>,
    pub error_log: Option<String>,
}

/// Reads the top-level keys; the first table header ends them.
pub fn read(text: &str) -> Result<Settings, String> {
    let mut s = Settings::default();
    let mut r = Reader {
        rest: text,
        line: 1,
    };
    loop {
        r.skip_blank_lines();
        match r.peek() {
            None | Some('[') => return Ok(s),
            Some(_) => {}
        }
        let line = r.line;
        let key = r.key()?;
        let slot = match key.as_str() {
            "python-dll" => Some(&mut s.python_dll),
            "core" => Some(&mut s.core),
            "error-log" => Some(&mut s.error_log),
            _ => None,
        };
        match slot {
            Some(slot) => {
                let value = r
                    .string()
                    .map_err(|why| format!("line {line}: {key}: {why}"))?;
                if slot.replace(value).is_some() {
                    return Err(format!("line {line}: {key} is set twice"));
                }
            }
            None => r.skip_value()?,
        }
        r.end_of_line()?;
    }
}

struct Reader<'a> {
    rest: &'a str,
    line: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.rest = &self.rest[c.len_utf8()..];
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn eat(&mut self, s: &str) -> bool {
        match self.rest.strip_prefix(s) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
    }

    fn skip_comment(&mut self) {
        if self.peek() == Some('#') {
            while !matches!(self.peek(), None | Some('\n')) {
                self.bump();
            }
        }
    }

    fn skip_blank_lines(&mut self) {
        loop {
            self.skip_spaces();
            self.skip_comment();
            match self.peek() {
                Some('\n') => {
                    self.bump();
                }
                Some('\r') if self.rest.starts_with("\r\n") => {
                    self.bump();
                    self.bump();
                }
                _ => return,
            }
        }
    }

    fn err(&self, why: &str) -> String {
        format!("line {}: {why}", self.line)
    }

    /// `key =`: a bare key or a quoted one; a dotted key is returned as written (it never
    /// names a key the loader reads).
    fn key(&mut self) -> Result<String, String> {
        let mut key = String::new();
        loop {
            match self.peek() {
                Some('=') => break,
                Some('"') => key.push_str(&self.basic()?),
                Some('\'') => key.push_str(&self.literal()?),
                Some(c)
                    if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' ' | '\t') =>
                {
                    self.bump();
                    key.push(c);
                }
                _ => return Err(self.err("expected `key = value`")),
            }
        }
        self.bump();
        self.skip_spaces();
        let key = key.trim().to_string();
        if key.is_empty() {
            return Err(self.err("a value without a key"));
        }
        Ok(key)
    }

    /// A one-line basic (`"…"`) or literal (`'…'`) string.
    fn string(&mut self) -> Result<String, String> {
        if self.rest.starts_with("\"\"\"") || self.rest.starts_with("'''") {
            return Err("expected a one-line string".into());
        }
        match self.peek() {
            Some('"') => self.basic(),
            Some('\'') => self.literal(),
            _ => Err("expected a string in quotes".into()),
        }
    }

    fn literal(&mut self) -> Result<String, String> {
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                Some('\'') => return Ok(out),
                Some('\n') | None => return Err(self.err("unterminated string")),
                Some(c) => out.push(c),
            }
        }
    }

    fn basic(&mut self) -> Result<String, String> {
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                Some('"') => return Ok(out),
                Some('\n') | None => return Err(self.err("unterminated string")),
                Some('\\') => out.push(self.escape()?),
                Some(c) => out.push(c),
            }
        }
    }

    fn escape(&mut self) -> Result<char, String> {
        let c = match self.bump() {
            Some('b') => '\u{8}',
            Some('t') => '\t',
            Some('n') => '\n',
            Some('f') => '\u{c}',
            Some('r') => '\r',
            Some('e') => '\u{1b}',
            Some('"') => '"',
            Some('\\') => '\\',
            Some('x') => return self.hex(2),
            Some('u') => return self.hex(4),
            Some('U') => return self.hex(8),
            _ => return Err(self.err(
                "unknown escape in a string (write \\\\ for a backslash, or use 'single quotes')",
            )),
        };
        Ok(c)
    }

    fn hex(&mut self, digits: usize) -> Result<char, String> {
        let code = self
            .rest
            .get(..digits)
            .filter(|h| h.chars().all(|c| c.is_ascii_hexdigit()))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .and_then(char::from_u32)
            .ok_or_else(|| self.err("bad \\x, \\u or \\U escape"))?;
        self.rest = &self.rest[digits..];
        Ok(code)
    }

    /// Skips a value of another key: strings (any kind) and nested brackets may span lines.
    fn skip_value(&mut self) -> Result<(), String> {
        let mut depth = 0usize;
        loop {
            for close in ["\"\"\"", "'''"] {
                if self.eat(close) {
                    self.skip_multiline(close)?;
                }
            }
            match self.peek() {
                None => return Ok(()),
                Some('\n') | Some('\r') if depth == 0 => return Ok(()),
                Some('#') if depth == 0 => return Ok(()),
                Some('#') => self.skip_comment(),
                Some('"') => drop(self.basic()?),
                Some('\'') => drop(self.literal()?),
                Some('[' | '{') => {
                    depth += 1;
                    self.bump();
                }
                Some(']' | '}') => {
                    depth = depth.saturating_sub(1);
                    self.bump();
                }
                Some(_) => {
                    self.bump();
                }
            }
        }
    }

    fn skip_multiline(&mut self, close: &str) -> Result<(), String> {
        let start = self.line;
        loop {
            if close == "\"\"\"" && self.eat("\\") {
                self.bump();
                continue;
            }
            if self.eat(close) {
                // Up to two more quotes belong to the string (`""""` ends with one inside).
                for _ in 0..2 {
                    if self.rest.starts_with(&close[..1]) {
                        self.bump();
                    }
                }
                return Ok(());
            }
            if self.bump().is_none() {
                return Err(format!("line {start}: unterminated multi-line string"));
            }
        }
    }

    fn end_of_line(&mut self) -> Result<(), String> {
        self.skip_spaces();
        self.skip_comment();
        match self.peek() {
            None | Some('\n') => Ok(()),
            Some('\r') if self.rest.starts_with("\r\n") => Ok(()),
            Some(_) => Err(self.err("unexpected text after the value")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_keys_install_iis_writes() {
        let text = "# Settings\r\npaste = 'C:\\srv\\kallithea\\my.ini'\r\n\
                    python-dll = 'C:\\Program Files\\Python311\\python311.dll'\r\n\
                    core = \"C:\\\\srv\\\\venv\\\\Lib\\\\site-packages\\\\wsgi_gateway\\\\_core.cp311-win_amd64.pyd\"\r\n\
                    error-log = 'C:\\srv\\kallithea\\wsgi-gateway.log'\r\nthreads = 32\r\n";
        assert_eq!(
            read(text).unwrap(),
            Settings {
                python_dll: Some(r"C:\Program Files\Python311\python311.dll".into()),
                core: Some(
                    r"C:\srv\venv\Lib\site-packages\wsgi_gateway\_core.cp311-win_amd64.pyd".into()
                ),
                error_log: Some(r"C:\srv\kallithea\wsgi-gateway.log".into()),
            }
        );
    }

    /// What `wsgi-gateway install-iis` wrote for the Kallithea layout (tests/test_install_iis.py
    /// keeps it equal to install-iis's output).
    #[test]
    fn reads_the_golden_install() {
        let text = include_str!("../../../tests/golden/install-iis/kallithea/wsgi-gateway.toml");
        assert_eq!(
            read(text).unwrap(),
            Settings {
                python_dll: Some(r"C:\Program Files\Python311\python311.dll".into()),
                core: Some(
                    r"C:\srv\venv\Lib\site-packages\wsgi_gateway\_core.cp311-win_amd64.pyd".into()
                ),
                error_log: Some(r"C:\srv\kallithea\wsgi-gateway.log".into()),
            }
        );
    }

    #[test]
    fn other_values_are_skipped_whatever_they_hold() {
        let text = r#"
pythonpath = [
  'C:\a # not a comment',   # a comment
  "core = 'no'",
]
note = """
core = "not a key: inside a multi-line string \"""
"""
raw = '''x = '' '''
"quoted key" = { core = "inline table" }
core = "C:\\x\u00e9.pyd" # trailing comment
[table]
python-dll = 'ignored: not top-level'
"#;
        let s = read(text).unwrap();
        assert_eq!(s.core.as_deref(), Some("C:\\x\u{e9}.pyd"));
        assert_eq!(s.python_dll, None);
    }

    #[test]
    fn quoted_keys_are_the_same_keys() {
        let s = read("\"python-dll\" = 'a'\n'core' = 'b'\n").unwrap();
        assert_eq!(
            (s.python_dll.as_deref(), s.core.as_deref()),
            (Some("a"), Some("b"))
        );
    }

    #[test]
    fn refusals_say_where() {
        for (text, says) in [
            ("core = 'a'\ncore = 'b'\n", "line 2: core is set twice"),
            ("core = 42\n", "line 1: core: expected a string"),
            ("core = \"C:\\srv\"\n", "unknown escape"),
            ("core = '''x'''\n", "one-line string"),
            ("core = 'a' b\n", "line 1: unexpected text"),
            ("python-dll = 'open\n", "unterminated"),
            ("x = \"\"\"never closed\n", "unterminated multi-line"),
            ("= 'a'\n", "without a key"),
            ("core 'a'\n", "expected `key = value`"),
        ] {
            let e = read(text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }
}
