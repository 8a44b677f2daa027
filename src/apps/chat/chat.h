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
 * Threads: the main thread runs hw_chat_net_run (accepts, reads and
 * writes every loop); a short-lived thread per dial in progress;
 * libmicrohttpd runs one thread per HTTP connection, which call
 * hw_chat_net_queue and the store. The SDK is thread-safe; net and store
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

/* Longest message id on the wire; hopwire-chat sends 32 lowercase hex
 * characters. */
#define HW_CHAT_ID_MAX 64
/* The ids hopwire-chat makes: 32 lowercase hex characters. */
#define HW_CHAT_ID_LEN 32

#define HW_CHAT_LINE_BLANK 0   /* white space only: ignored */
#define HW_CHAT_LINE_MESSAGE 1 /* {"message": TEXT[, "id": ID]} */
#define HW_CHAT_LINE_ACK 2     /* {"ack": ID} */

/* One line from a peer, as parsed; the strings live in the parser's
 * root. */
struct hw_chat_line {
	int kind;
	const char *text; /* MESSAGE: 1..HW_CHAT_TEXT_MAX bytes of UTF-8 */
	const char *id;   /* MESSAGE: NULL when the sender sent none; ACK */
};

/* Whether s[0..n) is a message id: 1..HW_CHAT_ID_MAX characters from
 * [0-9A-Za-z_-]. */
int hw_chat_id_ok(const char *s, size_t n);

/* Parses one chat line from a peer (n bytes, without its '\n'). Returns 0
 * with *out filled (its strings valid while *root, which the caller
 * frees; both empty for a blank line), or -1 with why naming what is
 * wrong. */
int hw_chat_line_parse(const char *line, size_t n, json_t **root,
		       struct hw_chat_line *out, char *why, size_t whylen);

/* --- store.c ----------------------------------------------------------- */

struct hw_chat_store;

/* Opens (creating when missing) the history at path, in WAL mode, and
 * brings its schema to the current version (migrating a version 1 file).
 * Returns 0 and *out, or a negative errno with a sentence in err. */
int hw_chat_store_open(struct hw_chat_store **out, const char *path,
		       char *err, size_t errlen);

/* Closes the database and frees st. Accepts NULL. No other thread may use
 * st any more. */
void hw_chat_store_close(struct hw_chat_store *st);

/* Stores a message that peer sent, with its id msg_id (NULL: an older
 * sender's, without one), and wakes the waiters. A message with the id of
 * one already stored from peer is not stored again: *dup is then 1.
 * Returns 0 with *id the row (the earlier one for a duplicate), or -EIO
 * with the reason in err. */
int hw_chat_store_add_in(struct hw_chat_store *st, const char *peer,
			 const char *msg_id, const char *text,
			 int64_t time_ms, int64_t *id, int *dup, char *err,
			 size_t errlen);

/* Limits on the outbox, checked by hw_chat_store_add_out. */
#define HW_CHAT_PENDING_PEER_MAX 1000
#define HW_CHAT_PENDING_MAX 10000

/* Queues a message to peer: stored as "out", state "pending", with its
 * protocol id msg_id, failing at expire_ms (wall clock); wakes the
 * waiters. Returns 0 with *id; -EDQUOT when HW_CHAT_PENDING_PEER_MAX
 * messages to peer or HW_CHAT_PENDING_MAX in all are pending (err says
 * which); -EIO with the reason in err. */
int hw_chat_store_add_out(struct hw_chat_store *st, const char *peer,
			  const char *msg_id, const char *text,
			  int64_t time_ms, int64_t expire_ms, int64_t *id,
			  char *err, size_t errlen);

/* Calls fn for the first limit pending messages to peer whose row id is
 * above after, in id order; fn returning non-zero stops. msg_id and text
 * are NULL in a row edited by hand to have none. Returns the number of
 * calls, or -EIO. */
int hw_chat_store_pending(struct hw_chat_store *st, const char *peer,
			  int64_t after, int limit,
			  int (*fn)(void *arg, int64_t id, const char *msg_id,
				    const char *text),
			  void *arg);

/* Calls fn for every peer with pending messages (at most
 * HW_CHAT_PENDING_MAX). Returns the number of calls, or -EIO. */
int hw_chat_store_pending_peers(struct hw_chat_store *st,
				void (*fn)(void *arg, const char *peer),
				void *arg);

/* Marks the outgoing message id delivered (also one that failed
 * meanwhile: it did arrive). Returns 1 when its state changed, 0 when it
 * was delivered already, -EIO. */
int hw_chat_store_delivered(struct hw_chat_store *st, int64_t id);

/* Marks failed every pending message whose expiry is at or before
 * now_ms. Returns how many, or -EIO. */
int hw_chat_store_expire(struct hw_chat_store *st, int64_t now_ms);

/* A new JSON array of messages {id, peer, direction, text, time_ms, and
 * for "out" state}, oldest first: with after >= 0 the first limit
 * messages whose id is above after, otherwise the last limit messages;
 * only those of peer when peer is not NULL. NULL when out of memory or on
 * a database error. */
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

/* The chat protocol over app's loops, storing messages in st; outgoing
 * messages that are still pending fail expire_ms after they were queued.
 * app and st must outlive the returned object. Returns 0 and *out or
 * -ENOMEM / -errno. */
int hw_chat_net_new(struct hw_chat_net **out, struct hw_app *app,
		    struct hw_chat_store *st, int64_t expire_ms);

/* Closes every loop, waits for dials in progress (at most the dial
 * timeout) and frees net. Accepts NULL. No thread may be inside
 * hw_chat_net_queue or hw_chat_net_run any more. */
void hw_chat_net_free(struct hw_chat_net *net);

#define HW_CHAT_RUN_STOPPED 0 /* stop_fd became readable */
#define HW_CHAT_RUN_CLOSED 1  /* the visor closed the app channel */

/* The main thread's loop: accepts loops, reads and stores their messages
 * and acknowledges them, and delivers the pending outgoing ones (dialing,
 * retrying with backoff, expiring) until stop_fd is readable
 * (HW_CHAT_RUN_STOPPED) or the visor closes the channel
 * (HW_CHAT_RUN_CLOSED). A negative errno on a fatal error. */
int hw_chat_net_run(struct hw_chat_net *net, int stop_fd);

/* Makes the main loop stop starting dials; any thread. */
void hw_chat_net_stop(struct hw_chat_net *net);

/* Queues text (1..HW_CHAT_TEXT_MAX bytes of UTF-8) to the chat app of
 * visor pk (lower-case hex): stores it as a pending "out" message with a
 * new random id and wakes the main loop, which delivers it. Returns 0
 * with *id its row; -EDQUOT when too many are pending (err says which);
 * -EIO when it could not be stored; -EINVAL. Any thread. */
int hw_chat_net_queue(struct hw_chat_net *net, const char *pk,
		      const char *text, int64_t *id, char *err,
		      size_t errlen);

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
