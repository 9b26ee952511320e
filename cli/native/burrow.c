/*
 * burrow's native fast path: `burrow exec` and `burrow proxy` without starting Node.
 *
 * Why: a warm `burrow exec` is one IPC round trip plus one SSH channel, a few milliseconds, but
 * starting Node costs 70 ms on a small machine, seven times OpenSSH's whole ControlMaster exec.
 * This client speaks the same frames as shared/ipc (u32 big-endian length + msgpack map) for the
 * two hot commands and hands everything else, unchanged, to the Node CLI (dist/cli/burrow.mjs):
 * other commands, usage errors, and every case where no daemon answers (the Node CLI starts one).
 * So the Node CLI stays the reference; this file only has to be right on the happy path and on
 * errors the daemon reports, and test/native-cli.test.ts runs both clients against each other.
 *
 * Built by cli/native/build.ts, which passes the protocol constants from shared/ipc/frames.ts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef BURROW_PROTOCOL_VERSION
#error "build with cli/native/build.ts: it passes BURROW_PROTOCOL_VERSION, BURROW_MAX_FRAME, BURROW_MAX_CHUNK"
#endif
#ifndef BURROW_NODE
#define BURROW_NODE "node"
#endif

/* ---- growable byte buffer and the msgpack subset the frames use ---- */

typedef struct {
  uint8_t *p;
  size_t len, cap, off; /* off: bytes already consumed from the front */
} buf_t;

static void die_oom(void) {
  static const char m[] = "burrow: Internal: out of memory\n";
  (void)!write(2, m, sizeof m - 1);
  _exit(255);
}

/* Move unconsumed bytes to the front. Only between frames: frame_begin's offset must stay valid. */
static void buf_compact(buf_t *b) {
  if (b->off == 0) return;
  memmove(b->p, b->p + b->off, b->len - b->off);
  b->len -= b->off;
  b->off = 0;
}

static void buf_reserve(buf_t *b, size_t n) {
  if (b->len + n <= b->cap) return;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + n) cap *= 2;
  uint8_t *p = realloc(b->p, cap);
  if (!p) die_oom();
  b->p = p;
  b->cap = cap;
}

static void put(buf_t *b, const void *p, size_t n) {
  buf_reserve(b, n);
  memcpy(b->p + b->len, p, n);
  b->len += n;
}

static void put_u8(buf_t *b, uint8_t v) { put(b, &v, 1); }

static void put_be(buf_t *b, uint64_t v, int bytes) {
  uint8_t t[8];
  for (int i = 0; i < bytes; i++) t[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
  put(b, t, (size_t)bytes);
}

static void mp_map(buf_t *b, uint32_t n) {
  if (n < 16) put_u8(b, (uint8_t)(0x80 | n));
  else { put_u8(b, 0xde); put_be(b, n, 2); }
}

static void mp_strn(buf_t *b, const char *s, size_t n) {
  if (n < 32) put_u8(b, (uint8_t)(0xa0 | n));
  else if (n < 0x100) { put_u8(b, 0xd9); put_be(b, n, 1); }
  else if (n < 0x10000) { put_u8(b, 0xda); put_be(b, n, 2); }
  else { put_u8(b, 0xdb); put_be(b, n, 4); }
  put(b, s, n);
}

static void mp_str(buf_t *b, const char *s) { mp_strn(b, s, strlen(s)); }

static void mp_bin(buf_t *b, const uint8_t *p, size_t n) {
  if (n < 0x100) { put_u8(b, 0xc4); put_be(b, n, 1); }
  else if (n < 0x10000) { put_u8(b, 0xc5); put_be(b, n, 2); }
  else { put_u8(b, 0xc6); put_be(b, n, 4); }
  put(b, p, n);
}

static void mp_uint(buf_t *b, uint32_t v) {
  if (v < 128) put_u8(b, (uint8_t)v);
  else { put_u8(b, 0xce); put_be(b, v, 4); }
}

/* A frame: reserve the length prefix, let the caller encode the body, then fill it in. */
static size_t frame_begin(buf_t *b) {
  buf_compact(b);
  size_t at = b->len;
  put_be(b, 0, 4);
  return at;
}

static void frame_end(buf_t *b, size_t at) {
  uint32_t n = (uint32_t)(b->len - at - 4);
  for (int i = 0; i < 4; i++) b->p[at + (size_t)i] = (uint8_t)(n >> (8 * (3 - i)));
}

/* Decoding: just enough to read the daemon's frames (maps of scalars) and skip anything else. */
typedef struct {
  const uint8_t *p, *end;
  int bad;
} rd_t;

enum { MP_NIL, MP_BOOL, MP_INT, MP_STR, MP_BIN, MP_MAP, MP_ARRAY, MP_OTHER };

typedef struct {
  int type;
  int64_t i;          /* MP_INT, MP_BOOL */
  const uint8_t *s;   /* MP_STR, MP_BIN */
  size_t n;           /* length, or entry count for MP_MAP / MP_ARRAY */
} mpv_t;

static uint64_t rd_be(rd_t *r, int bytes) {
  if (r->end - r->p < bytes) { r->bad = 1; return 0; }
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++) v = (v << 8) | r->p[i];
  r->p += bytes;
  return v;
}

