//! The ISAPI front end: a library IIS loads (`httpext.h`). IIS parses HTTP, authenticates and
//! hands each request over as an ECB (`ecb`); `request` maps it to the one `Request`, a
//! worker runs the app, and `body`/`response` carry the bytes through IIS's callbacks.

mod body;
mod config;
mod ecb;
mod extension;
mod ffi;
mod library;
pub(crate) mod request;
mod response;

use ffi::{Bool, Dword, ExtensionControlBlock, HseVersionInfo, HSE_STATUS_ERROR, HSE_VERSION};

const DESCRIPTION: &[u8] = b"wsgi-gateway: Python WSGI applications";

/// Called once when IIS loads the library. Python starts here (never in DllMain).
///
/// # Safety
/// `ver` is null or points to a writable `HSE_VERSION_INFO`, as IIS passes it.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn GetExtensionVersion(ver: *mut HseVersionInfo) -> Bool {
    let started = std::panic::catch_unwind(extension::start)
        .unwrap_or_else(|_| Err("internal error while starting".to_string()));
    if let Err(msg) = started {
        report_start_failure(&msg);
        return 0;
    }
    // SAFETY: IIS passes a valid, writable HSE_VERSION_INFO (null is refused).
    if let Some(ver) = unsafe { ver.as_mut() } {
        ver.dw_extension_version = HSE_VERSION;
        let n = DESCRIPTION.len().min(ver.lpsz_extension_desc.len() - 1);
        ver.lpsz_extension_desc[..n].copy_from_slice(&DESCRIPTION[..n]);
        ver.lpsz_extension_desc[n] = 0;
    }
    1
}

/// Called by IIS for each request, on an IIS thread.
///
/// # Safety
/// `ecb` is the ECB IIS passes for this request; it stays valid until DONE_WITH_SESSION when
/// this returns HSE_STATUS_PENDING, or until this returns otherwise.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn HttpExtensionProc(ecb: *mut ExtensionControlBlock) -> Dword {
    // SAFETY: see above; a null pointer is refused by `Ecb::new`.
    let Some(ecb) = (unsafe { ecb::Ecb::new(ecb) }) else {
        return HSE_STATUS_ERROR;
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| extension::accept(ecb)))
        .unwrap_or(HSE_STATUS_ERROR)
}

/// Called by the ISAPI loader (`wsgi_gateway_isapi.dll`, gateway/isapi-loader) before
/// GetExtensionVersion: the configuration file it read, which this library then reads too.
/// TRUE when recorded; FALSE for a null, unterminated (beyond 32767 units) or invalid path.
///
/// # Safety
/// `path` is null or points to a NUL-terminated UTF-16 string.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn WsgiGatewayIsapiConfigure(path: *const u16) -> Bool {
    if path.is_null() {
        return 0;
    }
    // Windows paths are at most 32767 UTF-16 units.
    let mut len = 0;
    // SAFETY: the caller's string is NUL-terminated; reading stops at the NUL or the bound.
    while len < 32768 && unsafe { *path.add(len) } != 0 {
        len += 1;
    }
    if len == 0 || len == 32768 {
        return 0;
    }
    // SAFETY: the `len` units before the NUL were just read.
    let units = unsafe { std::slice::from_raw_parts(path, len) };
    match library::path_from_wide(units) {
        Some(file) => {
            config::set_configured(file);
            1
        }
        None => 0,
    }
}

/// Called by IIS before it unloads the library (application pool recycle or stop).
#[unsafe(no_mangle)]
pub extern "system" fn TerminateExtension(_flags: Dword) -> Bool {
    // Advisory or not, every request is ended before IIS may unload us.
    let _ = std::panic::catch_unwind(extension::stop);
    1
}

/// GetExtensionVersion failed: one line on stderr and in the error log (the configured one
/// when logging started, else `wsgi-gateway.log` beside the configuration file).
fn report_start_failure(msg: &str) {
    let line = format!("wsgi-gateway: error: {msg}");
    eprintln!("{line}");
    tracing::error!("{msg}");
    if tracing::dispatcher::has_been_set() {
        return;
    }
    let lib_dir = library::own_path().and_then(|p| p.parent().map(|d| d.to_path_buf()));
    let Some(dir) = config::config_file(lib_dir.as_deref())
        .ok()
        .and_then(|f| f.parent().map(|d| d.to_path_buf()))
    else {
        return;
    };
    let log = dir.join("wsgi-gateway.log");
    if let Ok(mut f) = crate::logging::open_append(&log.display().to_string()) {
        use std::io::Write;
        let _ = writeln!(f, "{line}");
    }
}
