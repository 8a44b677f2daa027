/* libhopwire-app: the SDK that Hopwire apps link (docs/app-protocol.md,
 * example in docs/app-sdk.md).
 *
 * An app talks to its visor over one channel (a UNIX stream socket):
 * either inherited from the visor that launched it (environment variable
 * HOPWIRE_APP_FD names the descriptor) or connected by hand to the visor's
 * app socket (LOCAL_DIR/apps.sock, or HOPWIRE_APP_SOCKET). Over the
 * channel it speaks the app protocol; the SDK asks for the "loop-fd"
 * extension, so every loop (a connection to an app on another visor) is a
 * plain file descriptor of its own: read, write, poll it, or hand it to
 * any event loop. Closing the descriptor closes the loop; the far end
 * closing shows as end of file. A loop whose route failed for good is
 * not an end of file: hw_app_read and hw_app_write return -ENETRESET
 * and hw_app_loop_error() says why.
 *
 * Functions return 0 or a non-negative value on success and a negative
 * errno value on failure. When the visor refused a request, the failure is
 * -ECONNREFUSED (dial) or -EPERM (setup) and hw_app_last_error() has the
 * visor's reason.
 *
 * One struct hw_app may be used from several threads at once: a thread
 * blocked in hw_app_accept does not hold up hw_app_dial in another. */
#ifndef HOPWIRE_APP_H
#define HOPWIRE_APP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(HW_APP_BUILDING)
#define HW_APP_API __attribute__((visibility("default")))
#else
#define HW_APP_API
#endif

/* Public keys are written as 64 lowercase hex characters. */
#define HW_APP_PK_HEX 64

struct hw_app;

struct hw_app_config {
	const char *name;    /* "app-name" in Init; required */
	const char *version; /* "app-version"; NULL gives "0.0.0" */
	/* The port to listen on when started by hand and not named in the
	 * visor's config; 0: the visor's choice (the config's port for a
	 * launched app or a configured name, otherwise dial only). */
	uint16_t port;
	/* The visor's app socket for an app started by hand; NULL:
	 * HOPWIRE_APP_FD if set, else HOPWIRE_APP_SOCKET. */
	const char *socket_path;
	/* How long setup waits for the visor's answer; 0 gives 5000. */
	int timeout_ms;
};

/* A loop: one bidirectional byte stream with an app on another visor. */
struct hw_app_loop {
	int fd; /* the loop's descriptor; owned by the caller */
	char local_pk[HW_APP_PK_HEX + 1];
	uint16_t local_port;
	char remote_pk[HW_APP_PK_HEX + 1];
	uint16_t remote_port;
};

/* Connects to the visor and performs Init (setup refusal reasons also
 * show in hw_app_last_error). On success *out is the app;
 * free it with hw_app_close. On failure *out is NULL and, when err is not
 * NULL, err holds a sentence saying what went wrong ("HOPWIRE_APP_FD and
 * HOPWIRE_APP_SOCKET are unset: start this app from a visor or name the
 * visor's app socket"; "visor refused: port 1 belongs to app 'chat'"). */
HW_APP_API int hw_app_setup(struct hw_app **out,
			    const struct hw_app_config *cfg, char *err,
			    size_t errlen);

/* Closes the channel (the visor closes the app's loops that are still
 * open; descriptors already handed out stay the caller's to close) and
 * frees app. Accepts NULL. */
HW_APP_API void hw_app_close(struct hw_app *app);

/* The port the visor gave this app (0 when it may only dial). */
HW_APP_API uint16_t hw_app_port(const struct hw_app *app);

/* This visor's public key, as 64 hex characters. */
HW_APP_API const char *hw_app_local_pk(const struct hw_app *app);

/* A descriptor that becomes readable when hw_app_accept may have a loop
 * to return (also one that another thread's call took off the channel)
 * or the visor closed the channel: poll it (POLLIN), then call
 * hw_app_accept with timeout 0 (-EAGAIN: nothing yet). Do not read from
 * it. */
