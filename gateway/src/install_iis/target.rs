//! The Windows machine an install is for: which Python IIS will load, which core and loader,
//! where relative paths start and where the files are written. On the IIS machine these come
//! from the running interpreter (the venv pip installed wsgi-gateway into); `--for-windows`
//! takes them from options instead, to prepare an install on another machine.

use std::path::{Path, PathBuf};

use super::winpath::WinPath;
use super::LOADER_NAME;
use crate::config::{Bitness, ConfigError, InstallIisArgs};
use crate::python::host::{HostPython, Shape};

/// What a path on the target is, as far as install-iis needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(windows), allow(dead_code))] // looked at on Windows; elsewhere by the tests
pub(crate) enum Kind {
    Missing,
    File,
    Dir,
}

/// Looks at a path of the target machine (only possible when running on it).
pub(crate) type Probe = fn(&WinPath) -> Kind;

#[derive(Debug)]
pub(crate) struct Target {
    /// Where relative paths start: the current directory on the IIS machine. With
    /// --for-windows there is none: paths must be absolute.
    pub cwd: Option<WinPath>,
    /// The venv wsgi-gateway and the app are installed in, when there is one.
    pub venv: Option<WinPath>,
    /// The Python installation behind it (`sys.base_prefix`).
    pub base_python: WinPath,
    /// What the loader loads: python3XY.dll, then the core (`_core…pyd` in site-packages).
    pub python_dll: WinPath,
    pub core: WinPath,
    /// The loader DLL to install: a file of this machine.
    pub loader: PathBuf,
    /// Where the files go on this machine: None = --out itself (on the IIS machine).
    pub write_dir: Option<PathBuf>,
    pub probe: Option<Probe>,
}

impl Target {
    /// An option's path as the target reads it.
    pub fn path(&self, option: &str, text: &str) -> Result<WinPath, ConfigError> {
        let resolved = match &self.cwd {
            Some(cwd) => cwd.resolve(text),
            None => WinPath::absolute(text).map_err(|why| {
                format!("{why}; with --for-windows, give the absolute path on the Windows machine")
            }),
        };
        resolved.map_err(|why| ConfigError(format!("{option} {why}")))
    }

    /// What `path` is on the target, or None when it cannot be looked at from here.
    pub fn kind(&self, path: &WinPath) -> Option<Kind> {
        self.probe.map(|probe| probe(path))
    }
}

pub(crate) fn describe(args: &InstallIisArgs, shape: &Shape) -> Result<Target, ConfigError> {
    if let Some(dir) = &args.for_windows {
        return for_windows(args, dir, shape);
    }
    for (given, option) in [
        (args.base_python.is_some(), "--base-python"),
        (args.python_version.is_some(), "--python-version"),
    ] {
        if given {
            return Err(ConfigError(format!(
                "{option} describes another machine's Python: give it with --for-windows DIR \
                 (on the IIS machine, the running Python is the one installed)"
            )));
        }
    }
    match shape {
        #[cfg(windows)]
        Shape::Extension(host) => {
            let cwd = std::env::current_dir()
                .map_err(|e| ConfigError(format!("cannot read the current directory: {e}")))?;
            let cwd = cwd.to_str().ok_or_else(|| {
                ConfigError("the current directory's path is not valid Unicode".into())
            })?;
            from_host(args, host, cwd, on_this_machine)
        }
        #[cfg(not(windows))]
        Shape::Extension(_) => Err(ConfigError(
            "install-iis writes an IIS install: run it on the Windows machine with the \
             wsgi-gateway of the app's venv there, or prepare one here with --for-windows DIR \
             (see --help)"
                .into(),
        )),
        Shape::Embedder => Err(ConfigError(
            "install-iis writes an IIS install: on the Windows machine, `pip install \
             wsgi-gateway` into the app's venv and run that venv's wsgi-gateway install-iis; \
             or prepare one here with --for-windows DIR (see --help)"
                .into(),
        )),
    }
}