static const uint8_t *rd_take(rd_t *r, size_t n) {
  if ((size_t)(r->end - r->p) < n) { r->bad = 1; return NULL; }
  const uint8_t *s = r->p;
  r->p += n;
  return s;
}

static mpv_t rd_value(rd_t *r);

/* Skip the items of a map or array just read; a loop, not recursion, so nesting cannot exhaust the stack. */
static void rd_skip(rd_t *r, mpv_t v) {
  uint64_t pending = v.type == MP_MAP ? 2 * (uint64_t)v.n : v.type == MP_ARRAY ? v.n : 0;
  while (pending > 0 && !r->bad) {
    pending--;
    mpv_t item = rd_value(r);
    pending += item.type == MP_MAP ? 2 * (uint64_t)item.n : item.type == MP_ARRAY ? item.n : 0;
  }
}

/* One value's header (and its bytes, for str/bin/ext); maps and arrays leave their items unread. */
static mpv_t rd_value(rd_t *r) {
  mpv_t v = {MP_OTHER, 0, NULL, 0};
  if (r->p >= r->end) { r->bad = 1; return v; }
  uint8_t c = *r->p++;
  size_t n = 0;
  if (c <= 0x7f) { v.type = MP_INT; v.i = c; return v; }
  if (c >= 0xe0) { v.type = MP_INT; v.i = (int8_t)c; return v; }
  if ((c & 0xf0) == 0x80) { v.type = MP_MAP; v.n = c & 0x0f; return v; }
  if ((c & 0xf0) == 0x90) { v.type = MP_ARRAY; v.n = c & 0x0f; return v; }
  if ((c & 0xe0) == 0xa0) { n = c & 0x1f; goto str; }
  switch (c) {
    case 0xc0: v.type = MP_NIL; return v;
    case 0xc2: case 0xc3: v.type = MP_BOOL; v.i = c == 0xc3; return v;
    case 0xc4: n = rd_be(r, 1); goto bin;
    case 0xc5: n = rd_be(r, 2); goto bin;
    case 0xc6: n = rd_be(r, 4); goto bin;
    case 0xc7: n = rd_be(r, 1) + 1; rd_take(r, n); return v; /* ext 8: type byte + data */
    case 0xc8: n = rd_be(r, 2) + 1; rd_take(r, n); return v;
    case 0xc9: n = rd_be(r, 4) + 1; rd_take(r, n); return v;
    case 0xca: rd_take(r, 4); return v; /* floats: never in the fields read here */
    case 0xcb: rd_take(r, 8); return v;
    case 0xcc: v.type = MP_INT; v.i = (int64_t)rd_be(r, 1); return v;
    case 0xcd: v.type = MP_INT; v.i = (int64_t)rd_be(r, 2); return v;
    case 0xce: v.type = MP_INT; v.i = (int64_t)rd_be(r, 4); return v;
    case 0xcf: v.type = MP_INT; v.i = (int64_t)rd_be(r, 8); return v;
    case 0xd0: v.type = MP_INT; v.i = (int8_t)rd_be(r, 1); return v;
    case 0xd1: v.type = MP_INT; v.i = (int16_t)rd_be(r, 2); return v;
    case 0xd2: v.type = MP_INT; v.i = (int32_t)rd_be(r, 4); return v;
    case 0xd3: v.type = MP_INT; v.i = (int64_t)rd_be(r, 8); return v;
    case 0xd4: rd_take(r, 2); return v; /* fixext 1..16 */
    case 0xd5: rd_take(r, 3); return v;
    case 0xd6: rd_take(r, 5); return v;
    case 0xd7: rd_take(r, 9); return v;
    case 0xd8: rd_take(r, 17); return v;
    case 0xd9: n = rd_be(r, 1); goto str;
    case 0xda: n = rd_be(r, 2); goto str;
    case 0xdb: n = rd_be(r, 4); goto str;
    case 0xdc: v.type = MP_ARRAY; v.n = rd_be(r, 2); return v;
    case 0xdd: v.type = MP_ARRAY; v.n = rd_be(r, 4); return v;
    case 0xde: v.type = MP_MAP; v.n = rd_be(r, 2); return v;
    case 0xdf: v.type = MP_MAP; v.n = rd_be(r, 4); return v;
    default: r->bad = 1; return v; /* 0xc1 is never used */
  }
str:
  v.type = MP_STR;
  v.s = rd_take(r, n);
  v.n = n;
  return v;
bin:
  v.type = MP_BIN;
  v.s = rd_take(r, n);
  v.n = n;
  return v;
}

