/* "IIS in a test tube": an HTTP/1.1 server on loopback that drives an ISAPI extension
 * (a Linux .so exporting GetExtensionVersion / HttpExtensionProc / TerminateExtension)
 * the way IIS does, and reports every breach of the ISAPI contract it can see.
 *
 * Written from the httpext.h semantics (shared/reference/isapi.md §2, §7 L1). Build:
 *     gcc -O1 -g -pthread -o isapi-host host.c -ldl
 * Run:
 *     isapi-host --lib libwsgi_gateway.so [--port 0] [--vdir /app] [--root-spelling Root]
 *                [--preload 49152] [--short-reads] [--fail-write-after N] [--pad-var N]
 *                [--basic-user user:pass] [--windows-user 'DOM\user'] [--done-timeout 120]
 *                [--rtld-global] [--https] [--hide-var NAME]... [--all-raw-lf]
 *                [--configure FILE]
 *
 * --configure plays the part of wsgi-gateway's ISAPI loader (gateway/isapi-loader): before
 * GetExtensionVersion it passes FILE (UTF-16) to the extension's WsgiGatewayIsapiConfigure.
 *
 * Checks, each reported as a HARNESS FAILURE: after PENDING exactly one DONE_WITH_SESSION
 * (within --done-timeout); none after any other return; no callback (through the ECB or a
 * saved pointer) and no write into the ECB after DONE or after TerminateExtension returned
 * (dead ECBs are kept, poisoned, with traps for function pointers); SEND_RESPONSE_HEADER_EX
 * once, before any WriteClient, with "NNN Reason", a block ending in "\r\n\r\n" and the
 * right cch lengths; dwHttpStatusCode = the status sent, at DONE; lpszLogData terminated;
 * keep-alive only after a self-delimited response; nothing pending when TerminateExtension
 * returns, and no thread but an HttpExtensionProc call's own inside a callback then (IIS
 * unloads the DLL and frees the ECBs); exactly one completion per request (a final status
 * returned by HttpExtensionProc, or PENDING and one DONE_WITH_SESSION). The ABI (struct
 * layouts with offset asserts) is in isapi_abi.h.
 *
 * A request with the header `X-Harness-Stall: read` (or `write`) has its first ReadClient
 * (WriteClient) block, as for a client that neither sends nor reads, until the extension
 * sends HSE_REQ_CLOSE_CONNECTION for it; the blocked call then fails (FALSE).
 *
 * stdout: `extension: <desc>`, `listening on 127.0.0.1:PORT`, `pending #N ...` when
 *         HttpExtensionProc returns PENDING, `stalled #N ReadClient|WriteClient` when a
 *         stalled call starts to block and `unstalled #N ... by close|by harness` when it
 *         ends, one `access #N ...` line per finished request, `terminating` /
 *         `terminated ...` around TerminateExtension, answers to commands.
 * stderr: `HARNESS FAILURE: <what>` for each contract breach, `note: ...` for oddities.
 * stdin:  `terminate` (TerminateExtension(MUST_UNLOAD) with requests in flight, then check
 *         that none is left pending), `terminate-racing [N]` (the same, but called while
 *         HttpExtensionProc calls run: N requests are first held at a GetServerVariable
 *         call and let go as TerminateExtension is called, and new requests keep entering
 *         the extension until it returns), `reload` (GetExtensionVersion again), `stats`;
 *         EOF = terminate, then exit 0 (no failure) or 3 (failures).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "isapi_abi.h"

#define MAX_HEAD (1u << 20)     /* request head limit (http.sys's is smaller; tests need room) */
#define MAX_HEADERS 512
#define MAX_VARS 64
#define DRAIN_LIMIT (64u << 20) /* unread body we skip to keep a connection alive */
#define IO_TIMEOUT_S 60
#define UNKNOWN_LENGTH 0xFFFFFFFFu
#define POISON_BYTE 0xA5
#define REQ_MAGIC 0x15A91ECBu

/* ------------------------------------------------------------------ options, globals */

static struct {
    const char *lib;
    int port;
    const char *vdir;          /* mount point: APPL_MD_PATH = /LM/W3SVC/1/<root> + vdir */
    const char *root;          /* "ROOT" (default) or "Root": IIS spells it both ways */
    size_t preload;            /* bytes preloaded into lpbData (IIS UploadReadAheadSize) */
    bool short_reads;          /* ReadClient returns 1..7 bytes per call */
    long long fail_write_after;/* body bytes after which WriteClient fails; -1 = never */
    size_t pad_var;            /* padding added to ALL_RAW through X-Harness-Pad */
    const char *basic_user;    /* "user:pass" accepted as HTTP Basic credentials */
    const char *windows_user;  /* every request authenticated as this user (Negotiate) */
    int done_timeout;          /* seconds a PENDING request may wait for DONE_WITH_SESSION */
    bool rtld_global;          /* dlopen the extension RTLD_GLOBAL (default: RTLD_LOCAL) */
    bool https;                /* server variables as for a TLS connection (HTTPS=on, ...) */
    bool all_raw_lf;           /* ALL_RAW lines end in "\n" instead of "\r\n" */
    const char *hidden[8];     /* server variables that do not exist (GetServerVariable FALSE) */
    int nhidden;
    const char *configure;     /* passed to WsgiGatewayIsapiConfigure before loading */
} opt = {.vdir = "", .root = "ROOT", .preload = 49152, .fail_write_after = -1,
       .done_timeout = 120};

static PFN_GETEXTENSIONVERSION ext_version;
static PFN_HTTPEXTENSIONPROC ext_proc;
static PFN_TERMINATEEXTENSION ext_terminate; /* optional export */

static atomic_int failures;
static atomic_long request_ids;
static atomic_bool ext_terminated; /* TerminateExtension returned: no callback may come now */

/* All requests ever made, newest first. They are never freed: a late callback through a
 * stale ConnID must find a "dead" request, not reused memory. */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reg_cv = PTHREAD_COND_INITIALIZER;
static struct request *registry;
static int in_proc;        /* requests inside an HttpExtensionProc call right now */
static bool terminating;   /* harness answers 503 itself: the extension is being unloaded */
/* Callbacks in progress on threads other than the request's own HttpExtensionProc call
 * (the extension's workers): none may be left when TerminateExtension returns. */
static atomic_int worker_calls;

/* ------------------------------------------------------------------ reporting */

static void emit(FILE *f, const char *fmt, va_list ap) {
    flockfile(f);
    vfprintf(f, fmt, ap);
    fputc('\n', f);
    fflush(f);
    funlockfile(f);
}

static void out(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    emit(stdout, fmt, ap);
    va_end(ap);
}

static void note(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    flockfile(stderr);
    fputs("note: ", stderr);
    emit(stderr, fmt, ap);
    funlockfile(stderr);
    va_end(ap);
}

/* A contract breach by the extension: counted, and the exit status becomes 3. */
static void failure(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    atomic_fetch_add(&failures, 1);
    flockfile(stderr);
    fputs("HARNESS FAILURE: ", stderr);
    emit(stderr, fmt, ap);
    funlockfile(stderr);
    va_end(ap);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fputs("harness: out of memory\n", stderr);
        _exit(2);
    }
    return p;
}

static char *xstrndup(const char *s, size_t n) {
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static char *xprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    if (!s) xmalloc((size_t)-1);
    return s;
}

/* ------------------------------------------------------------------ connection I/O */

struct conn {
    int fd;
    char *buf;              /* received, not yet consumed: buf[start..end) */
    size_t cap, start, end;
    bool eof, broken;       /* peer closed / socket error or harness-side cut */
    char peer_addr[64], local_addr[64];
    int peer_port, local_port;
};

static size_t buffered(struct conn *c) { return c->end - c->start; }

/* Reads more bytes into the buffer; false on EOF or error. */
static bool conn_fill(struct conn *c) {
    if (c->eof || c->broken) return false;
    if (c->start > 0 && c->start == c->end) c->start = c->end = 0;
    if (c->end == c->cap) {
        if (c->start > 0) {
            memmove(c->buf, c->buf + c->start, buffered(c));
            c->end -= c->start;
            c->start = 0;
        } else {
            c->cap *= 2;
            c->buf = realloc(c->buf, c->cap);
            if (!c->buf) xmalloc((size_t)-1);
        }
    }
    ssize_t n;
    do n = recv(c->fd, c->buf + c->end, c->cap - c->end, 0);
    while (n < 0 && errno == EINTR);
    if (n == 0) c->eof = true;
    if (n < 0) c->broken = true;
    if (n <= 0) return false;
    c->end += (size_t)n;
    return true;
}

/* Up to `max` bytes, from the buffer first; 0 on EOF, -1 on error. */
static ssize_t conn_read(struct conn *c, void *dst, size_t max) {
    if (buffered(c) == 0 && !conn_fill(c)) return c->broken ? -1 : 0;
    size_t n = buffered(c) < max ? buffered(c) : max;
    memcpy(dst, c->buf + c->start, n);
    c->start += n;
    return (ssize_t)n;
}

