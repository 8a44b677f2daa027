"""A third-party app written from the seed document alone (002_*): the
frame `length u16 | type u8 | message id u8 | JSON body`, JSON bodies,
Send payloads in base64. It does not use our SDK or its loop-fd
extension, so it checks that the plain protocol works against the visor."""
import base64
import json
import socket
import struct
import time

INIT, CREATE_LOOP, CONFIRM_LOOP, SEND, CLOSE = 0x00, 0x01, 0x02, 0x03, 0x04
FAILURE, SUCCESS = 0xfe, 0xff


class SeedApp:
    def __init__(self, path, name, port=None, version="0.0.1"):
        """path: the visor's app socket, or None for the channel a visor
        that launched us handed down (HOPWIRE_APP_FD)."""
        if path is None:
            import os
            self.s = socket.socket(fileno=int(os.environ["HOPWIRE_APP_FD"]))
        else:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.s.connect(path)
        self.s.settimeout(20)
        self.buf = b""
        self.next_id = 0
        self.events = []  # requests from the visor: (type, id, body)
        body = {"app-name": name, "app-version": "1.0",
                "protocol-version": version}
        if port is not None:
            body["port"] = port
        self.init = self.call(INIT, body)

    # -- framing --
    def send_frame(self, ftype, fid, body=None):
        raw = b"" if body is None else json.dumps(body).encode()
        self.s.sendall(struct.pack(">HBB", 2 + len(raw), ftype, fid) + raw)

    def read_frame(self, timeout=20):
        deadline = time.time() + timeout
        while True:
            if len(self.buf) >= 2:
                n = struct.unpack(">H", self.buf[:2])[0]
                if len(self.buf) >= 2 + n:
                    ftype, fid = self.buf[2], self.buf[3]
                    raw = self.buf[4:2 + n]
                    self.buf = self.buf[2 + n:]
                    return ftype, fid, json.loads(raw) if raw else None
            self.s.settimeout(max(0.01, deadline - time.time()))
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("the visor closed the channel")
            self.buf += chunk

    def call(self, ftype, body):
        """Sends a request and returns (ok, body) of its response; requests
        from the visor that arrive meanwhile are answered and kept."""
        fid = self.next_id
        self.next_id = (self.next_id + 1) % 256
        self.send_frame(ftype, fid, body)
        while True:
            t, i, b = self.read_frame()
            if t in (SUCCESS, FAILURE) and i == fid:
                return t == SUCCESS, b
            self.handle(t, i, b)

    def handle(self, t, i, b):
        if t in (CONFIRM_LOOP, SEND, CLOSE):
            self.send_frame(SUCCESS, i)
            self.events.append((t, b))

    def wait_event(self, ftype, timeout=20):
        deadline = time.time() + timeout
        while True:
            for k, (t, b) in enumerate(self.events):
                if t == ftype:
                    del self.events[k]
                    return b
            t, i, b = self.read_frame(max(0.01, deadline - time.time()))
            self.handle(t, i, b)

    # -- the seed's operations --
    def dial(self, pk, port):
        return self.call(CREATE_LOOP, {"pk": pk, "port": port})

    def write(self, local_port, pk, port, data):
        return self.call(SEND, {"addr": {"port": local_port, "remote":
                                         {"pk": pk, "port": port}},
                                "payload": base64.b64encode(data).decode()})

    def read(self, n, timeout=20):
        """Payload bytes from Send requests, until n bytes came."""
        got = b""
        while len(got) < n:
            b = self.wait_event(SEND, timeout)
            got += base64.b64decode(b["payload"])
        return got

    def close_loop(self, local_port, pk, port):
        return self.call(CLOSE, {"port": local_port,
                                 "remote": {"pk": pk, "port": port}})

    def close(self):
        self.s.close()
