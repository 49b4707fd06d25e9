//! Windows paths as text. install-iis states paths of the IIS machine (web.config,
//! wsgi-gateway.toml, install-iis.cmd), and may run elsewhere (`--for-windows`, the tests):
//! the host's `Path` would read `C:\srv\my.ini` as a relative file name on Linux, so every path
//! the files state goes through this type instead, with Windows' rules on every system.

use std::fmt;

/// An absolute Windows path, normalised as Windows' GetFullPathName does: `/` read as `\`,
/// repeated separators, `.` and `..` resolved (`..` stops at the root). Comparison ignores
/// case, as NTFS does for the names IIS and Python use. Errors are a reason as text
/// (`"D:x": a drive-relative path …`): every caller puts its option's name in front and stops.
#[derive(Clone, Debug)]
pub(crate) struct WinPath {
    /// `C:\` or `\\server\share\`.
    root: String,
    parts: Vec<String>,
    text: String,
}

impl WinPath {
    /// `text` must be absolute: `X:\…` or `\\server\share\…`.
    pub fn absolute(text: &str) -> Result<WinPath, String> {
        Self::parse(None, text)
    }

    /// `text` as typed in the directory `self`: absolute paths stay as they are, relative ones
    /// are joined to `self`, and `\dir` means `dir` at the root of `self`'s drive.
    pub fn resolve(&self, text: &str) -> Result<WinPath, String> {
        Self::parse(Some(self), text)
    }

    /// A name (or relative path) inside this directory.
    pub fn join(&self, name: &str) -> Result<WinPath, String> {
        let mut path = self.clone();
        path.push_parts(name)?;
        Ok(path.render())
    }

