"""The sample's front end: serves build/index.html with what `api` answered, by name."""
import os
import socket
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_URL = os.environ.get("API_URL", "http://api:3000/")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            with urllib.request.urlopen(API_URL, timeout=3) as r:
                answer = r.read().decode()
        except OSError as e:
            answer = f"api unreachable: {e}"
        with open("build/index.html") as f:
            page = f.read().replace("@API@", answer)
        body = page.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print(f"web: {self.command} {self.path} -> api", flush=True)


print(f"web: listening on :3000 as {socket.gethostname()}, api at {API_URL}", flush=True)
ThreadingHTTPServer(("0.0.0.0", 3000), Handler).serve_forever()
