//! install-iis.cmd and uninstall-iis.cmd: the appcmd steps that register the application with
//! IIS (the native IIS 7+ way; no IIS 6 metabase compatibility needed).

use super::Plan;
use crate::config::Bitness;

const HANDLERS: &str = "system.webServer/handlers";
const RESTRICTIONS: &str = "system.webServer/security/isapiCgiRestriction";
const WINDOWS_AUTH: &str = "system.webServer/security/authentication/windowsAuthentication";
const ANONYMOUS_AUTH: &str = "system.webServer/security/authentication/anonymousAuthentication";

/// Where IIS identifies the application: the app and vdir names appcmd lists, and the
/// configuration location path.
struct Names {
    app: String,
    vdir: String,
    location: String,
}

fn names(plan: &Plan) -> Names {
    if plan.vdir == "/" {
        Names {
            app: format!("{}/", plan.site),
            vdir: format!("{}/", plan.site),
            location: plan.site.clone(),
        }
    } else {
        Names {
            app: format!("{}{}", plan.site, plan.vdir),
            vdir: format!("{}{}/", plan.site, plan.vdir),
            location: format!("{}{}", plan.site, plan.vdir),
        }
    }
}

pub(super) fn install(plan: &Plan) -> String {
    let n = names(plan);
    let pool = q(&plan.pool);
    let out = q(plan.out.as_str());
    let loc = q(&n.location);
    let wow64 = plan.bitness == Bitness::Bits32;
    let mut s = header(
        plan,
        "Registers this directory with IIS. Safe to run again; uninstall-iis.cmd reverses it.",
    );
    s.push(String::new());
    s.push("rem The pool: no .NET (the DLL is native code), 32-bit only for a 32-bit DLL.".into());
    s.push(format!(
        "\"%APPCMD%\" list apppool {pool} >nul 2>&1 && goto pool_ready"
    ));
    s.push(format!(
        "\"%APPCMD%\" add apppool /name:{pool} || goto failed"
    ));
    s.push(":pool_ready".into());
    s.push(format!(
        "\"%APPCMD%\" set apppool {pool} /managedRuntimeVersion:\"\" \
         /managedPipelineMode:Integrated /enable32BitAppOnWin64:{wow64} || goto failed"
    ));
    for line in [
        "rem A Python app is slow to start and keeps state in its process: the pool starts",
        "rem with IIS (startMode AlwaysRunning) instead of at the first request, and is not",
        "rem shut down after 20 idle minutes (idleTimeout 0), which would start Python and",
        "rem the app again on the next request.",
    ] {
        s.push(line.into());
    }
    s.push(format!(
        "\"%APPCMD%\" set apppool {pool} /startMode:AlwaysRunning \
         /processModel.idleTimeout:00:00:00 || goto failed"
    ));
    for line in [
        "rem Rapid-Fail Protection (left on, IIS's default): after 5 crashes of the pool's",
        "rem worker process within 5 minutes IIS stops the pool, and the site answers 503 until",
        "rem it is started again. A crash is the process dying: a Python fatal error, a fault",
        "rem in a C extension. An app that fails to start is not one: the DLL refuses to load",
        "rem (500s, one line in wsgi-gateway.log) and the process lives on. To see it: the",
        "rem System event log (source WAS) records each crash and the pool being disabled,",
    ] {
        s.push(line.into());
    }
    // No `%` in a rem line: cmd expands it there too.
    s.push(format!(
        "rem appcmd list apppool {pool} /text:state shows Stopped, and"
    ));
    s.push(format!("rem appcmd start apppool {pool} starts it again."));
    s.push(String::new());
    if plan.vdir == "/" {
        s.push(
            "rem The site root serves this directory in the pool above. Its previous physical"
                .into(),
        );
        s.push("rem path is shown first: uninstall-iis.cmd cannot know it.".into());
        s.push("echo Physical path of the site root before this script:".into());
        s.push(format!(
            "\"%APPCMD%\" list vdir {} /text:physicalPath",
            q(&n.vdir)
        ));
    } else {
        s.push("rem The application serves this directory in the pool above.".into());
        s.push(format!(
            "\"%APPCMD%\" list app {} >nul 2>&1 && goto app_ready",
            q(&n.app)
        ));
        s.push(format!(
            "\"%APPCMD%\" add app /site.name:{} /path:{} /physicalPath:{out} || goto failed",
            q(&plan.site),
            q(&plan.vdir)
        ));
        s.push(":app_ready".into());
    }
    s.push(format!(
        "\"%APPCMD%\" set vdir {} /physicalPath:{out} || goto failed",
        q(&n.vdir)
    ));
    s.push(format!(
        "\"%APPCMD%\" set app {} /applicationPool:{pool} || goto failed",
        q(&n.app)
    ));
    s.push(
        "rem Preload: when the pool starts, IIS sends the application a request of its own,".into(),
    );
    s.push(
        "rem so Python and the app are loaded before the first user's request (takes effect".into(),
    );
    s.push("rem with the Application Initialization role service installed).".into());
    s.push(format!(
        "\"%APPCMD%\" set app {} /preloadEnabled:true || goto failed",
        q(&n.app)
    ));
    s.push(String::new());
    s.push(
        "rem IIS runs only the ISAPI DLLs on its allow-list (404.2 otherwise): the loader,".into(),
    );
    s.push("rem which loads Python and the wsgi-gateway core itself.".into());
    s.push(format!(
        "\"%APPCMD%\" set config /section:{RESTRICTIONS} /-{} /commit:apphost >nul 2>&1",
        q(&format!("[path='{}']", plan.dll))
    ));
    s.push(format!(
        "\"%APPCMD%\" set config /section:{RESTRICTIONS} /+{} /commit:apphost || goto failed",
        q(&format!(
            "[path='{}',allowed='True',description='wsgi-gateway']",
            plan.dll
        ))
    ));
    s.push(String::new());
    s.push("rem web.config maps the handler: IIS locks that section by default, and an".into());
    s.push("rem ISAPI handler needs Execute access.".into());
    s.push(format!(
        "\"%APPCMD%\" unlock config {loc} /section:{HANDLERS} || goto failed"
    ));
    s.push(format!(
        "\"%APPCMD%\" set config {loc} /section:{HANDLERS} \
         /accessPolicy:\"Read, Script, Execute\" /commit:apphost || goto failed"
    ));
    if plan.windows_auth {
        s.push(String::new());
        s.push(
            "rem Windows authentication: REMOTE_USER is DOMAIN\\user on every request, as".into(),
        );
        s.push(
            "rem anonymous access is off (needs the Windows Authentication role service).".into(),
        );
        s.push(format!(
            "\"%APPCMD%\" set config {loc} /section:{WINDOWS_AUTH} /enabled:true \
             /commit:apphost || goto failed"
        ));
        s.push(format!(
            "\"%APPCMD%\" set config {loc} /section:{ANONYMOUS_AUTH} /enabled:false \
             /commit:apphost || goto failed"
        ));
    }
    s.push(String::new());
    s.push("rem The pool's identity reads this directory and appends to the error log.".into());
    s.push(format!(
        "icacls {out} /grant {} || goto failed",
        q(&format!("IIS AppPool\\{}:(OI)(CI)RX", plan.pool))
    ));
    s.push(format!(
        "icacls {} /grant {} || goto failed",
        q(plan.log.as_str()),
        q(&format!("IIS AppPool\\{}:M", plan.pool))
    ));
    s.push(String::new());
    s.push("echo install-iis.cmd: done. Recycle the pool (or iisreset) to load new code.".into());
    s.push("exit /b 0".into());
    s.push(String::new());
    s.push(":failed".into());
    s.push(
        "echo install-iis.cmd: the command above failed; the steps after it were not run. 1>&2"
            .into(),
    );
    s.push("exit /b 1".into());
    lines(s)
}

