/* The ISAPI ABI as httpext.h defines it, written for Linux x86_64 (LP64).
 *
 * Written from the documented httpext.h semantics (shared/reference/isapi.md §2), not copied
 * from any header. DWORD/BOOL are 32-bit, HCONN and every pointer are pointer-sized, and the
 * structs hold no `long`, so the LP64 offsets equal the Win64 ones; the _Static_asserts pin
 * them to the x64 column of the reference. Shared by the harness (host.c) and the small test
 * extensions (ext_*.c) so both sides agree by construction AND by assertion.
 */
#ifndef ISAPI_ABI_H
#define ISAPI_ABI_H

#include <stddef.h>
#include <stdint.h>

typedef uint32_t DWORD;
typedef int32_t BOOL;
typedef void *HCONN;

#define HSE_VERSION 0x00060000u
#define HSE_MAX_EXT_DLL_NAME_LEN 256
#define HSE_LOG_BUFFER_LEN 80

#define HSE_STATUS_SUCCESS 1u
#define HSE_STATUS_SUCCESS_AND_KEEP_CONN 2u
#define HSE_STATUS_PENDING 3u
#define HSE_STATUS_ERROR 4u

#define HSE_REQ_SEND_RESPONSE_HEADER 3u
#define HSE_REQ_DONE_WITH_SESSION 4u
#define HSE_REQ_IS_KEEP_CONN 1008u
#define HSE_REQ_ABORTIVE_CLOSE 1014u
#define HSE_REQ_SEND_RESPONSE_HEADER_EX 1016u
#define HSE_REQ_CLOSE_CONNECTION 1017u
#define HSE_REQ_IS_CONNECTED 1018u

#define HSE_IO_SYNC 0x1u
#define HSE_IO_ASYNC 0x2u

#define HSE_TERM_ADVISORY_UNLOAD 1u
#define HSE_TERM_MUST_UNLOAD 2u

typedef struct {
    DWORD dwExtensionVersion;
    char lpszExtensionDesc[HSE_MAX_EXT_DLL_NAME_LEN];
} HSE_VERSION_INFO;

typedef struct {
    const char *pszStatus;
    const char *pszHeader;
    DWORD cchStatus;
    DWORD cchHeader;
    BOOL fKeepConn;
} HSE_SEND_HEADER_EX_INFO;

typedef BOOL (*PFN_GETSERVERVARIABLE)(HCONN, char *name, void *buf, DWORD *size);
typedef BOOL (*PFN_WRITECLIENT)(HCONN, void *buf, DWORD *bytes, DWORD flags);
typedef BOOL (*PFN_READCLIENT)(HCONN, void *buf, DWORD *size);
typedef BOOL (*PFN_SERVERSUPPORTFUNCTION)(HCONN, DWORD req, void *buf, DWORD *size,
                                          DWORD *data_type);

typedef struct EXTENSION_CONTROL_BLOCK {
    DWORD cbSize;
    DWORD dwVersion;
    HCONN ConnID;
    DWORD dwHttpStatusCode;
    char lpszLogData[HSE_LOG_BUFFER_LEN];
    char *lpszMethod;
    char *lpszQueryString;
    char *lpszPathInfo;
    char *lpszPathTranslated;
    DWORD cbTotalBytes;
    DWORD cbAvailable;
    unsigned char *lpbData;
    char *lpszContentType;
    PFN_GETSERVERVARIABLE GetServerVariable;
    PFN_WRITECLIENT WriteClient;
    PFN_READCLIENT ReadClient;
    PFN_SERVERSUPPORTFUNCTION ServerSupportFunction;
} EXTENSION_CONTROL_BLOCK;

typedef BOOL (*PFN_GETEXTENSIONVERSION)(HSE_VERSION_INFO *);
typedef DWORD (*PFN_HTTPEXTENSIONPROC)(EXTENSION_CONTROL_BLOCK *);
typedef BOOL (*PFN_TERMINATEEXTENSION)(DWORD);

/* x64 offsets from isapi.md §2.2 (verified there against the mingw header). */
#define ABI_AT(T, f, n) _Static_assert(offsetof(T, f) == (n), #T "." #f " offset")
ABI_AT(HSE_VERSION_INFO, dwExtensionVersion, 0);
ABI_AT(HSE_VERSION_INFO, lpszExtensionDesc, 4);
_Static_assert(sizeof(HSE_VERSION_INFO) == 260, "HSE_VERSION_INFO size");
ABI_AT(EXTENSION_CONTROL_BLOCK, cbSize, 0);
ABI_AT(EXTENSION_CONTROL_BLOCK, dwVersion, 4);
ABI_AT(EXTENSION_CONTROL_BLOCK, ConnID, 8);
ABI_AT(EXTENSION_CONTROL_BLOCK, dwHttpStatusCode, 16);
ABI_AT(EXTENSION_CONTROL_BLOCK, lpszLogData, 20);
ABI_AT(EXTENSION_CONTROL_BLOCK, lpszMethod, 104);
ABI_AT(EXTENSION_CONTROL_BLOCK, lpszQueryString, 112);
ABI_AT(EXTENSION_CONTROL_BLOCK, lpszPathInfo, 120);
ABI_AT(EXTENSION_CONTROL_BLOCK, lpszPathTranslated, 128);
ABI_AT(EXTENSION_CONTROL_BLOCK, cbTotalBytes, 136);
ABI_AT(EXTENSION_CONTROL_BLOCK, cbAvailable, 140);
ABI_AT(EXTENSION_CONTROL_BLOCK, lpbData, 144);
ABI_AT(EXTENSION_CONTROL_BLOCK, lpszContentType, 152);
ABI_AT(EXTENSION_CONTROL_BLOCK, GetServerVariable, 160);
ABI_AT(EXTENSION_CONTROL_BLOCK, WriteClient, 168);
ABI_AT(EXTENSION_CONTROL_BLOCK, ReadClient, 176);
ABI_AT(EXTENSION_CONTROL_BLOCK, ServerSupportFunction, 184);
_Static_assert(sizeof(EXTENSION_CONTROL_BLOCK) == 192, "EXTENSION_CONTROL_BLOCK size");
ABI_AT(HSE_SEND_HEADER_EX_INFO, pszStatus, 0);
ABI_AT(HSE_SEND_HEADER_EX_INFO, pszHeader, 8);
ABI_AT(HSE_SEND_HEADER_EX_INFO, cchStatus, 16);
ABI_AT(HSE_SEND_HEADER_EX_INFO, cchHeader, 20);
ABI_AT(HSE_SEND_HEADER_EX_INFO, fKeepConn, 24);
_Static_assert(sizeof(HSE_SEND_HEADER_EX_INFO) == 32, "HSE_SEND_HEADER_EX_INFO size");
#undef ABI_AT

#endif