/* One line ending in LF (CR stripped) into *line (malloc'd); false on EOF/overlong. */
static bool conn_line(struct conn *c, char **line, size_t limit) {
    for (;;) {
        char *nl = memchr(c->buf + c->start, '\n', buffered(c));
        if (nl) {
            size_t n = (size_t)(nl - (c->buf + c->start));
            size_t keep = (n > 0 && nl[-1] == '\r') ? n - 1 : n;
            *line = xstrndup(c->buf + c->start, keep);
            c->start += n + 1;
            return true;
        }
        if (buffered(c) > limit || !conn_fill(c)) return false;
    }
}

static bool send_all(struct conn *c, const void *p, size_t n) {
    const char *s = p;
    while (n > 0 && !c->broken) {
        ssize_t k = send(c->fd, s, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            c->broken = true;
            break;
        }
        s += k;
        n -= (size_t)k;
    }
    return n == 0;
}

/* The client "goes away": both directions cut, as a disconnect looks to the server. */
static void conn_cut(struct conn *c) {
    shutdown(c->fd, SHUT_RDWR);
    c->broken = true;
}

/* ------------------------------------------------------------------ request head */

struct header {
    char *name, *value;
};

enum framing { BODY_NONE, BODY_LENGTH, BODY_CHUNKED };

struct head {
    char *method, *target, *version, *path, *query;
    char *raw_headers;        /* the header lines exactly as sent (ALL_RAW) */
    size_t raw_len;
    struct header h[MAX_HEADERS];
    int nh;
};

static void free_head(struct head *h) {
    free(h->method);
    free(h->target);
    free(h->version);
    free(h->path);
    free(h->query);
    free(h->raw_headers);
    for (int i = 0; i < h->nh; i++) {
        free(h->h[i].name);
        free(h->h[i].value);
    }
    memset(h, 0, sizeof *h);
}

static const char *header_get(struct head *h, const char *name) {
    for (int i = 0; i < h->nh; i++)
        if (strcasecmp(h->h[i].name, name) == 0) return h->h[i].value;
    return NULL;
}

/* Does a comma-separated header (Connection) hold `token`? */
static bool header_has_token(struct head *h, const char *name, const char *token) {
    size_t tl = strlen(token);
    for (int i = 0; i < h->nh; i++) {
        if (strcasecmp(h->h[i].name, name) != 0) continue;
        for (const char *p = h->h[i].value; *p;) {
            while (*p == ' ' || *p == '\t' || *p == ',') p++;
            const char *e = p;
            while (*e && *e != ',') e++;
            const char *t = e;
            while (t > p && (t[-1] == ' ' || t[-1] == '\t')) t--;
            if ((size_t)(t - p) == tl && strncasecmp(p, token, tl) == 0) return true;
            p = e;
        }
    }
    return false;
}

static char *trim_dup(const char *s, size_t n) {
    while (n > 0 && (*s == ' ' || *s == '\t')) s++, n--;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    return xstrndup(s, n);
}

/* Parses "METHOD target VERSION" and the header lines; 0 = ok, else the HTTP status to
 * answer, -1 = connection closed before a request. */
static int read_head(struct conn *c, struct head *h) {
    size_t scan = 0;
    char *end;
    for (;;) {
        /* tolerate empty lines before a request (RFC 9112 §2.2) */
        while (buffered(c) > 0 && (c->buf[c->start] == '\r' || c->buf[c->start] == '\n'))
            c->start++;
        end = memmem(c->buf + c->start + scan, buffered(c) - scan, "\r\n\r\n", 4);
        if (end) break;
        scan = buffered(c) > 3 ? buffered(c) - 3 : 0;
        if (buffered(c) > MAX_HEAD) return 431;
        if (!conn_fill(c)) return buffered(c) ? 400 : -1;
    }
    char *p = c->buf + c->start;
    size_t len = (size_t)(end - p) + 4;
    char *eol = memmem(p, len, "\r\n", 2);
    char *sp1 = memchr(p, ' ', (size_t)(eol - p));
    char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || sp1 == p || sp2 == sp1 + 1) return 400;
    h->method = xstrndup(p, (size_t)(sp1 - p));
    h->target = xstrndup(sp1 + 1, (size_t)(sp2 - sp1 - 1));
    h->version = xstrndup(sp2 + 1, (size_t)(eol - sp2 - 1));
    if (strcmp(h->version, "HTTP/1.1") != 0 && strcmp(h->version, "HTTP/1.0") != 0) return 505;
    char *q = strchr(h->target, '?');
    h->path = q ? xstrndup(h->target, (size_t)(q - h->target)) : strdup(h->target);
    h->query = strdup(q ? q + 1 : "");
    char *hs = eol + 2;
    h->raw_len = (size_t)(end + 2 - hs);
    h->raw_headers = xstrndup(hs, h->raw_len);
    for (char *line = hs; line < end + 2;) {
        char *le = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
        char *colon = memchr(line, ':', (size_t)(le - line));
        if (!colon || colon == line || line[0] == ' ' || line[0] == '\t') return 400;
        if (h->nh == MAX_HEADERS) return 431;
        h->h[h->nh].name = xstrndup(line, (size_t)(colon - line));
        h->h[h->nh].value = trim_dup(colon + 1, (size_t)(le - colon - 1));
        h->nh++;
        line = le + 2;
    }
    c->start += len;
    return 0;
}

/* ------------------------------------------------------------------ helpers */

static int hexval(int ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* %XX-decoded copy. `lossy`: bytes >= 0x80 become '?', as IIS's narrow (ANSI code page)
 * PATH_INFO / URL / lpszPathInfo do; the library must never use those. */
static char *url_decode(const char *s, bool lossy) {
    size_t n = strlen(s);
    char *o = xmalloc(n + 1), *w = o;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i];
        if (ch == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            ch = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);
            i += 2;
        }
        *w++ = (char)((lossy && ch >= 0x80) || ch == 0 ? '?' : ch);
    }
    *w = 0;
    return o;
}

static size_t base64_decode(const char *in, unsigned char *out, size_t cap) {
    static const char *abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned acc = 0;
    int bits = 0;
    size_t n = 0;
    for (; *in && *in != '='; in++) {
        const char *p = strchr(abc, *in);
        if (!p) return (size_t)-1;
        acc = (acc << 6) | (unsigned)(p - abc);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == cap) return (size_t)-1;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    return n;
}

static void http_date(char *buf, size_t n) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* A harness-generated response (for requests IIS itself would refuse). */
static void send_simple(struct conn *c, int status, const char *reason, const char *extra) {
    char date[64];
    http_date(date, sizeof date);
    char *body = xprintf("%d %s (harness)\n", status, reason);
    char *msg = xprintf("HTTP/1.1 %d %s\r\nDate: %s\r\nServer: harness\r\n%s"
                        "Content-Type: text/plain\r\nContent-Length: %zu\r\n"
                        "Connection: close\r\n\r\n%s",
                        status, reason, date, extra ? extra : "", strlen(body), body);
    send_all(c, msg, strlen(msg));
    free(msg);
    free(body);
}

/* ------------------------------------------------------------------ request state */

enum state {
    ST_IN_PROC,  /* inside HttpExtensionProc, DONE not called */
    ST_PENDING,  /* returned HSE_STATUS_PENDING, waiting for DONE_WITH_SESSION */
    ST_DEAD,     /* finished: the ECB is poisoned and every use of it is a failure */
};

struct var {
    const char *name;
    char *value;
};

struct request {
    EXTENSION_CONTROL_BLOCK ecb;   /* first: the address IIS hands to the extension */
    uint32_t magic;
    long id;
    struct request *next;          /* registry */
    /* `mu` guards the state, briefly; it is never held across socket I/O, so a callback
     * blocked on the client cannot stop the connection thread from seeing the return of
     * HttpExtensionProc. `io` serialises the callbacks (and so the socket) among the
     * extension's threads; `busy` counts callbacks in progress, which the connection thread
     * waits out before it reuses the socket. */
    pthread_mutex_t mu, io;
    pthread_cond_t cv;             /* DONE_WITH_SESSION, or a callback left */
    int busy;
    enum state state;
    bool returned, done_called, orphaned;
    DWORD ret, done_status;
    int done_calls;                /* every DONE_WITH_SESSION, the dead ECB's included */
    /* the HttpExtensionProc call: its own thread may use the ECB until it returns */
    bool proc_running;
    pthread_t proc_thread;
    /* X-Harness-Stall: which call blocks ('r' ReadClient, 'w' WriteClient, 0 none), whether
     * it did already, and whether HSE_REQ_CLOSE_CONNECTION came */
    char stall;
    bool stall_used, closed;
    char *label;                   /* "GET /app/x" for messages */
    /* what the extension sent */
    bool header_sent, keep_conn_hdr, chunked_resp, has_cl, head_body_noted;
    unsigned long long content_length, written;
    int status;
    char tail[5];                  /* the last body bytes written (chunked terminator check) */
    DWORD ecb_status;              /* dwHttpStatusCode / lpszLogData as read at the end */
    char log_data[HSE_LOG_BUFFER_LEN + 1];
    /* set up by the connection thread, freed when the request ends */
    struct conn *conn;
    struct head *head;
    struct var vars[MAX_VARS];
    int nvars;
    char *all_raw, *all_http, *path_info_lossy, *path_translated;
    unsigned char *preload;
    bool is_head, client_keepalive;
    /* request body still on the socket */
    enum framing framing;
    unsigned long long body_left;  /* BODY_LENGTH: bytes not yet read */
    unsigned long long chunk_left; /* BODY_CHUNKED: bytes left in the current chunk */
    bool chunks_done, body_broken;
    unsigned reads;
};