/* The fields of a daemon frame that this client reads. */
typedef struct {
  mpv_t t, data, code, signal, message, v;
} frame_t;

static int str_is(mpv_t k, const char *name) {
  return k.type == MP_STR && k.n == strlen(name) && memcmp(k.s, name, k.n) == 0;
}

static int parse_frame(const uint8_t *p, size_t n, frame_t *f) {
  rd_t r = {p, p + n, 0};
  memset(f, 0, sizeof *f);
  mpv_t m = rd_value(&r);
  if (r.bad || m.type != MP_MAP) return -1;
  for (size_t k = 0; k < m.n && !r.bad; k++) {
    mpv_t key = rd_value(&r);
    rd_skip(&r, key);
    mpv_t val = rd_value(&r);
    if (r.bad) break;
    mpv_t *slot = str_is(key, "t") ? &f->t : str_is(key, "data") ? &f->data : str_is(key, "code") ? &f->code
                : str_is(key, "signal") ? &f->signal : str_is(key, "message") ? &f->message : str_is(key, "v") ? &f->v : NULL;
    if (slot) *slot = val;
    rd_skip(&r, val);
  }
  return r.bad || f->t.type != MP_STR ? -1 : 0;
}

/* ---- process-wide state ---- */

static char **g_argv;
static const char *g_node_cli; /* dist/cli/burrow.mjs beside this binary */

/* Everything this client does not serve runs the Node CLI with the same arguments. */
static void fallback(void) {
  size_t argc = 0;
  while (g_argv[argc]) argc++;
  char **args = calloc(argc + 2, sizeof *args);
  if (!args) die_oom();
  if (!g_node_cli) {
    fprintf(stderr, "burrow: Internal: cannot find the Node CLI beside %s\n", g_argv[0]);
    exit(255);
  }
  const char *node = access(BURROW_NODE, X_OK) == 0 ? BURROW_NODE : "node";
  args[0] = (char *)"node";
  args[1] = (char *)g_node_cli;
  for (size_t i = 1; i < argc; i++) args[i + 1] = g_argv[i];
  execvp(node, args);
  fprintf(stderr, "burrow: Internal: cannot run %s for the Node CLI: %s\n", node, strerror(errno));
  exit(255);
}

