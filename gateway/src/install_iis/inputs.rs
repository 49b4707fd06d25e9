//! Checks install-iis's arguments and turns them into the values the files will hold. Every
//! refusal names the option, and nothing is written before all of them pass. Paths are the
//! target's (`Target::path`): Windows paths, whatever system runs this.

use super::settings::Settings;
use super::target::{Kind, Target};
use super::winpath::WinPath;
use super::{pe, Plan, LOADER_NAME, LOG_NAME};
use crate::config::{ConfigError, InstallIisArgs};

pub(super) fn plan(args: &InstallIisArgs, target: &Target) -> Result<Plan, ConfigError> {
    let mut settings = Settings {
        threads: args.threads,
        ..Settings::default()
    };
    let mut paste_ini = None;
    match (&args.app, &args.paste) {
        (None, None) => {
            return Err(err(
                "no app: give APP (module:callable) or --paste INI[#NAME]".into(),
            ))
        }
        (Some(app), Some(_)) => {
            return Err(err(format!("give either APP ({app}) or --paste, not both")))
        }
        (Some(app), None) => settings.app = Some(app_spec(app)?),
        (None, Some(paste)) => {
            let (ini, spec) = paste_spec(paste, target)?;
            paste_ini = Some(ini);
            settings.paste = Some(spec);
        }
    }
    if let Some(dir) = &args.chdir {
        let dir = target.path("--chdir", dir)?;
        if target.kind(&dir).is_some_and(|k| k != Kind::Dir) {
            return Err(err(format!("--chdir {dir}: not a directory")));
        }
        settings.chdir = Some(dir.to_string());
    }
    for dir in &args.pythonpath {
        settings
            .pythonpath
            .push(target.path("--pythonpath", dir)?.to_string());
    }
    settings.venv = target.venv.as_ref().map(WinPath::to_string);
    settings.python_dll = target.python_dll.to_string();
    settings.core = target.core.to_string();

    let vdir = virtualdir(&args.virtualdir)?;
    let site = site(&args.site)?;
    let pool = match &args.app_pool {
        Some(name) => app_pool(name)?,
        None => derived_pool(&site, &vdir),
    };

    let out = match (&args.out, &target.cwd) {
        (Some(out), _) => target.path("--out", out)?,
        (None, Some(cwd)) => cwd.clone(),
        (None, None) => return Err(err("--out: the application's directory is needed".into())),
    };
    script_safe("--out", out.as_str())?;
    if target.kind(&out).is_some_and(|k| k == Kind::File) {
        return Err(err(format!("--out {out}: not a directory")));
    }
    let in_out = |name: &str| out.join(name).map_err(|why| err(format!("--out {why}")));
    let dll = in_out(LOADER_NAME)?;
    let log = in_out(LOG_NAME)?;
    settings.error_log = log.to_string();

    let library = &target.loader;
    let image = match std::fs::read(library) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(err(format!(
                "--library {}: no such file",
                library.display()
            )))
        }
        Err(e) => return Err(err(format!("--library {}: {e}", library.display()))),
    };
    pe::check(&image, args.bitness)
        .map_err(|why| err(format!("--library {}: {why}", library.display())))?;

    Ok(Plan {
        write_dir: target
            .write_dir
            .clone()
            .unwrap_or_else(|| out.as_str().into()),
        out,
        dll,
        log,
        site,
        vdir,
        pool,
        bitness: args.bitness,
        windows_auth: args.windows_auth,
        settings,
        venv: target.venv.clone(),
        base_python: target.base_python.clone(),
        paste_ini,
        library: library.clone(),
        image,
    })
}

fn err(message: String) -> ConfigError {
    ConfigError(message)
}

/// Values that go into install-iis.cmd. `"` cannot be quoted there, cmd expands `%` even
/// between quotes (and appcmd gives it a meaning of its own), and `'` would end appcmd's
/// `[path='…']` value.
fn script_safe(option: &str, value: &str) -> Result<(), ConfigError> {
    match value
        .chars()
        .find(|&c| matches!(c, '"' | '%' | '\'') || c.is_control())
    {
        Some(c) => Err(err(format!(
            "{option} {value:?}: the character {c:?} is not supported (it cannot be passed \
             safely through cmd and appcmd)"
        ))),
        None => Ok(()),
    }
}

