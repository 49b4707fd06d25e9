//! The few Win32 calls the loader makes, each behind a safe function: where this DLL is,
//! loading a DLL by absolute path, finding an export, and the debugger channel.

use std::ffi::{OsStr, OsString};
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use windows_sys::Win32::Foundation::{GetLastError, HMODULE};
use windows_sys::Win32::System::Diagnostics::Debug::OutputDebugStringW;
use windows_sys::Win32::System::LibraryLoader::{
    GetModuleFileNameW, GetModuleHandleExW, GetProcAddress, LoadLibraryExW,
    GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS, GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
    LOAD_WITH_ALTERED_SEARCH_PATH,
};

/// A loaded DLL. Never freed: the core runs threads for the life of the process, and Python
/// cannot be unloaded.
#[derive(Clone, Copy)]
pub struct Module(HMODULE);

/// The type every export is looked up as; `start` casts it to the real signature.
pub type Export = unsafe extern "system" fn() -> isize;

/// Any function of this DLL: its address identifies the module.
fn marker() {}

/// This DLL's own file (the configuration sits beside it).
pub fn own_path() -> Result<PathBuf, String> {
    let mut module: HMODULE = std::ptr::null_mut();
    // SAFETY: the address is this module's code, and `module` is a valid out pointer. The
    // reference count is left unchanged, so nothing has to be released.
    let found = unsafe {
        GetModuleHandleExW(
            GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
            marker as *const u16,
            &mut module,
        )
    };
    if found == 0 {
        return Err(format!(
            "cannot find this DLL's own module ({})",
            last_error()
        ));
    }
    let mut buf = vec![0u16; 32768];
    let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
    // SAFETY: the buffer is writable for `len` UTF-16 units.
    let n = unsafe { GetModuleFileNameW(module, buf.as_mut_ptr(), len) } as usize;
    if n == 0 || n >= buf.len() {
        return Err(format!(
            "cannot read this DLL's file name ({})",
            last_error()
        ));
    }
    buf.truncate(n);
    Ok(PathBuf::from(OsString::from_wide(&buf)))
}

/// `path` as a NUL-terminated UTF-16 string, for the W functions.
pub fn wide(path: &OsStr) -> Vec<u16> {
    path.encode_wide().chain(Some(0)).collect()
}

/// Loads a DLL by its absolute path; its own imports are searched from its folder first
/// (`LOAD_WITH_ALTERED_SEARCH_PATH`: python3X.dll finds the vcruntime installed beside it),
/// and a module of the same name already loaded satisfies them. The error is Windows' code.
pub fn load(path: &Path) -> Result<Module, u32> {
    let name = wide(path.as_os_str());
    // SAFETY: `name` is NUL-terminated and outlives the call; no file handle is passed.
    let module = unsafe {
        LoadLibraryExW(
            name.as_ptr(),
            std::ptr::null_mut(),
            LOAD_WITH_ALTERED_SEARCH_PATH,
        )
    };
    if module.is_null() {
        // SAFETY: reads this thread's last-error value; no memory is involved.
        return Err(unsafe { GetLastError() });
    }
    Ok(Module(module))
}

/// An export of `module` by its plain name (`name` ends with a NUL byte).
pub fn export(module: Module, name: &'static [u8]) -> Option<Export> {
    debug_assert_eq!(name.last(), Some(&0));
    // SAFETY: the module is loaded for good and `name` is NUL-terminated.
    unsafe { GetProcAddress(module.0, name.as_ptr()) }
}

/// One line for a debugger or DebugView (IIS gives an ISAPI extension no console).
pub fn debug_string(line: &str) {
    let text: Vec<u16> = line.encode_utf16().chain(Some(0)).collect();
    // SAFETY: `text` is NUL-terminated and outlives the call.
    unsafe { OutputDebugStringW(text.as_ptr()) }
}

fn last_error() -> String {
    // SAFETY: reads this thread's last-error value; no memory is involved.
    format!("Windows error {}", unsafe { GetLastError() })
}

/// What a LoadLibraryExW error code means, in words an IIS admin can act on.
pub fn load_error_text(code: u32) -> String {
    let why = match code {
        2 | 3 => "no such file",
        5 => "access denied (the application pool's identity needs read access)",
        126 => "a DLL it imports was not found",
        193 => "not a DLL for this process (a 32/64-bit mismatch with the application pool?)",
        _ => "cannot load it",
    };
    format!("{why} (Windows error {code})")
}