pub(super) fn uninstall(plan: &Plan) -> String {
    let n = names(plan);
    let pool = q(&plan.pool);
    let loc = q(&n.location);
    let mut s = header(
        plan,
        "Reverses install-iis.cmd. The files in this directory are left in place.",
    );
    s.push("set \"FAILED=\"".into());
    if plan.windows_auth {
        s.push(String::new());
        s.push("rem Authentication goes back to what the site inherits.".into());
        for section in [WINDOWS_AUTH, ANONYMOUS_AUTH] {
            s.push(format!(
                "\"%APPCMD%\" clear config {loc} /section:{section} /commit:apphost || set FAILED=1"
            ));
        }
    }
    s.push(String::new());
    s.push("rem Handler access and the section lock go back to the IIS defaults.".into());
    s.push(format!(
        "\"%APPCMD%\" set config {loc} /section:{HANDLERS} /accessPolicy:\"Read, Script\" \
         /commit:apphost || set FAILED=1"
    ));
    s.push(format!(
        "\"%APPCMD%\" lock config {loc} /section:{HANDLERS} || set FAILED=1"
    ));
    s.push(String::new());
    if plan.vdir == "/" {
        s.push(
            "rem The site root goes back to the IIS defaults (install-iis.cmd showed the".into(),
        );
        s.push("rem path it had before; set it again with appcmd set vdir if it differs).".into());
        s.push(format!(
            "\"%APPCMD%\" set app {} /applicationPool:\"DefaultAppPool\" \
             /preloadEnabled:false || set FAILED=1",
            q(&n.app)
        ));
        s.push(format!(
            "\"%APPCMD%\" set vdir {} /physicalPath:\"%SystemDrive%\\inetpub\\wwwroot\" || set FAILED=1",
            q(&n.vdir)
        ));
    } else {
        s.push(format!(
            "\"%APPCMD%\" delete app {} || set FAILED=1",
            q(&n.app)
        ));
    }
    s.push(format!(
        "\"%APPCMD%\" set config /section:{RESTRICTIONS} /-{} /commit:apphost || set FAILED=1",
        q(&format!("[path='{}']", plan.dll))
    ));
    s.push(String::new());
    s.push("rem The grants name the pool's identity, so they go before the pool.".into());
    let who = q(&format!("IIS AppPool\\{}", plan.pool));
    s.push(format!(
        "icacls {} /remove {who} || set FAILED=1",
        q(plan.log.as_str())
    ));
    s.push(format!(
        "icacls {} /remove {who} || set FAILED=1",
        q(plan.out.as_str())
    ));
    s.push(format!(
        "\"%APPCMD%\" delete apppool {pool} || set FAILED=1"
    ));
    s.push(String::new());
    s.push("if defined FAILED goto failed".into());
    s.push("echo uninstall-iis.cmd: done.".into());
    s.push("exit /b 0".into());
    s.push(":failed".into());
    s.push("echo uninstall-iis.cmd: some steps failed (see above). 1>&2".into());
    s.push("exit /b 1".into());
    lines(s)
}