#[cfg(windows)]
fn on_this_machine(path: &WinPath) -> Kind {
    match std::fs::metadata(path.as_str()) {
        Ok(m) if m.is_dir() => Kind::Dir,
        Ok(_) => Kind::File,
        Err(_) => Kind::Missing,
    }
}

/// On the IIS machine: the running interpreter is the one IIS will load.
#[cfg_attr(not(windows), allow(dead_code))] // called on Windows; elsewhere by the tests
pub(crate) fn from_host(
    args: &InstallIisArgs,
    host: &HostPython,
    cwd: &str,
    probe: Probe,
) -> Result<Target, ConfigError> {
    let internal = |what: &str, why: String| ConfigError(format!("{what}: {why}"));
    let text = |what: &str, s: &std::ffi::OsStr| {
        s.to_str()
            .map(str::to_string)
            .ok_or_else(|| internal(what, "not valid Unicode".into()))
    };
    let cwd = WinPath::absolute(cwd).map_err(|why| internal("the current directory", why))?;
    let prefix = WinPath::absolute(&text("sys.prefix", &host.prefix)?)
        .map_err(|why| internal("sys.prefix", why))?;
    let base = WinPath::absolute(&text("sys.base_prefix", &host.base_prefix)?)
        .map_err(|why| internal("sys.base_prefix", why))?;
    let core = WinPath::absolute(&text("wsgi_gateway._core", &host.core_file)?)
        .map_err(|why| internal("wsgi_gateway._core's file", why))?;
    if let Some(v) = &args.venv {
        let named = cwd
            .resolve(v)
            .map_err(|why| ConfigError(format!("--venv {why}")))?;
        if named != prefix {
            // Spelled differently (a junction, a short name)? Let the file system decide.
            host.check_venv(Path::new(named.as_str()))
                .map_err(ConfigError)?;
        }
    }
    let venv = (prefix != base).then_some(prefix);
    let (major, minor) = host.version;
    let python_dll = base
        .join(&format!("python{major}{minor}.dll"))
        .map_err(|why| internal("python-dll", why))?;
    if probe(&python_dll) != Kind::File {
        return Err(ConfigError(format!(
            "{python_dll}: no such file. IIS loads the Python DLL of the installation this \
             venv was made from (sys.base_prefix); that Python cannot be embedded"
        )));
    }
    let loader = match &args.library {
        Some(p) => p.clone(),
        None => Path::new(&host.package_dir).join("isapi").join(LOADER_NAME),
    };
    Ok(Target {
        cwd: Some(cwd),
        venv,
        base_python: base,
        python_dll,
        core,
        loader,
        write_dir: None,
        probe: Some(probe),
    })
}

