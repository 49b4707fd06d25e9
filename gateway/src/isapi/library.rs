//! Facts about the loaded library itself: where its file is (the configuration sits beside
//! it), and pinning it in memory so threads stuck in an app can never run unmapped code after
//! IIS unloads the extension.

use std::path::PathBuf;

/// Any function of this library: its address identifies the module.
fn marker() {}

#[cfg(unix)]
pub fn own_path() -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let name = file_of(marker as *const libc::c_void)?;
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes())))
}

#[cfg(unix)]
pub fn pin() {
    // RTLD_NODELETE keeps it mapped for the life of the process.
    reopen(marker as *const libc::c_void, libc::RTLD_NODELETE);
}

/// Opens the already loaded library holding `addr` once more with `flags` added (never
/// closed): the loader widens that library's scope or lifetime.
#[cfg(unix)]
fn reopen(addr: *const libc::c_void, flags: libc::c_int) {
    let Some(file) = file_of(addr) else { return };
    // SAFETY: with RTLD_NOLOAD, dlopen only takes another reference to a library already
    // loaded; the handle is deliberately kept.
    unsafe {
        libc::dlopen(file.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD | flags);
    }
}

/// The file a symbol of this process lives in.
#[cfg(unix)]
fn file_of(addr: *const libc::c_void) -> Option<std::ffi::CString> {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr only reads the address and fills `info`; the name it returns points into
    // the loader's own tables, valid while the library is loaded, and is copied at once.
    unsafe {
        if libc::dladdr(addr, info.as_mut_ptr()) == 0 {
            return None;
        }
        let name = info.assume_init().dli_fname;
        if name.is_null() {
            return None;
        }
        Some(std::ffi::CStr::from_ptr(name).to_owned())
    }
}

/// Makes libpython's symbols global. A host loads an extension with RTLD_LOCAL, so libpython
/// (loaded as our dependency) is local too, and Python's own C modules (`_hashlib`, `_json`,
/// which do not link libpython) would fail to import. Windows links them to python3X.dll by
/// name, so there is nothing to do there.
#[cfg(unix)]
pub fn share_python_symbols() {
    reopen(
        pyo3::ffi::Py_IsInitialized as *const libc::c_void,
        libc::RTLD_GLOBAL,
    );
}

#[cfg(windows)]
pub fn share_python_symbols() {}

/// A path the ISAPI loader passed as UTF-16 (Windows' own path text).
#[cfg(windows)]
pub fn path_from_wide(units: &[u16]) -> Option<PathBuf> {
    use std::os::windows::ffi::OsStringExt;
    Some(PathBuf::from(std::ffi::OsString::from_wide(units)))
}

/// The same for a test host on another system: the text must be valid UTF-16.
#[cfg(not(windows))]
pub fn path_from_wide(units: &[u16]) -> Option<PathBuf> {
    String::from_utf16(units).ok().map(PathBuf::from)
}

#[cfg(windows)]
pub fn own_path() -> Option<PathBuf> {
    use std::os::windows::ffi::OsStringExt;
    use windows_sys::Win32::System::LibraryLoader::{
        GetModuleFileNameW, GetModuleHandleExW, GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS,
        GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
    };
    let mut module = std::ptr::null_mut();
    let mut buf = vec![0u16; 32768];
    // SAFETY: the address is this module's code; the buffer's length is passed with it.
    unsafe {
        if GetModuleHandleExW(
            GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
            marker as *const u16,
            &mut module,
        ) == 0
        {
            return None;
        }
        let n = GetModuleFileNameW(module, buf.as_mut_ptr(), buf.len() as u32) as usize;
        if n == 0 || n >= buf.len() {
            return None;
        }
        buf.truncate(n);
    }
    Some(PathBuf::from(std::ffi::OsString::from_wide(&buf)))
}

#[cfg(windows)]
pub fn pin() {
    use windows_sys::Win32::System::LibraryLoader::{
        GetModuleHandleExW, GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS, GET_MODULE_HANDLE_EX_FLAG_PIN,
    };
    let mut module = std::ptr::null_mut();
    // SAFETY: pins this module (by one of its addresses) until the process exits.
    unsafe {
        GetModuleHandleExW(
            GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_PIN,
            marker as *const u16,
            &mut module,
        );
    }
}
