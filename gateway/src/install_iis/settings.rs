//! wsgi-gateway.toml for the ISAPI loader and the core it loads: only keys the core's
//! configuration schema accepts (gateway/src/isapi/config.rs).

use serde::Serialize;

use crate::config::ConfigError;

#[derive(Serialize, Debug, Default)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct Settings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paste: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chdir: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pythonpath: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub venv: Option<String>,
    /// For the loader: the Python DLL it loads first, by absolute path (so IIS needs no
    /// Python on its search path), then the core.
    pub python_dll: String,
    pub core: String,
    pub error_log: String,
    pub threads: u32,
}

pub(super) fn render(settings: &Settings) -> Result<String, ConfigError> {
    let body = toml::to_string(settings)
        .map_err(|e| ConfigError(format!("internal: cannot write the TOML settings: {e}")))?;
    Ok(format!(
        "# Settings for wsgi_gateway_isapi.dll, which reads the wsgi-gateway.toml beside itself,\n\
         # loads python-dll, then the wsgi-gateway core, which runs the app with these settings.\n\
         # Written by `wsgi-gateway install-iis`. Other keys: log-level, debug, queue-size,\n\
         # max-body-size, graceful-timeout, forwarded-allow-ips, identity-header,\n\
         # header-underscores, script-name, switch-interval (see the README). Recycle the pool\n\
         # after a change.\n\
         {body}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_toml() {
        let s = Settings {
            app: Some("kallithea.wsgi:application".into()),
            pythonpath: vec![r"C:\a b".into(), r"D:\x & 'y'".into()],
            error_log: r#"C:\srv\"q"\wsgi-gateway.log"#.into(),
            threads: 8,
            ..Settings::default()
        };
        let text = render(&s).unwrap();
        let table: toml::Table = text.parse().unwrap();
        assert_eq!(table["app"].as_str(), Some("kallithea.wsgi:application"));
        assert_eq!(table["pythonpath"][1].as_str(), Some(r"D:\x & 'y'"));
        assert_eq!(
            table["error-log"].as_str(),
            Some(r#"C:\srv\"q"\wsgi-gateway.log"#)
        );
        assert_eq!(table["threads"].as_integer(), Some(8));
        assert!(!table.contains_key("paste") && !table.contains_key("venv"));
    }
}