fn app_spec(app: &str) -> Result<String, ConfigError> {
    let (module, callable) = app.split_once(':').unwrap_or((app, "application"));
    let dotted = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|part| {
                let mut chars = part.chars();
                chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
                    && chars.all(|c| c == '_' || c.is_alphanumeric())
            })
    };
    if dotted(module) && dotted(callable) {
        Ok(app.to_string())
    } else {
        Err(err(format!(
            "APP {app:?}: expected module[:callable] (dotted Python names)"
        )))
    }
}

/// The ini file, and the `paste` setting (`INI[#NAME]`).
fn paste_spec(paste: &str, target: &Target) -> Result<(WinPath, String), ConfigError> {
    let (ini, name) = match paste.split_once('#') {
        Some((ini, name)) => (ini, Some(name)),
        None => (paste, None),
    };
    if ini.is_empty() {
        return Err(err(format!("--paste {paste:?}: no ini file named")));
    }
    let path = target.path("--paste", ini)?;
    if target.kind(&path).is_some_and(|k| k != Kind::File) {
        return Err(err(format!("--paste {path}: no such file")));
    }
    let spec = match name {
        Some(name) => format!("{path}#{name}"),
        None => path.to_string(),
    };
    Ok((path, spec))
}

/// `/` or `/a/b`: a trailing `/` is dropped; empty, `.` and `..` segments are refused, and so
/// are characters IIS or the install script would misread.
fn virtualdir(v: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| err(format!("--virtualdir {v:?}: {why}"));
    if !v.starts_with('/') {
        return Err(bad("must start with '/'"));
    }
    let trimmed = v.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok("/".into());
    }
    for segment in trimmed[1..].split('/') {
        if segment.is_empty() {
            return Err(bad("empty path segment ('//')"));
        }
        if segment == "." || segment == ".." {
            return Err(bad("'.' and '..' segments are not allowed"));
        }
    }
    if let Some(c) = trimmed.chars().find(|&c| {
        matches!(
            c,
            '\\' | '?' | '#' | '*' | ':' | '<' | '>' | '|' | '"' | '%' | '\''
        ) || c.is_control()
    }) {
        return Err(bad(&format!("the character {c:?} is not allowed")));
    }
    Ok(trimmed.to_string())
}

fn site(name: &str) -> Result<String, ConfigError> {
    if name.trim().is_empty() {
        return Err(err("--site: empty site name".into()));
    }
    if let Some(c) = name.chars().find(|&c| c == '/' || c == '\\') {
        return Err(err(format!(
            "--site {name:?}: the character {c:?} is not allowed in a site name"
        )));
    }
    script_safe("--site", name)?;
    Ok(name.to_string())
}

/// Characters IIS Manager refuses in a pool name.
fn pool_char_ok(c: char) -> bool {
    !("\\/?;:@&=+$,|\"<>*'%[]".contains(c) || c.is_control())
}

fn app_pool(name: &str) -> Result<String, ConfigError> {
    if name.trim().is_empty() {
        return Err(err("--app-pool: empty pool name".into()));
    }
    match name.chars().find(|&c| !pool_char_ok(c)) {
        Some(c) => Err(err(format!(
            "--app-pool {name:?}: the character {c:?} is not allowed in a pool name"
        ))),
        None => Ok(name.to_string()),
    }
}

