/* An ISAPI extension that breaks the contract on purpose, one way per path, so the tests
 * can prove the harness (host.c) catches each breach (its HARNESS FAILURE lines).
 *   /done-twice             DONE_WITH_SESSION twice
 *   /never-done             PENDING and never DONE (--done-timeout, or terminate)
 *   /done-on-sync           DONE_WITH_SESSION, then returns SUCCESS instead of PENDING
 *   /write-ecb-after-done   writes dwHttpStatusCode after DONE
 *   /call-after-done        calls WriteClient through the ECB after DONE
 *   /cached-call-after-done calls a WriteClient pointer saved before DONE, after it
 *   /write-before-header    WriteClient before SEND_RESPONSE_HEADER_EX
 *   /header-twice           SEND_RESPONSE_HEADER_EX twice
 *   /header-no-blank-line   header block without the final \r\n\r\n
 *   /status-with-version    pszStatus "HTTP/1.1 200 OK"
 *   /keep-undelimited       keeps the connection after a body without Content-Length
 *   /wrong-status-code      dwHttpStatusCode 200 for a 404 response
 *   /unknown-code           ServerSupportFunction(9999): must get FALSE (not a failure)
 *   /read-in-thread         PENDING, a thread calls ReadClient (stalled by the harness with
 *                           X-Harness-Stall: read) then DONE; TerminateExtension returns
 *                           while that thread is still inside ReadClient
 * Everything else gets a correct answer. TerminateExtension returns at once.
 * Build: gcc -shared -fPIC -o ext_broken.so ext_broken.c
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "isapi_abi.h"

BOOL GetExtensionVersion(HSE_VERSION_INFO *v) {
    v->dwExtensionVersion = HSE_VERSION;
    snprintf(v->lpszExtensionDesc, sizeof v->lpszExtensionDesc, "ext_broken test extension");
    return 1;
}

BOOL TerminateExtension(DWORD flags) {
    (void)flags;
    return 1;
}

static BOOL header(EXTENSION_CONTROL_BLOCK *ecb, const char *status, const char *hdr) {
    HSE_SEND_HEADER_EX_INFO info = {status, hdr, (DWORD)strlen(status), (DWORD)strlen(hdr), 1};
    return ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_SEND_RESPONSE_HEADER_EX, &info, NULL,
                                      NULL);
}

static BOOL body(EXTENSION_CONTROL_BLOCK *ecb, const char *text) {
    DWORD n = (DWORD)strlen(text);
    return ecb->WriteClient(ecb->ConnID, (void *)text, &n, HSE_IO_SYNC);
}

static void done(EXTENSION_CONTROL_BLOCK *ecb) {
    DWORD st = HSE_STATUS_SUCCESS_AND_KEEP_CONN;
    ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_DONE_WITH_SESSION, &st, NULL, NULL);
}

/* A correct 200 "ok\n" with Content-Length. */
static void ok(EXTENSION_CONTROL_BLOCK *ecb) {
    ecb->dwHttpStatusCode = 200;
    header(ecb, "200 OK", "Content-Type: text/plain\r\nContent-Length: 3\r\n\r\n");
    body(ecb, "ok\n");
}

static int is(EXTENSION_CONTROL_BLOCK *ecb, const char *path) {
    return strcmp(ecb->lpszPathInfo, path) == 0;
}

static void *read_then_done(void *arg) {
    EXTENSION_CONTROL_BLOCK *ecb = arg;
    char buf[64];
    DWORD n = sizeof buf;
    ecb->ReadClient(ecb->ConnID, buf, &n);
    DWORD st = HSE_STATUS_ERROR;
    ecb->ServerSupportFunction(ecb->ConnID, HSE_REQ_DONE_WITH_SESSION, &st, NULL, NULL);
    return NULL;
}

DWORD HttpExtensionProc(EXTENSION_CONTROL_BLOCK *ecb) {
    if (is(ecb, "/never-done")) return HSE_STATUS_PENDING;
    if (is(ecb, "/read-in-thread")) {
        pthread_t t;
        if (pthread_create(&t, NULL, read_then_done, ecb) != 0) return HSE_STATUS_ERROR;
        pthread_detach(t);
        return HSE_STATUS_PENDING;
    }
    if (is(ecb, "/done-twice")) {
        ok(ecb);
        done(ecb);
        done(ecb);
    } else if (is(ecb, "/done-on-sync")) {
        ok(ecb);
        done(ecb);
        return HSE_STATUS_SUCCESS;
    } else if (is(ecb, "/write-ecb-after-done")) {
        ok(ecb);
        done(ecb);
        ecb->dwHttpStatusCode = 500;
    } else if (is(ecb, "/call-after-done")) {
        ok(ecb);
        done(ecb);
        body(ecb, "late");
    } else if (is(ecb, "/cached-call-after-done")) {
        PFN_WRITECLIENT write = ecb->WriteClient;
        HCONN conn = ecb->ConnID;
        ok(ecb);
        done(ecb);
        DWORD n = 4;
        write(conn, "late", &n, HSE_IO_SYNC);
    } else if (is(ecb, "/write-before-header")) {
        body(ecb, "early");
        ok(ecb);
        done(ecb);
    } else if (is(ecb, "/header-twice")) {
        ok(ecb);
        header(ecb, "200 OK", "X-Again: 1\r\n\r\n");
        done(ecb);
    } else if (is(ecb, "/header-no-blank-line")) {
        ecb->dwHttpStatusCode = 200;
        header(ecb, "200 OK", "Content-Length: 3\r\n");
        body(ecb, "ok\n");
        done(ecb);
    } else if (is(ecb, "/status-with-version")) {
        ecb->dwHttpStatusCode = 200;
        header(ecb, "HTTP/1.1 200 OK", "Content-Length: 3\r\n\r\n");
        body(ecb, "ok\n");
        done(ecb);
    } else if (is(ecb, "/keep-undelimited")) {
        ecb->dwHttpStatusCode = 200;
        header(ecb, "200 OK", "Content-Type: text/plain\r\n\r\n");
        body(ecb, "no length\n");
        done(ecb);
    } else if (is(ecb, "/wrong-status-code")) {
        ecb->dwHttpStatusCode = 200;
        header(ecb, "404 Not Found", "Content-Length: 0\r\n\r\n");
        done(ecb);
    } else if (is(ecb, "/unknown-code")) {
        BOOL r = ecb->ServerSupportFunction(ecb->ConnID, 9999, NULL, NULL, NULL);
        ecb->dwHttpStatusCode = 200;
        header(ecb, "200 OK", "Content-Length: 6\r\n\r\n");
        body(ecb, r ? "TRUE\n\n" : "FALSE\n");
        done(ecb);
    } else {
        ok(ecb);
        done(ecb);
    }
    return HSE_STATUS_PENDING; /* DONE already came (legal: it may precede the return) */
}
