//! The three ISAPI entry points IIS calls, forwarded to the core once `start` has loaded it.

use std::ffi::c_void;
use std::sync::OnceLock;

use super::report;
use super::start::{self, Core};

/// `HSE_STATUS_ERROR` (httpext.h).
const HSE_STATUS_ERROR: u32 = 4;

/// The loaded core. The core is never unloaded, so its entry points stay valid even if IIS
/// unloads and reloads this DLL.
static CORE: OnceLock<Core> = OnceLock::new();

/// Loads Python and the core, then lets the core start the app. FALSE means IIS will not use
/// the extension; the reason is one line in the error log.
///
/// # Safety
/// `ver` is what IIS passes: null or a writable `HSE_VERSION_INFO`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn GetExtensionVersion(ver: *mut c_void) -> i32 {
    let core = match CORE.get() {
        Some(core) => core,
        None => match std::panic::catch_unwind(start::start) {
            Ok(Ok(core)) => CORE.get_or_init(|| core),
            Ok(Err(failure)) => {
                report::failure(failure.log.as_deref(), &failure.msg);
                return 0;
            }
            Err(_) => {
                report::failure(None, "internal error in the ISAPI loader");
                return 0;
            }
        },
    };
    // SAFETY: IIS's pointer goes unchanged to the core's GetExtensionVersion, whose contract
    // is the same.
    unsafe { (core.version)(ver) }
}

/// # Safety
/// `ecb` is the ECB IIS passes for this request.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn HttpExtensionProc(ecb: *mut c_void) -> u32 {
    match CORE.get() {
        // SAFETY: IIS's ECB goes unchanged to the core, whose contract is the same.
        Some(core) => unsafe { (core.request)(ecb) },
        // IIS calls this only after GetExtensionVersion returned TRUE.
        None => HSE_STATUS_ERROR,
    }
}

#[unsafe(no_mangle)]
pub extern "system" fn TerminateExtension(flags: u32) -> i32 {
    match CORE.get() {
        // SAFETY: the core's TerminateExtension takes the flags IIS passes.
        Some(core) => unsafe { (core.terminate)(flags) },
        None => 1,
    }
}