/// "wsgi-gateway <site>[-<vdir segments>]": unique per application, and never the pool IIS
/// Manager creates for a site (which bears the site's bare name).
fn derived_pool(site: &str, vdir: &str) -> String {
    let mut name = format!("wsgi-gateway {site}");
    for segment in vdir.split('/').filter(|s| !s.is_empty()) {
        name.push('-');
        name.push_str(segment);
    }
    name.chars()
        .map(|c| if pool_char_ok(c) { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtualdir_rules() {
        assert_eq!(virtualdir("/").unwrap(), "/");
        assert_eq!(virtualdir("/kallithea/").unwrap(), "/kallithea");
        assert_eq!(virtualdir("/a b/c&d").unwrap(), "/a b/c&d");
        for bad in ["", "kallithea", "/a//b", "/a/../b", "/a%20b", "/a\\b"] {
            let e = virtualdir(bad).unwrap_err().0;
            assert!(e.starts_with("--virtualdir"), "{bad}: {e}");
        }
    }

    #[test]
    fn pool_names() {
        assert_eq!(
            derived_pool("Default Web Site", "/"),
            "wsgi-gateway Default Web Site"
        );
        assert_eq!(
            derived_pool("Intranet & Co", "/scm/kallithea"),
            "wsgi-gateway Intranet _ Co-scm-kallithea"
        );
        assert!(app_pool("a:b").unwrap_err().0.contains("--app-pool"));
        assert_eq!(app_pool("Kallithea Pool").unwrap(), "Kallithea Pool");
    }

    #[test]
    fn app_specs() {
        assert!(app_spec("kallithea.wsgi:application").is_ok());
        assert!(app_spec("hello").is_ok());
        assert!(app_spec("pkg.mod:app.wsgi_app").is_ok());
        for bad in ["", ":app", "mod:", "a b:c", "mod:1x", "a..b"] {
            assert!(app_spec(bad).unwrap_err().0.starts_with("APP"), "{bad}");
        }
    }

    /// The Kallithea machine, with a loader DLL on this one.
    fn plan_on_kallithea(argv: &[&str]) -> Result<Plan, String> {
        use super::super::target::tests::{args, kallithea_files, kallithea_host};
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let dll = dir.path().join("loader.dll");
        let mut image = vec![0u8; 0x100];
        image[..2].copy_from_slice(b"MZ");
        image[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        image[0x40..0x44].copy_from_slice(b"PE\0\0");
        image[0x44..0x46].copy_from_slice(&0x8664u16.to_le_bytes());
        image[0x56..0x58].copy_from_slice(&0x2022u16.to_le_bytes());
        std::fs::write(&dll, image).map_err(|e| e.to_string())?;
        let args = args(argv);
        let mut target = super::super::target::from_host(
            &args,
            &kallithea_host(),
            r"C:\srv\kallithea",
            kallithea_files,
        )
        .map_err(|e| e.0)?;
        target.loader = dll;
        plan(&args, &target).map_err(|e| e.0)
    }

    #[test]
    fn the_plan_states_windows_paths() {
        let p = plan_on_kallithea(&["--paste", "my.ini#main", "--chdir", ".."]).unwrap();
        assert_eq!(p.out.as_str(), r"C:\srv\kallithea");
        assert_eq!(p.write_dir, std::path::Path::new(r"C:\srv\kallithea"));
        assert_eq!(p.dll.as_str(), r"C:\srv\kallithea\wsgi_gateway_isapi.dll");
        assert_eq!(p.log.as_str(), r"C:\srv\kallithea\wsgi-gateway.log");
        let s = &p.settings;
        assert_eq!(s.paste.as_deref(), Some(r"C:\srv\kallithea\my.ini#main"));
        assert_eq!(s.chdir.as_deref(), Some(r"C:\srv"));
        assert_eq!(s.venv.as_deref(), Some(r"C:\srv\venv"));
        assert_eq!(s.python_dll, r"C:\Program Files\Python311\python311.dll");
        assert_eq!(s.error_log, r"C:\srv\kallithea\wsgi-gateway.log");
    }

    #[test]
    fn on_the_iis_machine_the_files_named_must_exist() {
        for (argv, says) in [
            (
                &["--paste", r"C:\srv\other.ini"][..],
                r"--paste C:\srv\other.ini: no such file",
            ),
            (
                &["--paste", r"..\kallithea"],
                r"--paste C:\srv\kallithea: no such file",
            ),
            (
                &["app", "--chdir", "my.ini"],
                r"--chdir C:\srv\kallithea\my.ini: not a directory",
            ),
            (
                &["app", "--out", "my.ini"],
                r"--out C:\srv\kallithea\my.ini: not a directory",
            ),
            (
                &["app", "--out", r"C:\a%b"],
                "--out \"C:\\\\a%b\": the character '%'",
            ),
            (
                &["app", "--pythonpath", "D:x"],
                "--pythonpath \"D:x\": a drive-relative path",
            ),
        ] {
            let e = plan_on_kallithea(argv).err().unwrap_or_default();
            assert!(e.starts_with(says), "{argv:?}: {e}");
        }
    }
}