static char *node_cli_path(void) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0 || n >= (ssize_t)sizeof self - 1) return NULL; /* unreadable, or maybe cut short */
  self[n] = 0;
  /* .../dist/native/burrow -> .../dist/cli/burrow.mjs */
  for (int i = 0; i < 2; i++) {
    char *slash = strrchr(self, '/');
    if (!slash) return NULL;
    *slash = 0;
  }
  char *out = malloc(strlen(self) + sizeof "/cli/burrow.mjs");
  if (!out) die_oom();
  sprintf(out, "%s/cli/burrow.mjs", self);
  return out;
}

/* Same rules as shared/paths.ts socketPath(). */
static const char *socket_path(const char *flag) {
  static char path[PATH_MAX];
  const char *env = getenv("BURROW_SOCKET");
  const char *runtime = getenv("XDG_RUNTIME_DIR");
  if (flag) return flag;
  if (env && *env) return env;
  if (runtime && *runtime) snprintf(path, sizeof path, "%s/burrow/agent.sock", runtime);
  else snprintf(path, sizeof path, "/tmp/burrow-%u/agent.sock", (unsigned)getuid());
  return path;
}

/* Same mapping as shared/errors.ts exitCodeFor(). */
static int exit_code_for(mpv_t code) {
  if (str_is(code, "NotFound") || str_is(code, "IoError")) return 1;
  if (str_is(code, "BadArgument")) return 2;
  return 255;
}

static const struct { const char *name; int num; } SIGNALS[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},     {"QUIT", SIGQUIT}, {"ILL", SIGILL},       {"TRAP", SIGTRAP},
    {"ABRT", SIGABRT}, {"BUS", SIGBUS},     {"FPE", SIGFPE},   {"KILL", SIGKILL},     {"USR1", SIGUSR1},
    {"SEGV", SIGSEGV}, {"USR2", SIGUSR2},   {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},     {"TERM", SIGTERM},
    {"CHLD", SIGCHLD}, {"CONT", SIGCONT},   {"STOP", SIGSTOP}, {"TSTP", SIGTSTP},     {"TTIN", SIGTTIN},
    {"TTOU", SIGTTOU}, {"URG", SIGURG},     {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ},     {"VTALRM", SIGVTALRM},
    {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO},     {"SYS", SIGSYS},       {"IOT", SIGABRT},
#ifdef SIGPWR
    {"PWR", SIGPWR},
#endif
#ifdef SIGSTKFLT
    {"STKFLT", SIGSTKFLT},
#endif
#ifdef SIGPOLL
    {"POLL", SIGPOLL},
#endif
};

/* 128+N for a remote death by signal N, like ssh; 255 for a name this system does not know. */
static int signal_exit(mpv_t name) {
  for (size_t i = 0; i < sizeof SIGNALS / sizeof SIGNALS[0]; i++)
    if (str_is(name, SIGNALS[i].name)) return 128 + SIGNALS[i].num;
  return 255;
}

/* Write everything; 0, or -1 with errno when the fd failed. */
static int write_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w > 0) { p += w; n -= (size_t)w; continue; }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) { /* a non-blocking fd inherited from our parent */
      struct pollfd pf = {fd, POLLOUT, 0};
      poll(&pf, 1, -1);
      continue;
    }
    if (w < 0 && errno == EPIPE) {
      /* Our reader went away: end as any filter does, killed by SIGPIPE (141 to a shell). */
      sigset_t set;
      sigemptyset(&set);
      sigaddset(&set, SIGPIPE);
      sigprocmask(SIG_UNBLOCK, &set, NULL);
      raise(SIGPIPE);
      _exit(128 + SIGPIPE);
    }
    return -1;
  }
  return 0;
}

static int fail(const char *code, const char *fmt, const char *arg) {
  fprintf(stderr, "burrow: %s: ", code);
  fprintf(stderr, fmt, arg);
  fputc('\n', stderr);
  return 255;
}

static int g_sigpipe[2] = {-1, -1};

