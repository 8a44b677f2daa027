/* hopwire-chat: what the files of the chat app share.
 *
 *   main.c   arguments, signals, start and orderly stop
 *   store.c  the history (SQLite), thread-safe, with a wait for new rows
 *   net.c    the chat protocol over loops (documented at its top and in
 *            docs/chat.md): accepting, dialing, reading, sending
 *   line.c   the parser of one chat line from a peer
 *   http.c   the web interface and JSON API (libmicrohttpd)
 *   page.c   the single HTML page served at /
 *
 * Threads: the main thread runs hw_chat_net_run (accepts and reads loops);
 * libmicrohttpd runs one thread per HTTP connection, which call
 * hw_chat_net_send and the store. The SDK is thread-safe; net and store
 * lock their own state. */
#ifndef HW_CHAT_H
#define HW_CHAT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include <hopwire/app.h>

#define HW_CHAT_VERSION "0.1.0"
#define HW_CHAT_PORT 1
/* Longest message text, in bytes of UTF-8. */
#define HW_CHAT_TEXT_MAX 4096
/* Longest line on a loop, '\n' included: a text of HW_CHAT_TEXT_MAX
 * bytes escaped by JSON at worst (\u00XX for every byte) plus the
 * wrapper fits. */
#define HW_CHAT_LINE_MAX 32768
/* Largest HTTP request body accepted (413 beyond). */
#define HW_CHAT_BODY_MAX (16 * 1024)

/* Logs one line to stderr ("hopwire-chat: ..."), which the visor keeps in
 * the app's log file. */
void hw_chat_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Milliseconds of the wall clock (for time_ms) and of a monotonic clock
 * (for timeouts). */
int64_t hw_chat_now_ms(void);
int64_t hw_chat_mono_ms(void);

/* Whether s is a public key (64 hex characters, either case); when it is
 * and out is not NULL, out receives it in lower case (65 bytes). */
int hw_chat_pk_ok(const char *s, char *out);

/* --- line.c ------------------------------------------------------------ */

/* Parses one chat line from a peer (n bytes, without its '\n'). Returns 0
 * with *text the message (1..HW_CHAT_TEXT_MAX bytes, valid while *root,
 * which the caller frees), or 0 with both NULL for a blank line; -1 with
 * why naming what is wrong. */
int hw_chat_line_parse(const char *line, size_t n, json_t **root,
		       const char **text, char *why, size_t whylen);

/* --- store.c ----------------------------------------------------------- */

struct hw_chat_store;

/* Opens (creating when missing) the history at path, in WAL mode, and
 * brings its schema to the current version. Returns 0 and *out, or a
 * negative errno with a sentence in err. */
int hw_chat_store_open(struct hw_chat_store **out, const char *path,
		       char *err, size_t errlen);

/* Closes the database and frees st. Accepts NULL. No other thread may use
 * st any more. */
void hw_chat_store_close(struct hw_chat_store *st);

/* Appends a message (direction "in" or "out") and wakes the waiters.
 * Returns 0 with *id set, or -EIO with the reason in err. */
int hw_chat_store_add(struct hw_chat_store *st, const char *peer,
		      const char *direction, const char *text,
		      int64_t time_ms, int64_t *id, char *err, size_t errlen);

/* A new JSON array of messages {id, peer, direction, text, time_ms},
 * oldest first: with after >= 0 the first limit messages whose id is
 * above after, otherwise the last limit messages; only those of peer when
 * peer is not NULL. NULL when out of memory or on a database error. */
json_t *hw_chat_store_messages(struct hw_chat_store *st, const char *peer,
			       int64_t after, int limit);

/* A new JSON array of peers {pk, last_time_ms, count}, most recent
 * first; NULL on failure. */
json_t *hw_chat_store_peers(struct hw_chat_store *st);

/* The highest message id (0 when the history is empty). */
int64_t hw_chat_store_last_id(struct hw_chat_store *st);

/* Waits up to timeout_ms for a message with an id above after. Returns 1
 * when there is one, 0 on timeout, -ECANCELED once
 * hw_chat_store_cancel_waits was called. */
int hw_chat_store_wait(struct hw_chat_store *st, int64_t after,
		       int64_t timeout_ms);

/* Makes every present and future hw_chat_store_wait return -ECANCELED
 * (the app is stopping). */
void hw_chat_store_cancel_waits(struct hw_chat_store *st);

/* --- net.c ------------------------------------------------------------- */

struct hw_chat_net;

/* The chat protocol over app's loops, storing messages in st. app and st
 * must outlive the returned object. Returns 0 and *out or -ENOMEM /
 * -errno. */
int hw_chat_net_new(struct hw_chat_net **out, struct hw_app *app,
		    struct hw_chat_store *st);

/* Closes every loop and frees net. Accepts NULL. No thread may be inside
 * hw_chat_net_send or hw_chat_net_run any more. */
void hw_chat_net_free(struct hw_chat_net *net);

#define HW_CHAT_RUN_STOPPED 0 /* stop_fd became readable */
#define HW_CHAT_RUN_CLOSED 1  /* the visor closed the app channel */

/* The main thread's loop: accepts loops, reads and stores their messages
 * until stop_fd is readable (HW_CHAT_RUN_STOPPED) or the visor closes the
 * channel (HW_CHAT_RUN_CLOSED). A negative errno on a fatal error. */
int hw_chat_net_run(struct hw_chat_net *net, int stop_fd);

/* Makes senders waiting for a loop or a write give up (-ESHUTDOWN); any
 * thread. */
void hw_chat_net_stop(struct hw_chat_net *net);

/* Sends text (1..HW_CHAT_TEXT_MAX bytes of UTF-8) to the chat app of
 * visor pk (lower-case hex) over this app's loop to it, dialing it when
 * there is none and dialing once more when writing fails; once written
 * the message is stored as "out" and *id is its id. Blocks (at most about
 * the dial and write timeouts). Returns 0; -EHOSTUNREACH when the dial or
 * the write failed (err says why, with the visor's reason); -ESHUTDOWN
 * when stopping; -EMFILE when too many loops are open; -EIO when it was
 * sent but could not be stored; -EINVAL / -ENOMEM. Any thread. */
int hw_chat_net_send(struct hw_chat_net *net, const char *pk,
		     const char *text, int64_t *id, char *err, size_t errlen);

/* --- http.c ------------------------------------------------------------ */

struct hw_chat_http;

/* Serves the page and the JSON API on hostport ("127.0.0.1:8001",
 * "[::1]:8001", "localhost:8001"; port 0 picks one) with libmicrohttpd's
 * own threads. net, st and app must outlive the server. Returns 0 and
 * *out, or a negative errno with a sentence in err. */
int hw_chat_http_start(struct hw_chat_http **out, const char *hostport,
		       struct hw_app *app, struct hw_chat_net *net,
		       struct hw_chat_store *st, char *err, size_t errlen);

/* The TCP port the server listens on. */
uint16_t hw_chat_http_port(const struct hw_chat_http *h);

/* Ends the event streams, stops libmicrohttpd (joining its threads; call
 * hw_chat_net_stop first so that pending sends end quickly) and frees h.
 * Accepts NULL. */
void hw_chat_http_stop(struct hw_chat_http *h);

/* --- page.c ------------------------------------------------------------ */

/* The HTML page served at / (NUL-terminated; HTML, CSS and JavaScript,
 * no external resources). */
extern const char hw_chat_page[];

#endif
