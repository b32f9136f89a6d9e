"""The sample's API: answers with its replica's hostname; /health for the probe."""
import hashlib
import json
import os
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = os.environ.get("API_TOKEN", "")
# Printed on purpose: landscape redacts resolved secrets, so the log shows [redacted].
print(f"api: starting with token {TOKEN}", flush=True)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            body = b"ok"
        else:
            body = json.dumps({
                "replica": socket.gethostname(),
                "token_sha256": hashlib.sha256(TOKEN.encode()).hexdigest()[:12],
            }).encode()
        self.send_response(200 if TOKEN else 500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        if self.path != "/health":
            print(f"api: {self.command} {self.path}", flush=True)


ThreadingHTTPServer(("0.0.0.0", 3000), Handler).serve_forever()
