//! Checks install-iis's arguments and turns them into the values the files will hold. Every
//! refusal names the option, and nothing is written before all of them pass.

use std::path::{Component, Path, PathBuf};

use super::settings::Settings;
use super::{pe, Plan, DLL_NAME, LOG_NAME};
use crate::config::{ConfigError, InstallIisArgs};

pub(super) fn plan(args: &InstallIisArgs, cwd: &Path) -> Result<Plan, ConfigError> {
    let mut settings = Settings {
        threads: args.threads,
        ..Settings::default()
    };
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
        (None, Some(paste)) => settings.paste = Some(paste_spec(paste, cwd)?),
    }
    if let Some(dir) = &args.chdir {
        let dir = absolute(cwd, dir);
        if !dir.is_dir() {
            return Err(err(format!("--chdir {}: not a directory", dir.display())));
        }
        settings.chdir = Some(text("--chdir", &dir)?);
    }
    for dir in &args.pythonpath {
        settings
            .pythonpath
            .push(text("--pythonpath", &absolute(cwd, dir))?);
    }
    if let Some(dir) = &args.venv {
        let dir = absolute(cwd, dir);
        if !dir.join("pyvenv.cfg").is_file() {
            return Err(err(format!(
                "--venv {}: not a virtualenv (no pyvenv.cfg)",
                dir.display()
            )));
        }
        settings.venv = Some(text("--venv", &dir)?);
    }

    let vdir = virtualdir(&args.virtualdir)?;
    let site = site(&args.site)?;
    let pool = match &args.app_pool {
        Some(name) => app_pool(name)?,
        None => derived_pool(&site, &vdir),
    };

    let out_dir = absolute(cwd, args.out.as_deref().unwrap_or(cwd));
    let out = text("--out", &out_dir)?;
    script_safe("--out", &out)?;
    if out_dir.exists() && !out_dir.is_dir() {
        return Err(err(format!("--out {out}: not a directory")));
    }
    let dll = text("--out", &out_dir.join(DLL_NAME))?;
    let log = text("--out", &out_dir.join(LOG_NAME))?;
    settings.error_log = log.clone();

    let library = match &args.library {
        Some(p) => absolute(cwd, p),
        None => beside_this_program()?,
    };
    let image = match std::fs::read(&library) {
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
        out_dir,
        out,
        dll,
        log,
        site,
        vdir,
        pool,
        bitness: args.bitness,
        windows_auth: args.windows_auth,
        settings,
        library,
        image,
    })
}

fn err(message: String) -> ConfigError {
    ConfigError(message)
}

/// Relative paths mean relative to where the command was typed; absolute ones stay as given.
fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    };
    joined
        .components()
        .filter(|c| *c != Component::CurDir)
        .collect()
}

fn text(option: &str, p: &Path) -> Result<String, ConfigError> {
    p.to_str()
        .map(str::to_string)
        .ok_or_else(|| err(format!("{option} {}: not valid Unicode", p.display())))
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

fn paste_spec(paste: &str, cwd: &Path) -> Result<String, ConfigError> {
    let (ini, name) = match paste.split_once('#') {
        Some((ini, name)) => (ini, Some(name)),
        None => (paste, None),
    };
    if ini.is_empty() {
        return Err(err(format!("--paste {paste:?}: no ini file named")));
    }
    let path = absolute(cwd, Path::new(ini));
    if !path.is_file() {
        return Err(err(format!("--paste {}: no such file", path.display())));
    }
    let path = text("--paste", &path)?;
    Ok(match name {
        Some(name) => format!("{path}#{name}"),
        None => path,
    })
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

fn beside_this_program() -> Result<PathBuf, ConfigError> {
    let exe = std::env::current_exe().map_err(|e| {
        err(format!(
            "--library not given, and this program's path is unknown: {e}"
        ))
    })?;
    let dll = exe.with_file_name(DLL_NAME);
    if dll.is_file() {
        Ok(dll)
    } else {
        Err(err(format!(
            "--library not given, and there is no {} (name the DLL with --library PATH)",
            dll.display()
        )))
    }
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

    #[test]
    fn relative_paths_follow_the_working_directory() {
        let cwd = Path::new("/srv/app");
        assert_eq!(absolute(cwd, Path::new("./x/y")), Path::new("/srv/app/x/y"));
        assert_eq!(absolute(cwd, Path::new("/opt/x")), Path::new("/opt/x"));
    }
}
