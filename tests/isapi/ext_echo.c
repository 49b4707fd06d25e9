/* A small, well-behaved ISAPI extension: proves the harness (host.c) serves a correct
 * extension without complaint before the harness is trusted to judge the real library.
 *
 * It echoes the request body back and reports what it saw in X- headers:
 *   /sync...     answered inside HttpExtensionProc, returns SUCCESS_AND_KEEP_CONN
 *   /chunked...  PENDING; the extension chunk-encodes the body itself (KB 278998)
 *   /close...    PENDING; no Content-Length, fKeepConn FALSE, DONE with SUCCESS
 *   anything else: PENDING; a thread answers with Content-Length, DONE with KEEP_CONN
 * Build: gcc -shared -fPIC -pthread -o ext_echo.so ext_echo.c
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isapi_abi.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle = PTHREAD_COND_INITIALIZER;
static int busy; /* requests between PENDING and DONE_WITH_SESSION */

BOOL GetExtensionVersion(HSE_VERSION_INFO *v) {
    v->dwExtensionVersion = HSE_VERSION;
    snprintf(v->lpszExtensionDesc, sizeof v->lpszExtensionDesc, "ext_echo test extension");
    return 1;
}

/* The size protocol: a too-small first buffer, then exactly what the host asked for. */
static char *get_var(EXTENSION_CONTROL_BLOCK *ecb, const char *name, int *tries) {
    DWORD size = 4;
    char *buf = malloc(size);
    *tries = 1;
    if (ecb->GetServerVariable(ecb->ConnID, (char *)name, buf, &size)) return buf;
    if (size <= 4) {
        free(buf);
        return NULL; /* FALSE with *size unchanged: no such variable */
    }
    buf = realloc(buf, size);
    *tries = 2;
    if (!ecb->GetServerVariable(ecb->ConnID, (char *)name, buf, &size)) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* lpbData first, then ReadClient until the length is reached or a read returns 0. */
static unsigned char *read_body(EXTENSION_CONTROL_BLOCK *ecb, size_t *len, int *reads) {
    size_t cap = ecb->cbAvailable + 65536, n = ecb->cbAvailable;
    unsigned char *b = malloc(cap);
    memcpy(b, ecb->lpbData, n);
    *reads = 0;
    while (ecb->cbTotalBytes == 0xFFFFFFFFu || n < ecb->cbTotalBytes) {
        if (cap - n < 65536) b = realloc(b, cap *= 2);
        DWORD got = 65536;
        (*reads)++;
        if (!ecb->ReadClient(ecb->ConnID, b + n, &got) || got == 0) break;
        n += got;
    }
    *len = n;
    return b;
}

static void send_header(EXTENSION_CONTROL_BLOCK *ecb, const char *status, const char *hdr,
                        int keep) {
    HSE_SEND_HEADER_EX_INFO info = {status, hdr, (DWORD)strlen(status), (DWORD)strlen(hdr),
                                    keep};
    ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SEND_RESPONSE_HEADER_EX, &info, NULL, NULL);
}

static void write_all(EXTENSION_CONTROL_BLOCK *ecb, const void *p, size_t n) {
    DWORD len = (DWORD)n;
    ecb->WriteClient(ecb->ConnID, (void *)p, &len, HSE_IO_SYNC);
}

/* Answers the request; returns the HSE_STATUS_* for DONE (or the synchronous return). */
static DWORD answer(EXTENSION_CONTROL_BLOCK *ecb) {
    int t_url, t_raw, t_none, t_user, t_md, reads;
    char *url = get_var(ecb, "UNENCODED_URL", &t_url);
    char *raw = get_var(ecb, "ALL_RAW", &t_raw);
    char *none = get_var(ecb, "NO_SUCH_VARIABLE", &t_none);
    char *user = get_var(ecb, "REMOTE_USER", &t_user);
    char *md = get_var(ecb, "APPL_MD_PATH", &t_md);
    size_t len;
    unsigned char *body = read_body(ecb, &len, &reads);
    int chunked = url && strncmp(url, "/chunked", 8) == 0;
    int close = url && strncmp(url, "/close", 6) == 0;
    char hdr[2048];
    int n = snprintf(hdr, sizeof hdr,
                     "Content-Type: application/octet-stream\r\nX-Url: %s\r\nX-Method: %s\r\n"
                     "X-Raw-Len: %zu\r\nX-Raw-Tries: %d\r\nX-Unknown-Var: %s\r\n"
                     "X-Remote-User: %s\r\nX-Appl-Md-Path: %s\r\nX-Total: %u\r\n"
                     "X-Available: %u\r\nX-Reads: %d\r\nX-Query: %s\r\nX-Path-Info: %s\r\n",
                     url ? url : "?", ecb->lpszMethod, raw ? strlen(raw) : 0, t_raw,
                     none ? "present" : "absent", user ? user : "?", md ? md : "?",
                     ecb->cbTotalBytes, ecb->cbAvailable, reads, ecb->lpszQueryString,
                     ecb->lpszPathInfo);
    if (chunked) snprintf(hdr + n, sizeof hdr - n, "Transfer-Encoding: chunked\r\n\r\n");
    else if (close) snprintf(hdr + n, sizeof hdr - n, "\r\n");
    else snprintf(hdr + n, sizeof hdr - n, "Content-Length: %zu\r\n\r\n", len);
    ecb->dwHttpStatusCode = 200;
    send_header(ecb, "200 OK", hdr, !close);
    if (chunked) {
        for (size_t i = 0; i < len; i += 3) {
            size_t k = len - i < 3 ? len - i : 3;
            char size[16];
            snprintf(size, sizeof size, "%zx\r\n", k);
            write_all(ecb, size, strlen(size));
            write_all(ecb, body + i, k);
            write_all(ecb, "\r\n", 2);
        }
        write_all(ecb, "0\r\n\r\n", 5);
    } else {
        write_all(ecb, body, len);
    }
    free(url), free(raw), free(none), free(user), free(md), free(body);
    return close ? HSE_STATUS_SUCCESS : HSE_STATUS_SUCCESS_AND_KEEP_CONN;
}

static void *worker(void *arg) {
    EXTENSION_CONTROL_BLOCK *ecb = arg;
    DWORD st = answer(ecb);
    ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_DONE_WITH_SESSION, &st, NULL, NULL);
    /* ecb is dead from here on */
    pthread_mutex_lock(&mu);
    if (--busy == 0) pthread_cond_broadcast(&idle);
    pthread_mutex_unlock(&mu);
    return NULL;
}

DWORD HttpExtensionProc(EXTENSION_CONTROL_BLOCK *ecb) {
    if (strncmp(ecb->lpszPathInfo, "/sync", 5) == 0) return answer(ecb);
    pthread_mutex_lock(&mu);
    busy++;
    pthread_mutex_unlock(&mu);
    pthread_t t;
    pthread_create(&t, NULL, worker, ecb);
    pthread_detach(t);
    return HSE_STATUS_PENDING; /* no ECB access after this line: the worker may be done */
}

BOOL TerminateExtension(DWORD flags) {
    (void)flags;
    pthread_mutex_lock(&mu);
    while (busy > 0) pthread_cond_wait(&idle, &mu);
    pthread_mutex_unlock(&mu);
    return 1;
}