static const char POISON_STR[] = "<poisoned: ECB used after DONE_WITH_SESSION>";

static BOOL trap_gsv(HCONN, char *, void *, DWORD *);
static BOOL trap_write(HCONN, void *, DWORD *, DWORD);
static BOOL trap_read(HCONN, void *, DWORD *);
static BOOL trap_ssf(HCONN, DWORD, void *, DWORD *, DWORD *);

/* The image a dead ECB must keep: any difference later = a write after DONE. */
static void poison_image(struct request *r, EXTENSION_CONTROL_BLOCK *e) {
    memset(e, POISON_BYTE, sizeof *e);
    e->ConnID = r;
    e->lpszMethod = e->lpszQueryString = e->lpszPathInfo = e->lpszPathTranslated =
        e->lpszContentType = (char *)POISON_STR;
    e->lpszLogData[HSE_LOG_BUFFER_LEN - 1] = 0;
    e->lpbData = NULL;
    e->GetServerVariable = trap_gsv;
    e->WriteClient = trap_write;
    e->ReadClient = trap_read;
    e->ServerSupportFunction = trap_ssf;
}

static void free_request_data(struct request *r) {
    for (int i = 0; i < r->nvars; i++) free(r->vars[i].value);
    r->nvars = 0;
    free(r->all_raw);
    free(r->all_http);
    free(r->path_info_lossy);
    free(r->path_translated);
    free(r->preload);
    r->all_raw = r->all_http = r->path_info_lossy = r->path_translated = NULL;
    r->preload = NULL;
}

/* End of the ECB's life (DONE, a synchronous return, or abandonment). Caller holds r->mu.
 * Records dwHttpStatusCode/lpszLogData, then poisons the struct. */
static void kill_request(struct request *r) {
    r->ecb_status = r->ecb.dwHttpStatusCode;
    memcpy(r->log_data, r->ecb.lpszLogData, HSE_LOG_BUFFER_LEN);
    r->log_data[HSE_LOG_BUFFER_LEN] = 0;
    if (!memchr(r->ecb.lpszLogData, 0, HSE_LOG_BUFFER_LEN))
        failure("%s: lpszLogData not NUL-terminated within %d bytes", r->label,
                HSE_LOG_BUFFER_LEN);
    poison_image(r, &r->ecb);
    r->state = ST_DEAD;
}

/* Every callback starts here: the ConnID must name a live request of ours. Returns the
 * request with `io` held (end with leave()), or NULL (after reporting) when the call is a
 * contract breach. */
/* Is the calling thread the request's own, still running HttpExtensionProc call? That one
 * may use its ECB even while (or after) TerminateExtension runs: IIS unloads the DLL only
 * after the call returned. Caller holds r->mu. */
static bool own_proc_call(struct request *r) {
    return r->proc_running && pthread_equal(r->proc_thread, pthread_self());
}

/* Registers a callback; `serialise`: it also takes r->io (every call but CLOSE_CONNECTION,
 * which must reach a connection whose other call is blocked). */
