//! The `httpext.h` contract, mirrored: struct layouts, constants and callback types. Offsets are
//! checked at compile time for 64- and 32-bit targets (the numbers are those of the mingw-w64
//! header; `LAYOUT` is checked against the header itself by a test).

use std::ffi::c_void;
use std::mem::{offset_of, size_of};

pub type Dword = u32;
pub type Bool = i32;
pub type Hconn = *mut c_void;

pub const HSE_VERSION: Dword = 0x0006_0000;
pub const HSE_MAX_EXT_DLL_NAME_LEN: usize = 256;
pub const HSE_LOG_BUFFER_LEN: usize = 80;

pub const HSE_STATUS_SUCCESS: Dword = 1;
pub const HSE_STATUS_SUCCESS_AND_KEEP_CONN: Dword = 2;
pub const HSE_STATUS_PENDING: Dword = 3;
pub const HSE_STATUS_ERROR: Dword = 4;

pub const HSE_REQ_DONE_WITH_SESSION: Dword = 4;
pub const HSE_REQ_SEND_RESPONSE_HEADER_EX: Dword = 1016;
pub const HSE_REQ_CLOSE_CONNECTION: Dword = 1017;

pub const HSE_IO_SYNC: Dword = 0x1;

// TerminateExtension ends every request whatever the flag; the test checks the values.
#[cfg(test)]
pub const HSE_TERM_ADVISORY_UNLOAD: Dword = 1;
#[cfg(test)]
pub const HSE_TERM_MUST_UNLOAD: Dword = 2;

/// `cbTotalBytes` when the length is unknown (chunked, or 4 GB and more): read to the end.
pub const UNKNOWN_LENGTH: Dword = 0xFFFF_FFFF;

#[repr(C)]
pub struct HseVersionInfo {
    pub dw_extension_version: Dword,
    pub lpsz_extension_desc: [u8; HSE_MAX_EXT_DLL_NAME_LEN],
}

pub type GetServerVariableFn =
    unsafe extern "system" fn(Hconn, *const u8, *mut c_void, *mut Dword) -> Bool;
pub type WriteClientFn = unsafe extern "system" fn(Hconn, *const c_void, *mut Dword, Dword) -> Bool;
pub type ReadClientFn = unsafe extern "system" fn(Hconn, *mut c_void, *mut Dword) -> Bool;
pub type ServerSupportFunctionFn =
    unsafe extern "system" fn(Hconn, Dword, *mut c_void, *mut Dword, *mut Dword) -> Bool;

#[repr(C)]
pub struct ExtensionControlBlock {
    pub cb_size: Dword,
    pub dw_version: Dword,
    pub conn_id: Hconn,
    pub dw_http_status_code: Dword,
    pub lpsz_log_data: [u8; HSE_LOG_BUFFER_LEN],
    pub lpsz_method: *const u8,
    pub lpsz_query_string: *const u8,
    pub lpsz_path_info: *const u8,
    pub lpsz_path_translated: *const u8,
    pub cb_total_bytes: Dword,
    pub cb_available: Dword,
    pub lpb_data: *const u8,
    pub lpsz_content_type: *const u8,
    pub get_server_variable: Option<GetServerVariableFn>,
    pub write_client: Option<WriteClientFn>,
    pub read_client: Option<ReadClientFn>,
    pub server_support_function: Option<ServerSupportFunctionFn>,
}

#[repr(C)]
pub struct HseSendHeaderExInfo {
    pub psz_status: *const u8,
    pub psz_header: *const u8,
    pub cch_status: Dword,
    pub cch_header: Dword,
    pub f_keep_conn: Bool,
}

/// (struct, field, x64 offset, x86 offset) as in `httpext.h`; `size` rows give `sizeof`.
pub const LAYOUT: [(&str, &str, usize, usize); 27] = [
    ("HSE_VERSION_INFO", "dwExtensionVersion", 0, 0),
    ("HSE_VERSION_INFO", "lpszExtensionDesc", 4, 4),
    ("HSE_VERSION_INFO", "size", 260, 260),
    ("EXTENSION_CONTROL_BLOCK", "cbSize", 0, 0),
    ("EXTENSION_CONTROL_BLOCK", "dwVersion", 4, 4),
    ("EXTENSION_CONTROL_BLOCK", "ConnID", 8, 8),
    ("EXTENSION_CONTROL_BLOCK", "dwHttpStatusCode", 16, 12),
    ("EXTENSION_CONTROL_BLOCK", "lpszLogData", 20, 16),
    ("EXTENSION_CONTROL_BLOCK", "lpszMethod", 104, 96),
    ("EXTENSION_CONTROL_BLOCK", "lpszQueryString", 112, 100),
    ("EXTENSION_CONTROL_BLOCK", "lpszPathInfo", 120, 104),
    ("EXTENSION_CONTROL_BLOCK", "lpszPathTranslated", 128, 108),
    ("EXTENSION_CONTROL_BLOCK", "cbTotalBytes", 136, 112),
    ("EXTENSION_CONTROL_BLOCK", "cbAvailable", 140, 116),
    ("EXTENSION_CONTROL_BLOCK", "lpbData", 144, 120),
    ("EXTENSION_CONTROL_BLOCK", "lpszContentType", 152, 124),
    ("EXTENSION_CONTROL_BLOCK", "GetServerVariable", 160, 128),
    ("EXTENSION_CONTROL_BLOCK", "WriteClient", 168, 132),
    ("EXTENSION_CONTROL_BLOCK", "ReadClient", 176, 136),
    ("EXTENSION_CONTROL_BLOCK", "ServerSupportFunction", 184, 140),
    ("EXTENSION_CONTROL_BLOCK", "size", 192, 144),
    ("HSE_SEND_HEADER_EX_INFO", "pszStatus", 0, 0),
    ("HSE_SEND_HEADER_EX_INFO", "pszHeader", 8, 4),
    ("HSE_SEND_HEADER_EX_INFO", "cchStatus", 16, 8),
    ("HSE_SEND_HEADER_EX_INFO", "cchHeader", 20, 12),
    ("HSE_SEND_HEADER_EX_INFO", "fKeepConn", 24, 16),
    ("HSE_SEND_HEADER_EX_INFO", "size", 32, 20),
];