HW_APP_API int hw_app_fd(const struct hw_app *app);

/* Waits up to timeout_ms (-1: no limit, 0: do not wait) for a loop that
 * an app on another visor opened to this app's port, and fills *loop.
 * Returns 0, -EAGAIN when none arrived in time, -EPIPE when the visor
 * closed the channel. */
HW_APP_API int hw_app_accept(struct hw_app *app, struct hw_app_loop *loop,
			     int timeout_ms);

/* Opens a loop to port on the visor with public key pk (hex) and fills
 * *loop. Waits up to timeout_ms (-1: no limit; 0 gives 10000). Returns 0,
 * -EINVAL for a malformed key or port 0, -ECONNREFUSED with the visor's
 * reason in hw_app_last_error ("no route to ...", "nothing listens on port
 * 7 at ..."), -ETIMEDOUT, -EPIPE when the visor closed the channel. */
HW_APP_API int hw_app_dial(struct hw_app *app, const char *pk, uint16_t port,
			   struct hw_app_loop *loop, int timeout_ms);

/* The visor's reason for the calling thread's last refused request (""
 * when none); valid until that thread's next request. */
HW_APP_API const char *hw_app_last_error(const struct hw_app *app);

/* Convenience wrappers over read(2) and write(2) on a loop's descriptor:
 * retry on EINTR; hw_app_write writes all len bytes (blocking descriptors)
 * or as many as the descriptor takes (non-blocking). Return the byte count
 * (0 from hw_app_read: the loop ended in order, the far end closed it) or
 * a negative errno value; -ENETRESET (which a UNIX socket never gives)
 * means the loop's route failed for good or the visor went away before
 * the loop ended: hw_app_loop_error(fd) has the reason. At a loop's end
 * they take what the channel holds without waiting, to learn how it
 * ended. */
HW_APP_API ssize_t hw_app_read(int fd, void *buf, size_t len);
HW_APP_API ssize_t hw_app_write(int fd, const void *buf, size_t len);

/* Why the loop of descriptor fd failed ("route failed: Connection timed
 * out"), or NULL when it has not failed (still open, ended in order, or
 * not a loop the SDK handed out). Works after plain read(2) saw end of
 * file too. The text is the calling thread's copy, valid until its next
 * call; the reason is known until hw_app_loop_close(fd) or hw_app_close
 * of the loop's app (a loop closed with close(2) is forgotten once its
 * number is reused). Must not race with hw_app_close of that app. */
HW_APP_API const char *hw_app_loop_error(int fd);

/* Closes a loop: same as close(fd), and forgets the loop's reason.
 * Returns 0 or a negative errno. */
HW_APP_API int hw_app_loop_close(int fd);

/* Streams over one loop (docs/app-sdk.md "Streams over one loop", framing
 * in docs/app-protocol.md): a mux carries many independent byte streams
 * over one loop, each with its own flow control, so a stream whose reader
 * stalls stops only itself. Each stream is a descriptor of its own (a
 * UNIX stream socket, blocking, close-on-exec): read, write, poll, close
 * it like a loop; shutdown(fd, SHUT_WR) ends what you send (the far end
 * reads end of file) and still lets you read. A stream the far end reset
 * reads end of file (ECONNRESET when you left bytes unread).
 *
 * When the mux ends (the loop failed or ended, the far end broke the
 * framing, or hw_app_mux_free), every stream descriptor reads end of file
 * after what was delivered, hw_app_mux_open and hw_app_mux_accept return
 * -EPIPE and hw_app_mux_error says why. */
struct hw_app_mux;

/* Takes over loop_fd (the mux closes it) and starts the mux's thread.
 * The two ends of a loop pass different initiator values (the dialer 1,
 * the acceptor 0). Returns 0 with *out set, -EINVAL, -ENOMEM or another
 * negative errno; on failure loop_fd stays the caller's. */