/* The first ^C goes to the remote command; a second one ends us here, for a remote that ignores it
 * or a daemon that has stopped reading. TERM and HUP end us at once, like ssh: our socket closes,
 * the daemon closes the channel and the host hangs up the remote command. */
static volatile sig_atomic_t g_signals_seen;

static void on_signal(int sig) {
  if (sig != SIGINT || g_signals_seen++ > 0) {
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  int saved = errno;
  uint8_t b = (uint8_t)sig;
  (void)!write(g_sigpipe[1], &b, 1);
  errno = saved;
}

static const char *signal_name(int sig) {
  for (size_t i = 0; i < sizeof SIGNALS / sizeof SIGNALS[0]; i++)
    if (SIGNALS[i].num == sig) return SIGNALS[i].name;
  return "TERM";
}

/* ---- the session ---- */

enum { OP_EXEC, OP_PROXY };

static void encode_hello(buf_t *out) {
  size_t at = frame_begin(out);
  mp_map(out, 2);
  mp_str(out, "t");
  mp_str(out, "hello");
  mp_str(out, "v");
  mp_uint(out, BURROW_PROTOCOL_VERSION);
  frame_end(out, at);
}

static void encode_request(buf_t *out, int op, const char *target, const char *command) {
  size_t at = frame_begin(out);
  if (op == OP_PROXY) {
    mp_map(out, 2);
    mp_str(out, "t");
    mp_str(out, "proxy");
    mp_str(out, "target");
    mp_str(out, target);
  } else {
    /* The same locale variables the Node CLI passes (cli/commands/session.ts). */
    static const char *const LOCALE[] = {"LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES"};
    uint32_t nenv = 0;
    for (size_t i = 0; i < 4; i++) {
      const char *v = getenv(LOCALE[i]);
      if (v && *v) nenv++;
    }
    mp_map(out, 4);
    mp_str(out, "t");
    mp_str(out, "exec");
    mp_str(out, "target");
    mp_str(out, target);
    mp_str(out, "command");
    mp_str(out, command);
    mp_str(out, "env");
    mp_map(out, nenv);
    for (size_t i = 0; i < 4; i++) {
      const char *v = getenv(LOCALE[i]);
      if (v && *v) {
        mp_str(out, LOCALE[i]);
        mp_str(out, v);
      }
    }
  }
  frame_end(out, at);
}

static void encode_simple(buf_t *out, const char *t, const char *key, const char *val) {
  size_t at = frame_begin(out);
  mp_map(out, key ? 2 : 1);
  mp_str(out, "t");
  mp_str(out, t);
  if (key) {
    mp_str(out, key);
    mp_str(out, val);
  }
  frame_end(out, at);
}

/* Read one whole frame (only the hello reply) within timeout_ms. Returns its length, -1 when the
 * daemon closed or sent garbage, -2 on timeout. */
static ssize_t read_frame_blocking(int fd, buf_t *in, int timeout_ms) {
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    size_t have = in->len - in->off;
    if (have >= 4) {
      const uint8_t *p = in->p + in->off;
      size_t len = ((size_t)p[0] << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
      if (len > BURROW_MAX_FRAME) return -1;
      if (have >= 4 + len) return (ssize_t)len;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long left = timeout_ms - ((now.tv_sec - t0.tv_sec) * 1000L + (now.tv_nsec - t0.tv_nsec) / 1000000L);
    struct pollfd pf = {fd, POLLIN, 0};
    if (left <= 0 || poll(&pf, 1, (int)left) == 0) return -2;
    buf_reserve(in, 65536);
    ssize_t r = read(fd, in->p + in->len, in->cap - in->len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    in->len += (size_t)r;
  }
}

static int run(int op, const char *sock_path, const char *target, const char *command, int autostart) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(sock_path) >= sizeof addr.sun_path) fallback(); /* the Node CLI explains */
  strcpy(addr.sun_path, sock_path);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  /* A wedged daemon with a full accept queue: connect and the first send give up after 5 s. */
  struct timeval tv = {5, 0};
  if (s >= 0) setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) fallback(); /* autostart lives there */

  buf_t out = {0}, in = {0};
  /* The request goes only after the daemon's hello, as from the Node client: until then nothing has
   * started, so handing over to the Node CLI can never run a command twice. */
  encode_hello(&out);
  if (send(s, out.p, out.len, MSG_NOSIGNAL) != (ssize_t)out.len) fallback();
  out.len = 0;

  ssize_t hl = read_frame_blocking(s, &in, 5000); /* the Node client's hello timeout */
  if (hl == -2 && autostart) {
    close(s);
    fallback(); /* the Node CLI starts a daemon in place of one that does not answer */
  }
  if (hl == -2) {
    fprintf(stderr, "burrow: DaemonUnavailable: daemon at %s did not answer within 5000 ms\n", sock_path);
    return 255;
  }
  frame_t f;
  if (hl < 0 || parse_frame(in.p + in.off + 4, (size_t)hl, &f) < 0 || !str_is(f.t, "hello") || f.v.type != MP_INT ||
      f.v.i != BURROW_PROTOCOL_VERSION) {
    close(s);
    fallback(); /* version trouble or a daemon going away: the Node CLI reports it */
  }
  in.off += 4 + (size_t)hl;
  encode_request(&out, op, target, command);

  if (pipe2(g_sigpipe, O_CLOEXEC | O_NONBLOCK) < 0) return fail("Internal", "pipe: %s", strerror(errno));
  if (op == OP_EXEC) {
    /* Without a PTY, ^C here would only kill us: pass it on so the remote command decides. */
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
  }
  fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);

  int stdin_open = 1;
  static uint8_t chunk[BURROW_MAX_CHUNK];
  for (;;) {
    /* Every whole frame held (the hello read may have taken more): output is written before more
     * is read, which holds the daemon. */
    while (in.len - in.off >= 4) {
      const uint8_t *p = in.p + in.off;
      size_t len = ((size_t)p[0] << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
      if (len > BURROW_MAX_FRAME) return fail("Internal", "%s", "daemon sent a bad frame: over the size limit");
      if (in.len - in.off < 4 + len) break;
      if (parse_frame(p + 4, len, &f) < 0) return fail("Internal", "%s", "daemon sent a bad frame: undecodable");
      in.off += 4 + len;
      if (str_is(f.t, "stdout") || str_is(f.t, "stderr")) {
        if (f.data.type != MP_BIN && f.data.type != MP_STR) return fail("Internal", "%s", "daemon sent a bad frame: data");
        int fd = str_is(f.t, "stdout") ? 1 : 2;
        if (write_all(fd, f.data.s, f.data.n) < 0 && fd == 1) {
          fprintf(stderr, "burrow: IoError: cannot write stdout: %s\n", strerror(errno));
          return 1; /* exitCodeFor(IoError) */
        }
      } else if (str_is(f.t, "exit")) {
        if (op == OP_PROXY) return 0;
        if (f.signal.type == MP_STR) return signal_exit(f.signal);
        return f.code.type == MP_INT ? (int)(f.code.i & 0xff) : 255;
      } else if (str_is(f.t, "error")) {
        fprintf(stderr, "burrow: %.*s: %.*s\n", (int)f.code.n, f.code.type == MP_STR ? (const char *)f.code.s : "",
                (int)f.message.n, f.message.type == MP_STR ? (const char *)f.message.s : "");
        return f.code.type == MP_STR ? exit_code_for(f.code) : 255;
      } else {
        fprintf(stderr, "burrow: UnexpectedFrame: daemon sent %.*s during a session\n", (int)f.t.n, (const char *)f.t.s);
        return 255;
      }
    }
    if (in.off == in.len) in.off = in.len = 0;
    /* stdin is read only when the last frame has gone out: the socket's buffer is our window. */
    int want_stdin = stdin_open && out.len == out.off;
    struct pollfd pf[3] = {
        {s, (short)(POLLIN | (out.len > out.off ? POLLOUT : 0)), 0},
        {want_stdin ? 0 : -1, POLLIN, 0},
        {g_sigpipe[0], POLLIN, 0},
    };
    if (poll(pf, 3, -1) < 0) {
      if (errno == EINTR) continue;
      return fail("Internal", "poll: %s", strerror(errno));
    }
    if (pf[2].revents & POLLIN) {
      uint8_t sig;
      /* A daemon that stopped reading gets no flood: while 64 KiB wait unsent, more signals are dropped. */
      while (read(g_sigpipe[0], &sig, 1) == 1)
        if (out.len - out.off < 65536) encode_simple(&out, "signal", "name", signal_name(sig));
    }
    if (pf[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t r = read(0, chunk, sizeof chunk);
      if (r > 0) {
        size_t at = frame_begin(&out);
        mp_map(&out, 2);
        mp_str(&out, "t");
        mp_str(&out, "stdin");
        mp_str(&out, "data");
        mp_bin(&out, chunk, (size_t)r);
        frame_end(&out, at);
      } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        stdin_open = 0;
        encode_simple(&out, "eof", NULL, NULL);
      }
    }
    if (out.len > out.off) {
      ssize_t w = send(s, out.p + out.off, out.len - out.off, MSG_NOSIGNAL);
      if (w > 0) out.off += (size_t)w;
      else if (w < 0 && errno != EAGAIN && errno != EINTR) out.off = out.len; /* the read side reports the loss */
      if (out.off == out.len) out.off = out.len = 0;
    }
    if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      buf_compact(&in);
      buf_reserve(&in, 65536);
      ssize_t r = read(s, in.p + in.len, in.cap - in.len);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
        return fail("Disconnected", "%s", "the daemon closed the session");
      if (r > 0) in.len += (size_t)r;
    }
  }
}

