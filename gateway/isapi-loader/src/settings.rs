//! The three keys of `wsgi-gateway.toml` the loader needs: `python-dll` and `core`, the two
//! DLLs it loads, and `error-log`, where a failure is reported. Other keys are the core's (it
//! parses the whole file again and refuses what it does not know), so they are ignored here.

use serde::Deserialize;

/// The values found, still as written: relative or absolute.
#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Settings {
    pub python_dll: Option<String>,
    pub core: Option<String>,
    pub error_log: Option<String>,
}

/// Reads the top-level keys; a TOML error names its line and column.
pub fn read(text: &str) -> Result<Settings, String> {
    toml::from_str(text).map_err(|e| e.to_string().trim_end().replace('\n', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Kallithea layout of tests/golden/install-iis/.
    fn kallithea() -> Settings {
        Settings {
            python_dll: Some(r"C:\Program Files\Python311\python311.dll".into()),
            core: Some(
                r"C:\srv\venv\Lib\site-packages\wsgi_gateway\_core.cp311-win_amd64.pyd".into(),
            ),
            error_log: Some(r"C:\srv\kallithea\wsgi-gateway.log".into()),
        }
    }

    #[test]
    fn reads_the_keys_install_iis_writes() {
        let text = "# Settings\r\npaste = 'C:\\srv\\kallithea\\my.ini'\r\n\
                    python-dll = 'C:\\Program Files\\Python311\\python311.dll'\r\n\
                    core = \"C:\\\\srv\\\\venv\\\\Lib\\\\site-packages\\\\wsgi_gateway\\\\_core.cp311-win_amd64.pyd\"\r\n\
                    error-log = 'C:\\srv\\kallithea\\wsgi-gateway.log'\r\nthreads = 32\r\n";
        assert_eq!(read(text).unwrap(), kallithea());
    }

    /// What `wsgi-gateway install-iis` wrote for the Kallithea layout (tests/test_install_iis.py
    /// keeps it equal to install-iis's output).
    #[test]
    fn reads_the_golden_install() {
        let text = include_str!("../../../tests/golden/install-iis/kallithea/wsgi-gateway.toml");
        assert_eq!(read(text).unwrap(), kallithea());
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
            ("core = 'a'\ncore = 'b'\n", "line 2"),
            ("core = 42\n", "invalid type"),
            ("core = \"C:\\srv\"\n", "line 1"),
            ("python-dll = 'open\n", "line 1"),
        ] {
            let e = read(text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }
}