/// Constants checked against the header by the same test: (name, value).
#[cfg(test)]
pub const CONSTANTS: [(&str, Dword); 13] = [
    ("HSE_VERSION", HSE_VERSION),
    ("HSE_LOG_BUFFER_LEN", HSE_LOG_BUFFER_LEN as Dword),
    (
        "HSE_MAX_EXT_DLL_NAME_LEN",
        HSE_MAX_EXT_DLL_NAME_LEN as Dword,
    ),
    ("HSE_STATUS_SUCCESS", HSE_STATUS_SUCCESS),
    (
        "HSE_STATUS_SUCCESS_AND_KEEP_CONN",
        HSE_STATUS_SUCCESS_AND_KEEP_CONN,
    ),
    ("HSE_STATUS_PENDING", HSE_STATUS_PENDING),
    ("HSE_STATUS_ERROR", HSE_STATUS_ERROR),
    ("HSE_REQ_DONE_WITH_SESSION", HSE_REQ_DONE_WITH_SESSION),
    (
        "HSE_REQ_SEND_RESPONSE_HEADER_EX",
        HSE_REQ_SEND_RESPONSE_HEADER_EX,
    ),
    ("HSE_REQ_CLOSE_CONNECTION", HSE_REQ_CLOSE_CONNECTION),
    ("HSE_IO_SYNC", HSE_IO_SYNC),
    ("HSE_TERM_ADVISORY_UNLOAD", HSE_TERM_ADVISORY_UNLOAD),
    ("HSE_TERM_MUST_UNLOAD", HSE_TERM_MUST_UNLOAD),
];

/// This target's actual offsets, in `LAYOUT` order.
pub const fn actual() -> [usize; 27] {
    type V = HseVersionInfo;
    type E = ExtensionControlBlock;
    type H = HseSendHeaderExInfo;
    [
        offset_of!(V, dw_extension_version),
        offset_of!(V, lpsz_extension_desc),
        size_of::<V>(),
        offset_of!(E, cb_size),
        offset_of!(E, dw_version),
        offset_of!(E, conn_id),
        offset_of!(E, dw_http_status_code),
        offset_of!(E, lpsz_log_data),
        offset_of!(E, lpsz_method),
        offset_of!(E, lpsz_query_string),
        offset_of!(E, lpsz_path_info),
        offset_of!(E, lpsz_path_translated),
        offset_of!(E, cb_total_bytes),
        offset_of!(E, cb_available),
        offset_of!(E, lpb_data),
        offset_of!(E, lpsz_content_type),
        offset_of!(E, get_server_variable),
        offset_of!(E, write_client),
        offset_of!(E, read_client),
        offset_of!(E, server_support_function),
        size_of::<E>(),
        offset_of!(H, psz_status),
        offset_of!(H, psz_header),
        offset_of!(H, cch_status),
        offset_of!(H, cch_header),
        offset_of!(H, f_keep_conn),
        size_of::<H>(),
    ]
}

/// Every offset equals the header's for this pointer width; a mismatch fails the build.
const _: () = {
    let actual = actual();
    let mut i = 0;
    while i < LAYOUT.len() {
        #[cfg(target_pointer_width = "64")]
        assert!(
            actual[i] == LAYOUT[i].2,
            "ISAPI struct layout differs from httpext.h (64-bit)"
        );
        #[cfg(target_pointer_width = "32")]
        assert!(
            actual[i] == LAYOUT[i].3,
            "ISAPI struct layout differs from httpext.h (32-bit)"
        );
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Checks `LAYOUT` and `CONSTANTS` against the real `httpext.h` of mingw-w64, compiled for
    /// both Windows architectures. Without the cross compilers the check is skipped, unless
    /// `WSGI_GATEWAY_REQUIRE_MINGW` is set (the test command sets it after installing them).
    #[test]
    fn layout_matches_mingw_httpext_h() {
        let required = std::env::var_os("WSGI_GATEWAY_REQUIRE_MINGW").is_some();
        let dir = std::env::temp_dir().join(format!("wsgi-gateway-layout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (cc, column) in [("x86_64-w64-mingw32-gcc", 64), ("i686-w64-mingw32-gcc", 32)] {
            let mut src =
                String::from("#include <windows.h>\n#include <httpext.h>\n#include <stddef.h>\n");
            for (s, f, x64, x86) in LAYOUT {
                let n = if column == 64 { x64 } else { x86 };
                let expr = if f == "size" {
                    format!("sizeof({s})")
                } else {
                    format!("offsetof({s}, {f})")
                };
                src.push_str(&format!("_Static_assert({expr} == {n}, \"{s}.{f}\");\n"));
            }
            for (name, value) in CONSTANTS {
                src.push_str(&format!(
                    "_Static_assert({name} == {value}u, \"{name}\");\n"
                ));
            }
            let file = dir.join(format!("layout{column}.c"));
            std::fs::write(&file, src).unwrap();
            match Command::new(cc).arg("-fsyntax-only").arg(&file).output() {
                Ok(out) => assert!(
                    out.status.success(),
                    "{cc}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
                Err(e) if !required => eprintln!("skipped: {cc}: {e}"),
                Err(e) => panic!("{cc}: {e} (WSGI_GATEWAY_REQUIRE_MINGW is set)"),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