static struct request *enter_call(HCONN conn, const char *what, bool serialise) {
    struct request *r = conn;
    if (!r || r->magic != REQ_MAGIC) {
        failure("%s with an unknown ConnID %p", what, conn);
        return NULL;
    }
    pthread_mutex_lock(&r->mu);
    bool worker = !own_proc_call(r);
    /* counted before ext_terminated is read (both seq_cst): either this call sees the
     * termination, or terminate_extension sees the call */
    if (worker) atomic_fetch_add(&worker_calls, 1);
    if (atomic_load(&ext_terminated) && worker) {
        failure("%s for %s after TerminateExtension returned", what, r->label);
    } else if (r->state == ST_DEAD) {
        failure("%s for %s after its DONE_WITH_SESSION (or synchronous return)", what,
                r->label);
    } else {
        r->busy++;
        pthread_mutex_unlock(&r->mu);
        if (serialise) pthread_mutex_lock(&r->io);
        return r;
    }
    if (worker) atomic_fetch_sub(&worker_calls, 1);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static struct request *enter(HCONN conn, const char *what) {
    return enter_call(conn, what, true);
}

static void leave_call(struct request *r, bool serialise) {
    if (serialise) pthread_mutex_unlock(&r->io);
    pthread_mutex_lock(&r->mu);
    r->busy--;
    if (!own_proc_call(r)) atomic_fetch_sub(&worker_calls, 1);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void leave(struct request *r) { leave_call(r, true); }

/* terminate-racing N: requests reaching a GetServerVariable call (inside HttpExtensionProc)
 * wait there until N of them do, and are all let go as TerminateExtension is called, so
 * that many HttpExtensionProc calls run on with the extension being terminated. */
static pthread_mutex_t gather_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gather_cv = PTHREAD_COND_INITIALIZER;
static bool gathering;
static int gathered;
static unsigned gather_round; /* a request let go waits no more, even if the next round began */

static void gather_here(void) {
    pthread_mutex_lock(&gather_mu);
    if (gathering) {
        unsigned round = gather_round;
        gathered++;
        pthread_cond_broadcast(&gather_cv);
        while (gathering && gather_round == round) pthread_cond_wait(&gather_cv, &gather_mu);
    }
    pthread_mutex_unlock(&gather_mu);
}

/* Waits (bounded) until `n` requests are held in gather_here(); returns how many are. */
static int gather(int n) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    pthread_mutex_lock(&gather_mu);
    gathering = true;
    gathered = 0;
    gather_round++;
    while (gathered < n)
        if (pthread_cond_timedwait(&gather_cv, &gather_mu, &deadline) == ETIMEDOUT) break;
    int got = gathered;
    pthread_mutex_unlock(&gather_mu);
    return got;
}

static void release_gathered(void) {
    pthread_mutex_lock(&gather_mu);
    gathering = false;
    pthread_cond_broadcast(&gather_cv);
    pthread_mutex_unlock(&gather_mu);
}

/* X-Harness-Stall: the first call of the kind blocks until HSE_REQ_CLOSE_CONNECTION (then
 * it fails: true) or until the harness gives the request up. Caller is inside a callback
 * (holds r->io, not r->mu). Returns whether the call must fail. */
static bool stall_here(struct request *r, char kind, const char *what) {
    pthread_mutex_lock(&r->mu);
    bool stall = r->stall == kind && !r->stall_used;
    if (stall) {
        r->stall_used = true;
        out("stalled #%ld %s", r->id, what);
        while (!r->closed && !r->orphaned) pthread_cond_wait(&r->cv, &r->mu);
        out("unstalled #%ld %s %s", r->id, what, r->closed ? "by close" : "by harness");
    }
    bool fail = r->closed || r->orphaned;
    pthread_mutex_unlock(&r->mu);
    return fail;
}

/* The traps behind a dead ECB's function pointers (its ConnID is kept to name it). */
static const char *dead_label(HCONN c) {
    struct request *r = c;
    return r && r->magic == REQ_MAGIC ? r->label : "an unknown request";
}
static BOOL trap_gsv(HCONN c, char *n, void *b, DWORD *s) {
    (void)n, (void)b, (void)s;
    failure("GetServerVariable called through the dead ECB of %s", dead_label(c));
    return 0;
}
static BOOL trap_write(HCONN c, void *b, DWORD *n, DWORD f) {
    (void)b, (void)n, (void)f;
    failure("WriteClient called through the dead ECB of %s", dead_label(c));
    return 0;
}
static BOOL trap_read(HCONN c, void *b, DWORD *n) {
    (void)b, (void)n;
    failure("ReadClient called through the dead ECB of %s", dead_label(c));
    return 0;
}
static BOOL trap_ssf(HCONN c, DWORD q, void *b, DWORD *s, DWORD *t) {
    (void)b, (void)s, (void)t;
    struct request *r = c;
    if (q == HSE_REQ_DONE_WITH_SESSION && r && r->magic == REQ_MAGIC) {
        pthread_mutex_lock(&r->mu);
        r->done_calls++;
        pthread_mutex_unlock(&r->mu);
    }
    if (q == HSE_REQ_DONE_WITH_SESSION)
        failure("DONE_WITH_SESSION called again (through the dead ECB) for %s", dead_label(c));
    else
        failure("ServerSupportFunction(%u) called through the dead ECB of %s", q,
                dead_label(c));
    return 0;
}

/* ------------------------------------------------------------------ request body */

/* Next body bytes (decoded, for chunked): >0 bytes, 0 = end of body, -1 = client gone or
 * broken framing. Caller holds r->mu (or owns r before the extension sees it). */
static ssize_t body_read(struct request *r, unsigned char *dst, size_t max) {
    struct conn *c = r->conn;
    if (r->body_broken) return -1;
    if (r->framing == BODY_LENGTH) {
        if (r->body_left == 0) return 0;
        if (max > r->body_left) max = (size_t)r->body_left;
        ssize_t n = conn_read(c, dst, max);
        if (n <= 0) {
            r->body_broken = true;
            return -1;
        }
        r->body_left -= (size_t)n;
        return n;
    }
    if (r->framing != BODY_CHUNKED || r->chunks_done) return 0;
    while (r->chunk_left == 0) {
        char *line = NULL;
        if (!conn_line(c, &line, 4096)) goto broken;
        char *e;
        unsigned long long size = strtoull(line, &e, 16);
        bool ok = e != line && (*e == 0 || *e == ';' || *e == ' ' || *e == '\t');
        free(line);
        if (!ok) goto broken;
        if (size == 0) {
            for (;;) { /* trailer fields until the empty line */
                if (!conn_line(c, &line, 65536)) goto broken;
                bool empty = line[0] == 0;
                free(line);
                if (empty) break;
            }
            r->chunks_done = true;
            return 0;
        }
        r->chunk_left = size;
    }
    if (max > r->chunk_left) max = (size_t)r->chunk_left;
    ssize_t n = conn_read(c, dst, max);
    if (n <= 0) goto broken;
    r->chunk_left -= (size_t)n;
    if (r->chunk_left == 0) {
        char *crlf = NULL;
        if (!conn_line(c, &crlf, 2)) goto broken;
        bool ok = crlf[0] == 0;
        free(crlf);
        if (!ok) goto broken;
    }
    return n;
broken:
    r->body_broken = true;
    return -1;
}

/* ------------------------------------------------------------------ server variables */

static void var_set(struct request *r, const char *name, char *value) {
    if (r->nvars == MAX_VARS) {
        fputs("harness: too many server variables\n", stderr);
        _exit(2);
    }
    r->vars[r->nvars].name = name;
    r->vars[r->nvars].value = value;
    r->nvars++;
}

/* HTTP_<NAME>: '_' in the asked name matches '-' or '_' in a header name (IIS's lookup),
 * which is why it cannot tell them apart and the library reads ALL_RAW instead. */
static bool http_name_matches(const char *want, const char *have) {
    for (; *want && *have; want++, have++) {
        char a = (char)toupper((unsigned char)*want), b = (char)toupper((unsigned char)*have);
        if (b == '-') b = '_';
        if (a != b) return false;
    }
    return !*want && !*have;
}

/* Value of a variable; NULL = no such variable. */
static const char *var_lookup(struct request *r, const char *name) {
    for (int i = 0; i < opt.nhidden; i++)
        if (strcmp(opt.hidden[i], name) == 0) return NULL;
    for (int i = 0; i < r->nvars; i++)
        if (strcmp(r->vars[i].name, name) == 0) return r->vars[i].value;
    bool http = strncmp(name, "HTTP_", 5) == 0, exact = strncmp(name, "HEADER_", 7) == 0;
    if (!http && !exact) return NULL;
    const char *want = name + (http ? 5 : 7);
    for (int i = 0; i < r->head->nh; i++) {
        const char *have = r->head->h[i].name;
        if (http ? http_name_matches(want, have) : strcasecmp(want, have) == 0)
            return r->head->h[i].value;
    }
    return NULL;
}

static char *build_all_http(struct head *h) {
    size_t cap = 64, n = 0;
    for (int i = 0; i < h->nh; i++) cap += strlen(h->h[i].name) + strlen(h->h[i].value) + 10;
    char *o = xmalloc(cap);
    for (int i = 0; i < h->nh; i++) {
        n += (size_t)sprintf(o + n, "HTTP_");
        for (const char *p = h->h[i].name; *p; p++)
            o[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        n += (size_t)sprintf(o + n, ":%s\r\n", h->h[i].value);
    }
    o[n] = 0;
    return o;
}

/* REMOTE_USER & co. Returns false when IIS would refuse the request (401). */
static bool set_identity(struct request *r) {
    const char *user = "", *type = "", *password = "";
    char *decoded = NULL;
    const char *auth = header_get(r->head, "Authorization");
    if (opt.windows_user) {
        user = opt.windows_user;
        type = "Negotiate";
    } else if (opt.basic_user && auth && strncasecmp(auth, "Basic ", 6) == 0) {
        unsigned char buf[512];
        size_t n = base64_decode(auth + 6, buf, sizeof buf - 1);
        if (n == (size_t)-1 || n != strlen(opt.basic_user) ||
            memcmp(buf, opt.basic_user, n) != 0)
            return false;
        buf[n] = 0;
        decoded = strdup((char *)buf);
        char *colon = strchr(decoded, ':');
        *colon = 0;
        user = decoded;
        password = colon + 1;
        type = "Basic";
    }
    /* IIS gives these variables as empty strings to anonymous requests */
    var_set(r, "REMOTE_USER", strdup(user));
    var_set(r, "AUTH_USER", strdup(user));
    var_set(r, "LOGON_USER", strdup(user));
    var_set(r, "UNMAPPED_REMOTE_USER", strdup(user));
    var_set(r, "AUTH_TYPE", strdup(type));
    var_set(r, "AUTH_PASSWORD", strdup(password)); /* must never reach the app */
    free(decoded);
    return true;
}

static void set_server_vars(struct request *r) {
    struct head *h = r->head;
    struct conn *c = r->conn;
    r->all_raw = strdup(h->raw_headers);
    if (opt.all_raw_lf) { /* the reference leaves the separator IIS uses open: accept both */
        char *w = r->all_raw;
        for (const char *p = r->all_raw; *p; p++)
            if (!(p[0] == '\r' && p[1] == '\n')) *w++ = *p;
        *w = 0;
    }
    r->all_http = build_all_http(h);
    var_set(r, "ALL_RAW", strdup(r->all_raw));
    var_set(r, "ALL_HTTP", strdup(r->all_http));
    var_set(r, "UNENCODED_URL", strdup(h->target));
    var_set(r, "HTTP_URL", strdup(h->target));
    r->path_info_lossy = url_decode(h->path, true);
    var_set(r, "URL", strdup(r->path_info_lossy));
    /* a wildcard script map: IIS reports the whole path in both (isapi.md §2.6) */
    var_set(r, "PATH_INFO", strdup(r->path_info_lossy));
    var_set(r, "SCRIPT_NAME", strdup(r->path_info_lossy));
    r->path_translated = xprintf("C:\\inetpub\\wwwroot%s", r->path_info_lossy);
    for (char *p = r->path_translated; *p; p++)
        if (*p == '/') *p = '\\';
    var_set(r, "PATH_TRANSLATED", strdup(r->path_translated));
    var_set(r, "QUERY_STRING", strdup(h->query));
    var_set(r, "REQUEST_METHOD", strdup(h->method));
    const char *cl = header_get(h, "Content-Length"), *ct = header_get(h, "Content-Type");
    var_set(r, "CONTENT_LENGTH", strdup(cl ? cl : "0"));
    var_set(r, "CONTENT_TYPE", strdup(ct ? ct : ""));
    /* SERVER_NAME: the Host header's name, else the address the request came in on */
    const char *host = header_get(h, "Host");
    char *server_name;
    if (host && *host) {
        const char *end = host[0] == '[' ? strchr(host, ']') : strchr(host, ':');
        size_t n = end ? (size_t)(end - host) + (host[0] == '[') : strlen(host);
        server_name = xstrndup(host, n);
    } else {
        server_name = strdup(c->local_addr);
    }
    var_set(r, "SERVER_NAME", server_name);
    var_set(r, "SERVER_PORT", xprintf("%d", c->local_port));
    var_set(r, "SERVER_PROTOCOL", strdup(h->version));
    var_set(r, "SERVER_SOFTWARE", strdup("harness-iis/10.0"));
    var_set(r, "GATEWAY_INTERFACE", strdup("CGI/1.1"));
    var_set(r, "REMOTE_ADDR", strdup(c->peer_addr));
    var_set(r, "REMOTE_HOST", strdup(c->peer_addr));
    var_set(r, "REMOTE_PORT", xprintf("%d", c->peer_port));
    var_set(r, "LOCAL_ADDR", strdup(c->local_addr));
    /* no TLS here: --https only makes the variables say so, as IIS would behind it */
    bool tls = opt.https;
    var_set(r, "HTTPS", strdup(tls ? "on" : "off"));
    var_set(r, "SERVER_PORT_SECURE", strdup(tls ? "1" : "0"));
    var_set(r, "HTTPS_KEYSIZE", strdup(tls ? "256" : ""));
    var_set(r, "HTTPS_SECRETKEYSIZE", strdup(tls ? "2048" : ""));
    var_set(r, "HTTPS_SERVER_ISSUER", strdup(tls ? "CN=harness CA" : ""));
    var_set(r, "HTTPS_SERVER_SUBJECT", strdup(tls ? "CN=localhost" : ""));
    var_set(r, "INSTANCE_ID", strdup("1"));
    var_set(r, "INSTANCE_META_PATH", strdup("/LM/W3SVC/1"));
    var_set(r, "APPL_MD_PATH", xprintf("/LM/W3SVC/1/%s%s", opt.root, opt.vdir));
    var_set(r, "APPL_PHYSICAL_PATH", strdup("C:\\inetpub\\wwwroot\\"));
    var_set(r, "APP_POOL_ID", strdup("harness"));
}

/* ------------------------------------------------------------------ callbacks */

/* Size protocol (isapi.md §2.4): *size counts bytes including the NUL. Unknown name:
 * FALSE, *size unchanged. Buffer too small: FALSE, *size = bytes needed. */
static BOOL cb_get_server_variable(HCONN conn, char *name, void *buf, DWORD *size) {
    struct request *r = enter(conn, "GetServerVariable");
    if (!r) return 0;
    gather_here();
    BOOL ok = 0;
    const char *v = (name && size) ? var_lookup(r, name) : NULL;
    if (v) {
        size_t need = strlen(v) + 1;
        if (buf && *size >= need) {
            memcpy(buf, v, need);
            ok = 1;
        }
        *size = (DWORD)need;
    }
    leave(r);
    return ok;
}

/* Body after the preloaded bytes. TRUE with *size = 0 at the end of the body, and also
 * when the client went away early (IIS: "a read of 0 bytes means EOF or disconnect"). */
static BOOL cb_read_client(HCONN conn, void *buf, DWORD *size) {
    struct request *r = enter(conn, "ReadClient");
    if (!r) return 0;
    if (!buf || !size) {
        failure("%s: ReadClient with a NULL buffer or size", r->label);
        leave(r);
        return 0;
    }
    if (stall_here(r, 'r', "ReadClient")) { /* the connection was closed under it */
        *size = 0;
        leave(r);
        return 0;
    }
    size_t want = *size;
    if (opt.short_reads && want > 1 + r->reads % 7) want = 1 + r->reads % 7;
    r->reads++;
    ssize_t n = want ? body_read(r, buf, want) : 0;
    *size = n > 0 ? (DWORD)n : 0;
    leave(r);
    return 1;
}

static bool is_status_ok(const char *s, DWORD n) {
    return n >= 3 && isdigit((unsigned char)s[0]) && isdigit((unsigned char)s[1]) &&
           isdigit((unsigned char)s[2]) && (n == 3 || s[3] == ' ');
}

/* Scans the extension's header block for the framing it declares. */
static void note_framing(struct request *r, const char *hdr, size_t n) {
    for (const char *line = hdr; line < hdr + n;) {
        const char *le = memmem(line, (size_t)(hdr + n - line), "\r\n", 2);
        if (!le) break;
        size_t ll = (size_t)(le - line);
        if (ll > 15 && strncasecmp(line, "Content-Length:", 15) == 0) {
            r->has_cl = true;
            r->content_length = strtoull(line + 15, NULL, 10);
        }
        if (ll > 18 && strncasecmp(line, "Transfer-Encoding:", 18) == 0 &&
            memmem(line, ll, "chunked", 7))
            r->chunked_resp = true;
        line = le + 2;
    }
}

static BOOL send_response_header_ex(struct request *r, HSE_SEND_HEADER_EX_INFO *info) {
    if (!info || !info->pszStatus || !info->pszHeader) {
        failure("%s: SEND_RESPONSE_HEADER_EX with a NULL info/status/header", r->label);
        return 0;
    }
    if (r->header_sent) {
        failure("%s: SEND_RESPONSE_HEADER_EX called twice", r->label);
        return 0;
    }
    const char *st = info->pszStatus, *hd = info->pszHeader;
    /* the counts exclude the NUL, and the strings are NUL-terminated right there */
    if (memchr(st, 0, info->cchStatus) || st[info->cchStatus] != 0)
        failure("%s: cchStatus %u is not strlen(pszStatus) %zu", r->label, info->cchStatus,
                strlen(st));
    if (memchr(hd, 0, info->cchHeader) || hd[info->cchHeader] != 0)
        failure("%s: cchHeader %u is not strlen(pszHeader) %zu", r->label, info->cchHeader,
                strlen(hd));
    size_t hn = strlen(hd);
    if (!is_status_ok(st, (DWORD)strlen(st)))
        failure("%s: pszStatus %.60s is not \"NNN Reason\" (no HTTP version)", r->label, st);
    /* the block ends with the blank line; a block without headers is just "\r\n" */
    if (!(strcmp(hd, "\r\n") == 0 || (hn >= 4 && strcmp(hd + hn - 4, "\r\n\r\n") == 0)))
        failure("%s: pszHeader does not end with \\r\\n\\r\\n: ...%.60s", r->label,
                hn > 60 ? hd + hn - 60 : hd);
    r->header_sent = true;
    r->status = atoi(st);
    r->keep_conn_hdr = info->fKeepConn != 0;
    note_framing(r, hd, hn);
    char date[64];
    http_date(date, sizeof date);
    /* IIS writes the status line, Date and Server; the extension supplies the rest. http.sys
     * adds the Connection header the client needs (unless the extension gave one): close,
     * or keep-alive for an HTTP/1.0 client that asked for it. */
    bool closing = !info->fKeepConn || !r->client_keepalive;
    bool has_conn = false;
    for (const char *p = hd; (p = strcasestr(p, "connection:")); p++)
        if (p == hd || p[-1] == '\n') has_conn = true;
    bool v10 = strcmp(r->head->version, "HTTP/1.0") == 0;
    const char *conn = has_conn ? ""
                       : closing ? "Connection: close\r\n"
                       : v10     ? "Connection: keep-alive\r\n"
                                 : "";
    char *pre = xprintf("HTTP/1.1 %s\r\nDate: %s\r\nServer: harness\r\n%s", st, date, conn);
    bool ok = send_all(r->conn, pre, strlen(pre)) && send_all(r->conn, hd, hn);
    free(pre);
    return ok;
}

static BOOL cb_write_client(HCONN conn, void *buf, DWORD *bytes, DWORD flags) {
    struct request *r = enter(conn, "WriteClient");
    if (!r) return 0;
    BOOL ok = 0;
    if (!bytes || (!buf && *bytes)) {
        failure("%s: WriteClient with a NULL buffer or size", r->label);
    } else if (flags & HSE_IO_ASYNC) {
        note("%s: WriteClient with HSE_IO_ASYNC (no IO_COMPLETION support here)", r->label);
    } else if (!r->header_sent) {
        failure("%s: WriteClient before SEND_RESPONSE_HEADER_EX", r->label);
    } else if (stall_here(r, 'w', "WriteClient") || r->conn->broken) {
        *bytes = 0; /* the client is gone, or the connection was closed under the call */
    } else if (r->is_head) {
        /* http.sys sends no entity for HEAD; note it, pretend it went out */
        if (*bytes && !r->head_body_noted) {
            note("%s: %u body bytes written for HEAD (dropped, as http.sys does)", r->label,
                 *bytes);
            r->head_body_noted = true;
        }
        ok = 1;
    } else {
        size_t n = *bytes;
        bool cut = false;
        if (opt.fail_write_after >= 0 &&
            r->written + n > (unsigned long long)opt.fail_write_after) {
            /* the simulated client disconnects once the limit is reached */
            n = (size_t)((unsigned long long)opt.fail_write_after - r->written);
            cut = true;
        }
        ok = send_all(r->conn, buf, n);
        r->written += n;
        for (size_t i = n > 5 ? n - 5 : 0; i < n; i++) {
            memmove(r->tail, r->tail + 1, 4);
            r->tail[4] = ((char *)buf)[i];
        }
        if (cut) {
            conn_cut(r->conn);
            ok = 0;
        }
        *bytes = (DWORD)n;
    }
    leave(r);
    return ok;
}

/* Caller holds r->io (a callback); the state change takes r->mu. */
static BOOL done_with_session(struct request *r, DWORD *status) {
    DWORD st = status ? *status : HSE_STATUS_SUCCESS;
    pthread_mutex_lock(&r->mu);
    r->done_calls++;
    if (r->state == ST_DEAD) { /* abandoned (timeout, terminate) while this call began */
        failure("%s: DONE_WITH_SESSION after the harness gave the request up", r->label);
        pthread_mutex_unlock(&r->mu);
        return 0;
    }
    if (st < HSE_STATUS_SUCCESS || st > HSE_STATUS_ERROR || st == HSE_STATUS_PENDING)
        failure("%s: DONE_WITH_SESSION with status %u", r->label, st);
    if (r->header_sent && r->ecb.dwHttpStatusCode != (DWORD)r->status)
        failure("%s: dwHttpStatusCode %u at DONE_WITH_SESSION, but the response status is %d",
                r->label, r->ecb.dwHttpStatusCode, r->status);
    r->done_called = true;
    r->done_status = st;
    kill_request(r);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return 1;
}

/* HSE_REQ_CLOSE_CONNECTION: closes the socket at once, even under a call blocked on it
 * (which then fails); so it does not wait for r->io. */
static BOOL close_connection(HCONN conn) {
    struct request *r = enter_call(conn, "ServerSupportFunction(CLOSE_CONNECTION)", false);
    if (!r) return 0;
    pthread_mutex_lock(&r->mu);
    r->closed = true;
    if (r->conn) shutdown(r->conn->fd, SHUT_RDWR); /* a later send/recv fails: broken */
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    leave_call(r, false);
    return 1;
}

static BOOL cb_server_support_function(HCONN conn, DWORD req, void *buf, DWORD *size,
                                       DWORD *data_type) {
    char what[64];
    snprintf(what, sizeof what, "ServerSupportFunction(%u)", req);
    if (req == HSE_REQ_CLOSE_CONNECTION) return close_connection(conn);
    struct request *dr = conn;
    if (req == HSE_REQ_DONE_WITH_SESSION && dr && dr->magic == REQ_MAGIC) {
        /* counted here too: a DONE that enter() refuses is still a completion */
        pthread_mutex_lock(&dr->mu);
        if (dr->state == ST_DEAD) dr->done_calls++;
        pthread_mutex_unlock(&dr->mu);
    }
    struct request *r = enter(conn, what);
    if (!r) return 0;
    BOOL ok = 0;
    (void)size, (void)data_type;
    switch (req) {
    case HSE_REQ_SEND_RESPONSE_HEADER_EX:
        ok = send_response_header_ex(r, buf);
        break;
    case HSE_REQ_DONE_WITH_SESSION:
        ok = done_with_session(r, buf);
        break;
    case HSE_REQ_ABORTIVE_CLOSE:
        conn_cut(r->conn);
        ok = 1;
        break;
    case HSE_REQ_IS_KEEP_CONN:
        if (buf) *(BOOL *)buf = r->client_keepalive;
        ok = buf != NULL;
        break;
    case HSE_REQ_IS_CONNECTED:
        if (buf) *(BOOL *)buf = !r->conn->broken;
        ok = buf != NULL;
        break;
    default: /* IIS: FALSE, ERROR_INVALID_PARAMETER */
        note("%s: unsupported ServerSupportFunction code %u (FALSE)", r->label, req);
    }
    leave(r);
    return ok;
}

/* ------------------------------------------------------------------ one request */

static struct request *new_request(struct conn *c, struct head *h) {
    struct request *r = calloc(1, sizeof *r);
    if (!r) xmalloc((size_t)-1);
    r->magic = REQ_MAGIC;
    r->id = atomic_fetch_add(&request_ids, 1) + 1;
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->io, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->conn = c;
    r->head = h;
    r->label = xprintf("request #%ld (%s %.200s)", r->id, h->method, h->target);
    r->is_head = strcmp(h->method, "HEAD") == 0;
    /* HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 only when asked */
    bool v11 = strcmp(h->version, "HTTP/1.1") == 0;
    r->client_keepalive = v11 ? !header_has_token(h, "Connection", "close")
                              : header_has_token(h, "Connection", "keep-alive");
    const char *stall = header_get(h, "X-Harness-Stall");
    r->stall = !stall ? 0 : strcasecmp(stall, "read") == 0 ? 'r'
                          : strcasecmp(stall, "write") == 0 ? 'w' : 0;
    return r;
}

/* Decides the body framing; returns 0 or the status IIS would answer instead. */
static int set_framing(struct request *r) {
    const char *te = header_get(r->head, "Transfer-Encoding");
    const char *cl = header_get(r->head, "Content-Length");
    if (te) {
        if (cl || strcasecmp(te, "chunked") != 0) return 400;
        r->framing = BODY_CHUNKED;
        return 0;
    }
    if (cl) {
        char *e;
        errno = 0;
        unsigned long long n = strtoull(cl, &e, 10);
        if (!isdigit((unsigned char)cl[0]) || *e || errno) return 400;
        if (n >= UNKNOWN_LENGTH) return 413; /* fits cbTotalBytes or is not for this test */
        r->framing = n ? BODY_LENGTH : BODY_NONE;
        r->body_left = n;
    }
    return 0;
}

/* Fills lpbData with up to --preload body bytes, as IIS's read-ahead does. */
static void preload_body(struct request *r) {
    size_t want = opt.preload;
    if (r->framing == BODY_LENGTH && r->body_left < want) want = (size_t)r->body_left;
    if (r->framing == BODY_NONE) want = 0;
    r->preload = xmalloc(want + 1);
    size_t got = 0;
    while (got < want) {
        ssize_t n = body_read(r, r->preload + got, want - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    EXTENSION_CONTROL_BLOCK *e = &r->ecb;
    e->cbTotalBytes = r->framing == BODY_CHUNKED ? UNKNOWN_LENGTH
                      : r->framing == BODY_LENGTH
                          ? (DWORD)strtoull(header_get(r->head, "Content-Length"), NULL, 10)
                          : 0;
    e->cbAvailable = (DWORD)got;
    e->lpbData = r->preload;
}

static char *var_value(struct request *r, const char *name) {
    for (int i = 0; i < r->nvars; i++)
        if (strcmp(r->vars[i].name, name) == 0) return r->vars[i].value;
    return (char *)"";
}

static void fill_ecb(struct request *r) {
    EXTENSION_CONTROL_BLOCK *e = &r->ecb;
    e->cbSize = sizeof *e;
    e->dwVersion = HSE_VERSION;
    e->ConnID = r;
    e->dwHttpStatusCode = 200; /* IIS's default until the extension says otherwise */
    e->lpszLogData[0] = 0;
    e->lpszMethod = var_value(r, "REQUEST_METHOD");
    e->lpszQueryString = var_value(r, "QUERY_STRING");
    e->lpszPathInfo = r->path_info_lossy;
    e->lpszPathTranslated = r->path_translated;
    e->lpszContentType = var_value(r, "CONTENT_TYPE");
    e->GetServerVariable = cb_get_server_variable;
    e->WriteClient = cb_write_client;
    e->ReadClient = cb_read_client;
    e->ServerSupportFunction = cb_server_support_function;
}

/* Is the response self-delimited, so the connection can carry another request? */
static bool response_delimited(struct request *r) {
    if (r->is_head || r->status == 204 || r->status == 304 || r->status < 200) return true;
    if (r->chunked_resp) return r->written >= 5 && memcmp(r->tail, "0\r\n\r\n", 5) == 0;
    return r->has_cl && r->written == r->content_length;
}

/* Waits (bounded) for DONE_WITH_SESSION after a PENDING return. Caller holds r->mu. */
static void wait_for_done(struct request *r) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += opt.done_timeout;
    while (!r->done_called && !r->orphaned) {
        if (pthread_cond_timedwait(&r->cv, &r->mu, &deadline) == ETIMEDOUT) {
            failure("%s: no DONE_WITH_SESSION within %ds of HSE_STATUS_PENDING", r->label,
                    opt.done_timeout);
            r->orphaned = true;
            kill_request(r);
            pthread_cond_broadcast(&r->cv); /* a stalled call gives up too */
        }
    }
}

/* Registers the request as inside HttpExtensionProc; false while the extension unloads. */
static bool admit(struct request *r) {
    pthread_mutex_lock(&reg_mu);
    bool ok = !terminating;
    if (ok) {
        /* set before the request is listed: terminate_extension must never take it for
         * one whose HttpExtensionProc call has returned */
        r->proc_thread = pthread_self();
        r->proc_running = true;
        r->next = registry;
        registry = r;
        in_proc++;
    }
    pthread_mutex_unlock(&reg_mu);
    return ok;
}

static void left_proc(void) {
    pthread_mutex_lock(&reg_mu);
    in_proc--;
    pthread_cond_broadcast(&reg_cv);
    pthread_mutex_unlock(&reg_mu);
}

/* After HttpExtensionProc returned: PENDING waits for DONE_WITH_SESSION; any other return
 * ends the request at once (and DONE must not have been called). Caller holds r->mu. */
static void settle(struct request *r, DWORD ret) {
    r->returned = true;
    r->ret = ret;
    if (ret == HSE_STATUS_PENDING) {
        /* tests wait for this line to know a request is queued inside the extension */
        out("pending #%ld %s %s", r->id, r->head->method, r->head->target);
        /* DONE may already have come from another thread: legal, the ECB is dead then */
        if (r->state != ST_DEAD) r->state = ST_PENDING;
        if (r->state != ST_DEAD && atomic_load(&ext_terminated)) {
            /* after TerminateExtension no thread of the extension may call DONE any more */
            failure("%s: HSE_STATUS_PENDING returned after TerminateExtension returned, and "
                    "no DONE_WITH_SESSION came", r->label);
            r->orphaned = true;
            kill_request(r);
            pthread_cond_broadcast(&r->cv);
        }
        wait_for_done(r);
    } else {
        if (r->done_called)
            failure("%s: DONE_WITH_SESSION called, but HttpExtensionProc returned %u "
                    "(not PENDING)", r->label, ret);
        if (ret < HSE_STATUS_SUCCESS || ret > HSE_STATUS_ERROR)
            failure("%s: HttpExtensionProc returned %u", r->label, ret);
        if (r->state != ST_DEAD) kill_request(r);
    }
    /* a callback entered before DONE may still be running: the socket is its until it ends */
    while (r->busy > 0) pthread_cond_wait(&r->cv, &r->mu);
}

/* Keep-alive only when the extension asked for it (DONE status or synchronous return, and
 * fKeepConn), the client wants it, and the response is self-delimited. */
static bool decide_keep(struct request *r, DWORD final) {
    bool want = final == HSE_STATUS_SUCCESS_AND_KEEP_CONN && r->keep_conn_hdr &&
                r->client_keepalive && !r->orphaned && !r->conn->broken;
    if (want && !response_delimited(r))
        failure("%s: connection kept alive after a response that is not self-delimited "
                "(Content-Length %s%llu, chunked %d, %llu bytes written)",
                r->label, r->has_cl ? "" : "none/", r->content_length, r->chunked_resp,
                r->written);
    bool keep = want && response_delimited(r);
    if (!r->header_sent && !r->conn->broken) {
        note("%s: the extension sent no response (returned %u); harness answers 500",
             r->label, final);
        send_simple(r->conn, 500, "Internal Server Error", NULL);
        keep = false;
    }
    return keep;
}

/* The unread rest of the body must go before the next request can be parsed. */
static bool drain_body(struct request *r) {
    unsigned char scratch[16384];
    unsigned long long drained = 0;
    ssize_t n;
    while ((n = body_read(r, scratch, sizeof scratch)) > 0 && drained < DRAIN_LIMIT)
        drained += (size_t)n;
    return n == 0;
}

/* Runs one request through the extension; returns whether the connection stays open. */
static bool run_extension(struct request *r) {
    if (!admit(r)) { /* the extension is being unloaded: IIS answers itself */
        send_simple(r->conn, 503, "Service Unavailable", NULL);
        return false;
    }
    DWORD ret = ext_proc(&r->ecb);
    left_proc();

    pthread_mutex_lock(&r->mu);
    r->proc_running = false; /* with settle(), so terminate sees returned or settled */
    settle(r, ret);
    DWORD final = ret == HSE_STATUS_PENDING ? r->done_status : ret;
    bool keep = decide_keep(r, final);
    out("access #%ld %s %s status=%d ret=%u done=%s%u dones=%d ecb_status=%u keep=%d "
        "written=%llu reads=%u log=\"%s\"",
        r->id, r->head->method, r->head->target, r->header_sent ? r->status : 0, ret,
        r->done_called ? "" : "-", r->done_status, r->done_calls, r->ecb_status, keep,
        r->written, r->reads, r->log_data);
    if (keep) keep = drain_body(r);
    free_request_data(r);
    r->conn = NULL;
    r->head = NULL;
    pthread_mutex_unlock(&r->mu);
    return keep;
}

/* --pad-var: a long header the harness adds, as if the client had sent it, so that ALL_RAW
 * outgrows any first GetServerVariable buffer. */
static void add_pad(struct head *h) {
    if (!opt.pad_var || h->nh == MAX_HEADERS) return;
    char *pad = xmalloc(opt.pad_var + 1);
    memset(pad, 'p', opt.pad_var);
    pad[opt.pad_var] = 0;
    char *raw = xprintf("%sX-Harness-Pad: %s\r\n", h->raw_headers, pad);
    free(h->raw_headers);
    h->raw_headers = raw;
    h->raw_len = strlen(raw);
    h->h[h->nh].name = strdup("X-Harness-Pad");
    h->h[h->nh].value = pad;
    h->nh++;
}

/* Parses, authenticates and dispatches one request; false = close the connection. */
static bool serve_one(struct conn *c) {
    struct head *h = calloc(1, sizeof *h);
    int st = read_head(c, h);
    if (st != 0) {
        if (st > 0) send_simple(c, st, st == 431 ? "Request Header Fields Too Large"
                                               : st == 505 ? "HTTP Version Not Supported"
                                                           : "Bad Request", NULL);
        free_head(h);
        free(h);
        return false;
    }
    add_pad(h);
    struct request *r = new_request(c, h);
    bool keep = false;
    if ((st = set_framing(r)) != 0) {
        send_simple(c, st, st == 413 ? "Payload Too Large" : "Bad Request", NULL);
    } else if (!set_identity(r)) {
        send_simple(c, 401, "Unauthorized", "WWW-Authenticate: Basic realm=\"harness\"\r\n");
    } else {
        set_server_vars(r);
        /* http.sys answers Expect itself, and only to HTTP/1.1 clients (RFC 9110 §10.1.1) */
        if (r->framing != BODY_NONE && strcmp(h->version, "HTTP/1.1") == 0 &&
            header_has_token(h, "Expect", "100-continue"))
            send_all(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        preload_body(r);
        fill_ecb(r);
        keep = run_extension(r);
    }
    if (r->state != ST_DEAD) { /* never given to the extension: not in the registry */
        free_request_data(r);
        free(r->label);
        free(r);
    }
    free_head(h);
    free(h);
    return keep;
}

static void *connection_thread(void *arg) {
    struct conn *c = arg;
    while (serve_one(c)) {
    }
    close(c->fd);
    free(c->buf);
    free(c);
    return NULL;
}

/* ------------------------------------------------------------------ extension lifecycle */

/* The ECBs of finished requests must still hold their poison: a difference means the
 * extension wrote into an ECB after DONE_WITH_SESSION. */
static void check_dead_ecbs(void) {
    pthread_mutex_lock(&reg_mu);
    for (struct request *r = registry; r; r = r->next) {
        pthread_mutex_lock(&r->mu);
        if (r->state == ST_DEAD) {
            EXTENSION_CONTROL_BLOCK want;
            poison_image(r, &want);
            if (memcmp(&want, &r->ecb, sizeof want) != 0) {
                failure("%s: its ECB was written after DONE_WITH_SESSION", r->label);
                r->ecb = want; /* report once */
            }
        }
        pthread_mutex_unlock(&r->mu);
    }
    pthread_mutex_unlock(&reg_mu);
}

/* Requests not finished yet. Caller holds reg_mu. */
static int count_live(void) {
    int n = 0;
    for (struct request *r = registry; r; r = r->next) {
        pthread_mutex_lock(&r->mu);
        n += r->state != ST_DEAD;
        pthread_mutex_unlock(&r->mu);
    }
    return n;
}

/* `racing` >= 0: TerminateExtension while HttpExtensionProc calls run (`racing` of them
 * gathered first, then let go together with it) and new requests keep entering the
 * extension until it returns; -1: as IIS, after the calls returned. */
static void terminate_extension(int racing) {
    int raced = racing > 0 ? gather(racing) : 0;
    pthread_mutex_lock(&reg_mu);
    if (racing < 0) {
        terminating = true; /* new requests get 503 from the harness from now on */
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 30;
        /* IIS does not unload while an HttpExtensionProc call is running */
        while (in_proc > 0)
            if (pthread_cond_timedwait(&reg_cv, &reg_mu, &deadline) == ETIMEDOUT) {
                failure("HttpExtensionProc calls still running 30s after terminate began");
                break;
            }
    }
    int pending = count_live();
    pthread_mutex_unlock(&reg_mu);

    if (racing < 0) out("terminating in_flight=%d", pending);
    else out("terminating in_flight=%d racing=%d", pending, raced);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (racing > 0) release_gathered();
    BOOL ok = ext_terminate ? ext_terminate(HSE_TERM_MUST_UNLOAD) : 1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    pthread_mutex_lock(&reg_mu);
    terminating = true;
    pthread_mutex_unlock(&reg_mu);
    atomic_store(&ext_terminated, true);
    /* IIS frees the ECBs and unloads the DLL now: a worker still inside a callback would
     * return into freed memory (only an HttpExtensionProc call's own thread may be) */
    int inside = atomic_load(&worker_calls);
    if (inside > 0)
        failure("TerminateExtension returned while %d worker thread(s) were inside IIS "
                "callbacks", inside);

    /* every request in flight must have had its DONE_WITH_SESSION by now; one whose
     * HttpExtensionProc call still runs (racing) is checked when that call returns */
    int left = 0;
    pthread_mutex_lock(&reg_mu);
    for (struct request *r = registry; r; r = r->next) {
        pthread_mutex_lock(&r->mu);
        if (r->state != ST_DEAD && !r->proc_running) {
            left++;
            failure("%s: still pending when TerminateExtension returned", r->label);
            r->orphaned = true;
            kill_request(r);
            pthread_cond_broadcast(&r->cv);
        }
        pthread_mutex_unlock(&r->mu);
    }
    pthread_mutex_unlock(&reg_mu);
    check_dead_ecbs();
    if (!ok) failure("TerminateExtension returned FALSE");
    out("terminated ok=%d seconds=%.3f in_flight=%d left_pending=%d inside=%d racing=%d", ok,
        (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, pending,
        left, inside, raced);
}

/* GetExtensionVersion: IIS uses the DLL only if it returns TRUE. */
static bool load_extension(void) {
    HSE_VERSION_INFO info;
    memset(&info, POISON_BYTE, sizeof info);
    if (!ext_version(&info)) return false;
    if (info.dwExtensionVersion != HSE_VERSION)
        note("dwExtensionVersion is 0x%08x, not HSE_VERSION 0x%08x", info.dwExtensionVersion,
             HSE_VERSION);
    if (!memchr(info.lpszExtensionDesc, 0, sizeof info.lpszExtensionDesc)) {
        failure("lpszExtensionDesc is not NUL-terminated within 256 bytes");
        info.lpszExtensionDesc[HSE_MAX_EXT_DLL_NAME_LEN - 1] = 0;
    }
    out("extension: %s (version 0x%08x)", info.lpszExtensionDesc, info.dwExtensionVersion);
    return true;
}

static void print_stats(void) {
    int total = 0;
    pthread_mutex_lock(&reg_mu);
    for (struct request *r = registry; r; r = r->next) total++;
    int live = count_live();
    pthread_mutex_unlock(&reg_mu);
    out("stats requests=%d live=%d failures=%d", total, live, atomic_load(&failures));
}

/* stdin commands; EOF ends the process. */
static void *stdin_thread(void *arg) {
    (void)arg;
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = 0;
        if (strcmp(line, "terminate") == 0) {
            terminate_extension(-1);
        } else if (strncmp(line, "terminate-racing", 16) == 0 &&
                   (line[16] == 0 || line[16] == ' ')) {
            terminate_extension(line[16] ? atoi(line + 17) : 0);
        } else if (strcmp(line, "reload") == 0) {
            /* a later GetExtensionVersion in the same process (IIS reloading the DLL) */
            pthread_mutex_lock(&reg_mu);
            bool ok = atomic_load(&ext_terminated) && load_extension();
            if (ok) {
                atomic_store(&ext_terminated, false);
                terminating = false;
            }
            pthread_mutex_unlock(&reg_mu);
            out(ok ? "reloaded" : "reload failed");
        } else if (strcmp(line, "stats") == 0) {
            check_dead_ecbs();
            print_stats();
        } else if (line[0]) {
            note("unknown command %s", line);
        }
    }
    if (!atomic_load(&ext_terminated)) terminate_extension(-1);
    int n = atomic_load(&failures);
    out("exit failures=%d", n);
    fflush(stderr);
    _exit(n ? 3 : 0); /* connection threads may still be blocked in recv: do not join */
}

/* ------------------------------------------------------------------ main */

static void on_segv(int sig) {
    static const char msg[] =
        "HARNESS FAILURE: crashed (SIGSEGV/SIGBUS): a dead ECB's poisoned pointer used?\n";
    (void)sig;
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(4);
}

static void usage(void) {
    fputs("usage: isapi-host --lib EXT.so [--port N] [--vdir /app] [--root-spelling Root]\n"
          "  [--preload N] [--short-reads] [--fail-write-after N] [--pad-var N]\n"
          "  [--basic-user user:pass] [--windows-user DOM\\user] [--done-timeout S]\n"
          "  [--rtld-global] [--https] [--hide-var NAME]... [--all-raw-lf]\n"
          "  [--configure FILE]\n",
          stderr);
    exit(2);
}

static void parse_args(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v && ++i)
        if (ARG("--lib")) opt.lib = v;
        else if (ARG("--port")) opt.port = atoi(v);
        else if (ARG("--vdir")) opt.vdir = v;
        else if (ARG("--root-spelling")) opt.root = v;
        else if (ARG("--preload")) opt.preload = strtoull(v, NULL, 10);
        else if (strcmp(a, "--short-reads") == 0) opt.short_reads = true;
        else if (ARG("--fail-write-after")) opt.fail_write_after = strtoll(v, NULL, 10);
        else if (ARG("--pad-var")) opt.pad_var = strtoull(v, NULL, 10);
        else if (ARG("--basic-user")) opt.basic_user = v;
        else if (ARG("--windows-user")) opt.windows_user = v;
        else if (ARG("--done-timeout")) opt.done_timeout = atoi(v);
        else if (strcmp(a, "--rtld-global") == 0) opt.rtld_global = true;
        else if (strcmp(a, "--https") == 0) opt.https = true;
        else if (strcmp(a, "--all-raw-lf") == 0) opt.all_raw_lf = true;
        else if (ARG("--hide-var") && opt.nhidden < 8) opt.hidden[opt.nhidden++] = v;
        else if (ARG("--configure")) opt.configure = v;
        else usage();
#undef ARG
    }
    if (!opt.lib || (opt.basic_user && !strchr(opt.basic_user, ':'))) usage();
    if (opt.vdir[0] && (opt.vdir[0] != '/' || opt.vdir[strlen(opt.vdir) - 1] == '/')) usage();
}

/* What wsgi-gateway's ISAPI loader does before GetExtensionVersion: name the configuration
 * file, as UTF-16 (the path is taken as ASCII here). */
static void configure_extension(void *h) {
    typedef int (*PFN_CONFIGURE)(const uint16_t *);
    PFN_CONFIGURE configure = (PFN_CONFIGURE)dlsym(h, "WsgiGatewayIsapiConfigure");
    if (!configure) {
        fprintf(stderr, "harness: %s lacks WsgiGatewayIsapiConfigure\n", opt.lib);
        exit(2);
    }
    size_t n = strlen(opt.configure);
    uint16_t *wide = calloc(n + 1, sizeof *wide);
    for (size_t i = 0; i < n; i++) wide[i] = (unsigned char)opt.configure[i];
    int ok = configure(wide);
    free(wide);
    if (!ok) {
        fprintf(stderr, "harness: WsgiGatewayIsapiConfigure returned FALSE\n");
        exit(2);
    }
}

static void open_extension(void) {
    /* RTLD_LOCAL is what a plugin host normally does: an extension that embeds Python must
     * then make libpython's symbols visible to Python's C extension modules itself. */
    void *h = dlopen(opt.lib, RTLD_NOW | (opt.rtld_global ? RTLD_GLOBAL : RTLD_LOCAL));
    if (!h) {
        fprintf(stderr, "harness: dlopen failed: %s\n", dlerror());
        exit(2);
    }
    ext_version = (PFN_GETEXTENSIONVERSION)dlsym(h, "GetExtensionVersion");
    ext_proc = (PFN_HTTPEXTENSIONPROC)dlsym(h, "HttpExtensionProc");
    ext_terminate = (PFN_TERMINATEEXTENSION)dlsym(h, "TerminateExtension");
    if (!ext_version || !ext_proc) {
        fprintf(stderr, "harness: %s lacks GetExtensionVersion/HttpExtensionProc\n", opt.lib);
        exit(2);
    }
    if (opt.configure) configure_extension(h);
    if (!load_extension()) {
        fprintf(stderr, "harness: GetExtensionVersion returned FALSE\n");
        exit(2);
    }
}

static int listen_loopback(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 256) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
        perror("harness: listen");
        exit(2);
    }
    out("listening on 127.0.0.1:%d", ntohs(a.sin_port));
    return fd;
}

static void start_connection(int fd) {
    struct conn *c = calloc(1, sizeof *c);
    c->fd = fd;
    c->cap = 65536;
    c->buf = xmalloc(c->cap);
    struct timeval tv = {IO_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    getpeername(fd, (struct sockaddr *)&a, &al);
    inet_ntop(AF_INET, &a.sin_addr, c->peer_addr, sizeof c->peer_addr);
    c->peer_port = ntohs(a.sin_port);
    al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    inet_ntop(AF_INET, &a.sin_addr, c->local_addr, sizeof c->local_addr);
    c->local_port = ntohs(a.sin_port);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, connection_thread, c) != 0) {
        close(fd);
        free(c->buf);
        free(c);
    }
    pthread_attr_destroy(&attr);
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGSEGV, on_segv);
    signal(SIGBUS, on_segv);
    open_extension();
    int lfd = listen_loopback();
    pthread_t t;
    pthread_create(&t, NULL, stdin_thread, NULL);
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd >= 0) start_connection(fd);
        else if (errno != EINTR && errno != ECONNABORTED) perror("harness: accept");
    }
}