int main(int argc, char **argv) {
  /* A closed stdin, stdout or stderr would hand its number to the daemon socket, and frames would
   * then be read as stdin or written as output: hold them with /dev/null, as Node does. */
  for (int fd = 0; fd <= 2; fd++)
    if (fcntl(fd, F_GETFD) < 0 && errno == EBADF && open("/dev/null", O_RDWR) != fd) return 255;
  g_argv = argv;
  g_node_cli = node_cli_path();
  signal(SIGPIPE, SIG_DFL); /* a parent that ignored SIGPIPE must not change how we end */
  const char *sock_flag = NULL;
  const char *no_autostart = getenv("BURROW_NO_AUTOSTART");
  int autostart = !(no_autostart && !strcmp(no_autostart, "1")), i = 1;
  for (; i < argc; i++) {
    if (!strcmp(argv[i], "--socket") && i + 1 < argc) sock_flag = argv[++i];
    else if (!strcmp(argv[i], "--state") && i + 1 < argc) i++;
    else if (!strcmp(argv[i], "--no-autostart")) autostart = 0;
    else break;
  }
  if (i >= argc) fallback();
  const char *cmd = argv[i++];
  const char *target = i < argc ? argv[i++] : NULL;
  if (!target || target[0] == '-') fallback();

  if (!strcmp(cmd, "proxy")) {
    if (i != argc) fallback();
    return run(OP_PROXY, socket_path(sock_flag), target, NULL, autostart);
  }
  if (strcmp(cmd, "exec") != 0) fallback();
  if (i < argc && !strcmp(argv[i], "--")) i++;
  if (i >= argc) fallback();
  /* The words joined by spaces, as the Node CLI and ssh do. */
  size_t n = 0;
  for (int k = i; k < argc; k++) n += strlen(argv[k]) + 1;
  if (n - 1 > BURROW_MAX_COMMAND) fallback(); /* the Node CLI refuses it with a BadArgument */
  char *command = malloc(n), *at = command;
  if (!command) die_oom();
  for (int k = i; k < argc; k++) {
    size_t len = strlen(argv[k]);
    memcpy(at, argv[k], len);
    at += len;
    *at++ = k + 1 < argc ? ' ' : 0;
  }
  return run(OP_EXEC, socket_path(sock_flag), target, command, autostart);
}