HW_APP_API int hw_app_mux_new(struct hw_app_mux **out, int loop_fd,
			      int initiator);

/* Opens a stream and sets *fd (the caller's to close). No round trip: write
 * at once, the far end learns of the stream from its first frame. Returns
 * 0, -EMFILE when 4096 streams are open, -EPIPE when the mux ended. */
HW_APP_API int hw_app_mux_open(struct hw_app_mux *mux, int *fd);

/* Waits up to timeout_ms (-1: no limit, 0: do not wait) for a stream the
 * far end opened and sets *fd. Returns 0, -EAGAIN when none came in time,
 * -EPIPE when the mux ended (after the streams already waiting). Up to 512 streams wait for accept; more are
 * refused (the far end's stream is reset). */
HW_APP_API int hw_app_mux_accept(struct hw_app_mux *mux, int *fd,
				 int timeout_ms);

/* A descriptor readable while hw_app_mux_accept has a stream (or the mux
 * ended): poll it (POLLIN), then accept with timeout 0. Do not read it. */
HW_APP_API int hw_app_mux_fd(const struct hw_app_mux *mux);

/* Why the mux ended ("the loop failed: route failed: ...", "the peer
 * broke the stream framing: DATA on stream 3 beyond credit", "the far end
 * closed the loop"), or NULL while it runs. Valid until hw_app_mux_free. */
HW_APP_API const char *hw_app_mux_error(struct hw_app_mux *mux);

/* Hands the bytes of stream fd over to sock (a connected stream socket,
 * e.g. TCP): from now on the mux itself moves what the far end sends on
 * the stream to sock and what sock gives to the far end, with the
 * stream's credit, until both directions ended (sock's end of file is
 * the stream's FIN, the far end's FIN a shutdown(SHUT_WR) of sock), then
 * closes sock; a stream that is reset or whose mux ends first resets
 * sock instead (SO_LINGER 0: a TCP peer sees a reset, not an end of
 * file). What the stream had delivered to fd and the caller did
 * not read goes to sock first; what the caller wrote to fd goes out
 * first. No thread of the caller relays, and no byte is copied through
 * fd again. Call it while no other thread uses fd, before shutting fd
 * down. fd is closed in every case (except fd < 0); sock is the mux's
 * on success and stays the caller's on failure. Returns 0, -EINVAL (fd
 * was shut down or the stream ended), -ENOENT (fd is not a stream of
 * mux), -EPIPE (the mux ended), -ENOMEM (the stream was reset) or
 * another negative errno.
 *
 * watch (NULL: none) follows the relayed stream: sent and received are
 * its DATA bytes each way since it opened, kept up to date (read them with
 * __atomic_load_n(&w->sent, __ATOMIC_RELAXED)), and calls done(watch)
 * from its thread once the stream has ended and sock is closed (never
 * when the relay failed). watch must stay valid until then; done must not
 * call the mux. */
struct hw_app_mux_watch {
	void (*done)(struct hw_app_mux_watch *w);
	unsigned long long sent, received;
};
HW_APP_API int hw_app_mux_relay(struct hw_app_mux *mux, int fd, int sock,
				struct hw_app_mux_watch *watch);

/* What a mux moved so far: DATA bytes sent and received over all its
 * streams, and the streams open now (relayed ones included). */
struct hw_app_mux_stats {
	unsigned long long sent, received;
	unsigned streams;
};

HW_APP_API void hw_app_mux_stats(struct hw_app_mux *mux,
				 struct hw_app_mux_stats *st);

/* Ends every stream (their descriptors read end of file), closes the loop,
 * stops the thread and frees mux. Stream descriptors already handed out
 * stay the caller's to close. Accepts NULL. */
HW_APP_API void hw_app_mux_free(struct hw_app_mux *mux);

#ifdef __cplusplus
}
#endif

#endif