/// `--for-windows DIR`: the target is described by options, the files are written into DIR.
fn for_windows(args: &InstallIisArgs, dir: &Path, shape: &Shape) -> Result<Target, ConfigError> {
    let need = |given: bool, option: &str, what: &str| {
        if given {
            Ok(())
        } else {
            Err(ConfigError(format!(
                "--for-windows needs {option} ({what})"
            )))
        }
    };
    need(
        args.out.is_some(),
        "--out",
        "the application's directory on the Windows machine",
    )?;
    let (Some(base), Some((major, minor))) = (&args.base_python, args.python_version) else {
        need(
            args.base_python.is_some(),
            "--base-python",
            "the Python installation there, sys.base_prefix",
        )?;
        return Err(ConfigError(
            "--for-windows needs --python-version (that Python's X.Y)".into(),
        ));
    };
    let absolute = |option: &str, text: &str| {
        WinPath::absolute(text).map_err(|why| ConfigError(format!("{option} {why}")))
    };
    let base = absolute("--base-python", base)?;
    let venv = args
        .venv
        .as_deref()
        .map(|v| absolute("--venv", v))
        .transpose()?;
    let python_dll = base
        .join(&format!("python{major}{minor}.dll"))
        .map_err(|why| ConfigError(format!("--base-python {why}")))?;
    // Where pip puts the extension module of the wheel for that Python and bitness.
    let platform = match args.bitness {
        Bitness::Bits64 => "win_amd64",
        Bitness::Bits32 => "win32",
    };
    let core = venv
        .as_ref()
        .unwrap_or(&base)
        .join(&format!(
            "Lib\\site-packages\\wsgi_gateway\\_core.cp{major}{minor}-{platform}.pyd"
        ))
        .map_err(|why| ConfigError(format!("--venv {why}")))?;
    let packaged = match shape {
        Shape::Extension(host) => {
            Some(Path::new(&host.package_dir).join("isapi").join(LOADER_NAME))
                .filter(|p| p.is_file())
        }
        Shape::Embedder => None,
    };
    let loader = args.library.clone().or(packaged).ok_or_else(|| {
        ConfigError(format!(
            "--for-windows needs --library PATH: the {LOADER_NAME} of the Windows wheel \
             (wsgi_gateway/isapi/ in it)"
        ))
    })?;
    Ok(Target {
        cwd: None,
        venv,
        base_python: base,
        python_dll,
        core,
        loader,
        write_dir: Some(dir.to_path_buf()),
        probe: None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: InstallIisArgs,
    }

    pub(crate) fn args(argv: &[&str]) -> InstallIisArgs {
        match Cli::try_parse_from(std::iter::once("install-iis").chain(argv.iter().copied())) {
            Ok(cli) => cli.args,
            Err(e) => panic!("{argv:?}: {e}"),
        }
    }

    /// The Kallithea machine: a python.org Python 3.11 and a venv made from it.
    pub(crate) fn kallithea_host() -> HostPython {
        HostPython {
            executable: r"C:\srv\venv\Scripts\python.exe".into(),
            prefix: r"C:\srv\venv".into(),
            base_prefix: r"C:\Program Files\Python311".into(),
            version: (3, 11),
            package_dir: r"C:\srv\venv\Lib\site-packages\wsgi_gateway".into(),
            core_file: r"C:\srv\venv\Lib\site-packages\wsgi_gateway\_core.cp311-win_amd64.pyd"
                .into(),
            interpreter_flags: Vec::new(),
        }
    }

    /// The files of that machine.
    pub(crate) fn kallithea_files(p: &WinPath) -> Kind {
        let files = [
            r"C:\Program Files\Python311\python311.dll",
            r"C:\srv\kallithea\my.ini",
        ];
        let dirs = [r"C:\srv\kallithea", r"C:\srv\venv", r"C:\srv"];
        let is = |list: &[&str]| {
            list.iter()
                .any(|f| WinPath::absolute(f).is_ok_and(|f| &f == p))
        };
        if is(&files) {
            Kind::File
        } else if is(&dirs) {
            Kind::Dir
        } else {
            Kind::Missing
        }
    }

    fn on_kallithea(argv: &[&str]) -> Result<Target, String> {
        from_host(
            &args(argv),
            &kallithea_host(),
            r"C:\srv\kallithea",
            kallithea_files,
        )
        .map_err(|e| e.0)
    }

    #[test]
    fn on_the_iis_machine_the_running_python_is_installed() {
        let t = on_kallithea(&["--paste", "my.ini"]).unwrap();
        assert_eq!(t.venv.unwrap().as_str(), r"C:\srv\venv");
        assert_eq!(t.base_python.as_str(), r"C:\Program Files\Python311");
        assert_eq!(
            t.python_dll.as_str(),
            r"C:\Program Files\Python311\python311.dll"
        );
        assert_eq!(
            t.core.as_str(),
            r"C:\srv\venv\Lib\site-packages\wsgi_gateway\_core.cp311-win_amd64.pyd"
        );
        assert_eq!(t.cwd.unwrap().as_str(), r"C:\srv\kallithea");
        assert!(t.write_dir.is_none() && t.probe.is_some());
        assert!(t.loader.ends_with(LOADER_NAME));
    }

    #[test]
    fn venv_may_only_name_the_running_one() {
        assert!(on_kallithea(&["--venv", r"c:\SRV\venv\"]).is_ok());
        assert!(on_kallithea(&["--venv", r"..\venv"]).is_ok());
        let e = on_kallithea(&["--venv", r"C:\other\venv"]).unwrap_err();
        assert!(
            e.starts_with(r"--venv C:\other\venv: this wsgi-gateway runs inside"),
            "{e}"
        );
    }

    #[test]
    fn a_python_without_a_venv_is_its_own_home() {
        let mut host = kallithea_host();
        host.prefix = host.base_prefix.clone();
        let t = from_host(&args(&[]), &host, r"C:\srv", kallithea_files).unwrap();
        assert!(t.venv.is_none());
    }

    #[test]
    fn a_python_without_its_dll_is_refused() {
        let mut host = kallithea_host();
        host.version = (3, 12);
        let e = from_host(&args(&[]), &host, r"C:\srv", kallithea_files)
            .unwrap_err()
            .0;
        assert!(
            e.starts_with(r"C:\Program Files\Python311\python312.dll: no such file"),
            "{e}"
        );
    }

    #[test]
    fn for_windows_takes_the_target_from_options() {
        let base = [
            "--for-windows",
            "staging",
            "--out",
            r"C:\srv\kallithea",
            "--base-python",
            r"C:\Program Files\Python311",
            "--python-version",
            "3.11",
            "--library",
            "x.dll",
        ];
        let with = |extra: &[&str]| {
            let argv: Vec<&str> = base.iter().chain(extra).copied().collect();
            describe(&args(&argv), &Shape::Embedder).map_err(|e| e.0)
        };
        let t = with(&["--venv", "D:/venvs/kallithea"]).unwrap();
        assert_eq!(
            t.python_dll.as_str(),
            r"C:\Program Files\Python311\python311.dll"
        );
        assert_eq!(
            t.core.as_str(),
            r"D:\venvs\kallithea\Lib\site-packages\wsgi_gateway\_core.cp311-win_amd64.pyd"
        );
        assert_eq!(t.write_dir.as_deref(), Some(Path::new("staging")));
        assert!(t.cwd.is_none() && t.probe.is_none());
        let t = with(&["--bitness", "32"]).unwrap();
        assert_eq!(
            t.core.as_str(),
            r"C:\Program Files\Python311\Lib\site-packages\wsgi_gateway\_core.cp311-win32.pyd"
        );
        let e = with(&["--venv", "venv"]).unwrap_err();
        assert!(
            e.starts_with("--venv \"venv\": not an absolute Windows path"),
            "{e}"
        );
    }

    #[test]
    fn for_windows_says_what_it_misses() {
        let describe_ = |argv: &[&str]| describe(&args(argv), &Shape::Embedder).unwrap_err().0;
        // Each option given in turn: the message names the next one missing.
        let given = [
            "--for-windows",
            "d",
            "--out",
            r"C:\a",
            "--base-python",
            r"C:\P",
            "--python-version",
            "3.11",
        ];
        for (n, missing) in [
            (2, "needs --out"),
            (4, "needs --base-python"),
            (6, "needs --python-version"),
            (8, "needs --library PATH"),
        ] {
            let e = describe_(&given[..n]);
            assert!(e.contains(missing), "{e}");
        }
    }

    #[test]
    fn elsewhere_without_for_windows_is_one_refusal() {
        let e = describe(&args(&["app"]), &Shape::Embedder).unwrap_err().0;
        assert!(e.starts_with("install-iis writes an IIS install") && !e.contains('\n'));
        assert!(e.contains("--for-windows DIR"));
        #[cfg(not(windows))]
        {
            let e = describe(&args(&["app"]), &Shape::Extension(kallithea_host()))
                .unwrap_err()
                .0;
            assert!(e.contains("on the Windows machine") && e.contains("--for-windows DIR"));
        }
        let e = describe(
            &args(&["app", "--python-version", "3.11"]),
            &Shape::Embedder,
        )
        .unwrap_err()
        .0;
        assert!(
            e.starts_with("--python-version describes another machine"),
            "{e}"
        );
    }
}