    pub fn parent(&self) -> Option<WinPath> {
        let mut path = self.clone();
        path.parts.pop()?;
        Some(path.render())
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `self` is `dir` or inside it.
    pub fn starts_with(&self, dir: &WinPath) -> bool {
        same(&self.root, &dir.root)
            && self.parts.len() >= dir.parts.len()
            && self.parts.iter().zip(&dir.parts).all(|(a, b)| same(a, b))
    }

    fn parse(base: Option<&WinPath>, text: &str) -> Result<WinPath, String> {
        let say = |why: &str| format!("{text:?}: {why}");
        let bad = |why: &str| Err(say(why));
        let t = text.replace('/', "\\");
        if t.is_empty() {
            return bad("empty path");
        }
        if t.starts_with("\\\\?\\") || t.starts_with("\\\\.\\") {
            return bad("device and \\\\?\\ paths are not supported; give a plain path");
        }
        let bytes = t.as_bytes();
        let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
        let (mut path, rest) = if drive {
            if bytes.get(2) != Some(&b'\\') {
                return bad("a drive-relative path (X:name); give X:\\name");
            }
            (WinPath::root(format!("{}\\", &t[..2])), &t[3..])
        } else if let Some(unc) = t.strip_prefix("\\\\") {
            let mut pieces = unc.splitn(3, '\\');
            let server = pieces.next().unwrap_or("");
            let share = pieces.next().unwrap_or("");
            if server.is_empty() || share.is_empty() {
                return bad("a UNC path needs \\\\server\\share\\");
            }
            for name in [server, share] {
                check_name(name).map_err(|why| say(&why))?;
            }
            let rest = pieces.next().unwrap_or("");
            (WinPath::root(format!("\\\\{server}\\{share}\\")), rest)
        } else {
            let Some(base) = base else {
                return bad("not an absolute Windows path (C:\\… or \\\\server\\share\\…)");
            };
            match t.strip_prefix('\\') {
                Some(rest) => (WinPath::root(base.root.clone()), rest),
                None => (base.clone(), t.as_str()),
            }
        };
        path.push_parts(rest).map_err(|why| say(&why))?;
        Ok(path.render())
    }

    fn root(root: String) -> WinPath {
        WinPath {
            root,
            parts: Vec::new(),
            text: String::new(),
        }
    }

    fn push_parts(&mut self, rest: &str) -> Result<(), String> {
        for part in rest.split(['\\', '/']) {
            match part {
                "" | "." => {}
                ".." => {
                    self.parts.pop();
                }
                name => {
                    check_name(name)?;
                    self.parts.push(name.to_string());
                }
            }
        }
        Ok(())
    }

    fn render(mut self) -> WinPath {
        self.text = format!("{}{}", self.root, self.parts.join("\\"));
        self
    }
}

/// Characters no Windows file name may hold (`:` would name an alternate data stream).
fn check_name(name: &str) -> Result<(), String> {
    match name
        .chars()
        .find(|&c| matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*') || c.is_control())
    {
        Some(c) => Err(format!("{c:?} cannot be part of a Windows file name")),
        None => Ok(()),
    }
}

/// Windows compares names by their upper-case forms.
fn same(a: &str, b: &str) -> bool {
    a == b || a.to_uppercase() == b.to_uppercase()
}

impl PartialEq for WinPath {
    fn eq(&self, other: &WinPath) -> bool {
        self.parts.len() == other.parts.len() && self.starts_with(other)
    }
}

impl fmt::Display for WinPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> WinPath {
        WinPath::absolute(text).unwrap()
    }

    #[test]
    fn absolute_paths_are_normalised() {
        assert_eq!(p(r"C:\srv\kallithea").as_str(), r"C:\srv\kallithea");
        assert_eq!(p("c:/srv//kallithea/").as_str(), r"c:\srv\kallithea");
        assert_eq!(
            p(r"C:\srv\.\venv\..\kallithea\my.ini").as_str(),
            r"C:\srv\kallithea\my.ini"
        );
        assert_eq!(p(r"C:\..\..\x").as_str(), r"C:\x", "'..' stops at the root");
        assert_eq!(p(r"C:\").as_str(), r"C:\");
        assert_eq!(p(r"\\files\scm\repos\..\app").as_str(), r"\\files\scm\app");
        assert_eq!(p("//files/scm").as_str(), r"\\files\scm\");
        assert_eq!(
            p(r"C:\Program Files\Python311").as_str(),
            r"C:\Program Files\Python311"
        );
    }

    #[test]
    fn what_is_not_an_absolute_windows_path_is_refused() {
        for (text, says) in [
            ("", "empty"),
            ("srv\\app", "not an absolute Windows path"),
            ("/srv/app", "not an absolute Windows path"),
            ("\\srv", "not an absolute Windows path"),
            ("C:srv", "drive-relative"),
            ("C:", "drive-relative"),
            (r"\\server", "\\\\server\\share"),
            (r"\\server\", "\\\\server\\share"),
            (r"\\?\C:\x", "not supported"),
            (r"\\.\pipe\x", "not supported"),
            (r"C:\a\b:c", "':' cannot be part"),
            (r"C:\a|b", "'|' cannot be part"),
            ("C:\\a\nb", "cannot be part"),
        ] {
            let e = WinPath::absolute(text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }

    #[test]
    fn relative_paths_resolve_against_a_directory() {
        let cwd = p(r"C:\srv\kallithea");
        assert_eq!(
            cwd.resolve("my.ini").unwrap().as_str(),
            r"C:\srv\kallithea\my.ini"
        );
        assert_eq!(cwd.resolve(r"..\venv").unwrap().as_str(), r"C:\srv\venv");
        assert_eq!(cwd.resolve(r"\other").unwrap().as_str(), r"C:\other");
        assert_eq!(cwd.resolve(r"D:\x").unwrap().as_str(), r"D:\x");
        let share = p(r"\\files\scm\app");
        assert_eq!(share.resolve(r"\top").unwrap().as_str(), r"\\files\scm\top");
        assert!(cwd.resolve("D:x").is_err());
    }

    #[test]
    fn join_and_parent() {
        let venv = p(r"C:\srv\venv");
        let core = venv
            .join(r"Lib\site-packages\wsgi_gateway\_core.pyd")
            .unwrap();
        assert_eq!(
            core.as_str(),
            r"C:\srv\venv\Lib\site-packages\wsgi_gateway\_core.pyd"
        );
        assert_eq!(
            core.parent().unwrap().as_str(),
            r"C:\srv\venv\Lib\site-packages\wsgi_gateway"
        );
        assert_eq!(p(r"C:\").parent(), None);
        assert!(venv.join("a:b").is_err());
    }

    #[test]
    fn comparison_ignores_case_and_spelling() {
        assert_eq!(
            p(r"C:\Program Files\Python311"),
            p("c:/PROGRAM FILES/python311/")
        );
        assert_ne!(p(r"C:\srv\venv"), p(r"C:\srv\venv2"));
        assert_ne!(p(r"C:\srv"), p(r"D:\srv"));
        assert!(p(r"C:\SRV\Kallithea\my.ini").starts_with(&p(r"c:\srv\kallithea")));
        assert!(!p(r"C:\srv\kallithea2").starts_with(&p(r"C:\srv\kallithea")));
    }
}