fn header(plan: &Plan, what: &str) -> Vec<String> {
    let mut s = vec![
        "@echo off".to_string(),
        "rem Written by wsgi-gateway install-iis. Run as administrator.".into(),
        format!("rem {what}"),
        "setlocal DisableDelayedExpansion".into(),
    ];
    // cmd reads a script in the console's code page; switch to UTF-8 only when needed,
    // since the change outlives the script in that console.
    if !plan.is_ascii() {
        s.push("chcp 65001 >nul".into());
    }
    s.push("set \"APPCMD=%windir%\\system32\\inetsrv\\appcmd.exe\"".into());
    s.push("if not exist \"%APPCMD%\" goto no_appcmd".into());
    s.push("goto start".into());
    s.push(":no_appcmd".into());
    s.push("echo appcmd.exe not found: install IIS (Web Server role) first. 1>&2".into());
    s.push("exit /b 1".into());
    s.push(":start".into());
    s
}

/// cmd runs a batch file correctly only with CRLF line ends (labels and `goto` misbehave
/// with bare LF).
fn lines(s: Vec<String>) -> String {
    let mut text = s.join("\r\n");
    text.push_str("\r\n");
    text
}

/// `value` as one double-quoted argument on a cmd line. The values were checked to hold no
/// `"`, `%`, `'` or control characters; between quotes cmd takes `&`, `|`, `<`, `>`, `^` and
/// parentheses literally, and delayed expansion (`!`) is off. Backslashes before the closing
/// quote are doubled, or the program's argument parser would read `\"` as a quote character.
pub(super) fn q(value: &str) -> String {
    let trailing = value.len() - value.trim_end_matches('\\').len();
    format!("\"{value}{}\"", "\\".repeat(trailing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(q(r"C:\Apps & Co"), r#""C:\Apps & Co""#);
        assert_eq!(q(r"C:\"), r#""C:\\""#);
        assert_eq!(q(""), r#""""#);
    }
}
