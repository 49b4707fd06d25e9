//! Facts about the loaded library itself: where its file is (the configuration sits beside
//! it), and pinning it in memory so threads stuck in an app can never run unmapped code after
//! IIS unloads the extension.

use std::path::PathBuf;

/// Any function of this library: its address identifies the module.
fn marker() {}

#[cfg(unix)]
pub fn own_path() -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr only reads the address and fills `info`; the name it returns points into
    // the loader's own tables, valid while the library is loaded, and is copied at once.
    unsafe {
        if libc::dladdr(marker as *const libc::c_void, info.as_mut_ptr()) == 0 {
            return None;
        }
        let name = info.assume_init().dli_fname;
        if name.is_null() {
            return None;
        }
        let bytes = std::ffi::CStr::from_ptr(name).to_bytes();
        Some(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
    }
}

#[cfg(unix)]
pub fn pin() {
    let Some(path) = own_path() else { return };
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return;
    };
    // SAFETY: RTLD_NOLOAD only takes another reference to this already loaded library, and
    // RTLD_NODELETE keeps it mapped for the life of the process; the handle is never closed.
    unsafe {
        libc::dlopen(
            c.as_ptr(),
            libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
        );
    }
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
