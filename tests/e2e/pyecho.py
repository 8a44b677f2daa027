"""An app the visor launches in the tests: speaks the seed protocol on the
channel it inherits and echoes every Send back on its loop, prefixed with
"echo:"."""
import base64
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seedapp import SEND, SeedApp  # noqa: E402

app = SeedApp(None, os.environ.get("HOPWIRE_APP_NAME", "pyecho"))
assert app.init[0], app.init
print("pyecho: up, port", os.environ.get("HOPWIRE_APP_PORT"), flush=True)
app.s.settimeout(None)
while True:
    try:
        body = app.wait_event(SEND, timeout=3600)
    except EOFError:
        sys.exit(0)
    addr = body["addr"]
    data = base64.b64decode(body["payload"])
    app.write(addr["port"], addr["remote"]["pk"], addr["remote"]["port"],
              b"echo:" + data)
