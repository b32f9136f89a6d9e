#!/usr/bin/env python3
"""A fake Kubernetes API server for the CLI test of `landscape k8s apply` / `diff`
(scripts/test.d/k8s.sh). Plain HTTP on 127.0.0.1; prints its port on the first line.

Server-side apply (PATCH, application/apply-patch+yaml) stores the object unless
dryRun=All; GET returns it, a Job as Complete and a Deployment as rolled out; every
request is appended to the log file given as the first argument (method, path, content
type, one line each)."""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import urlsplit, parse_qs

objects = {}
log = open(sys.argv[1], "a", buffering=1)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def not_found(self, path):
        self.answer(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                          "code": 404, "reason": "NotFound", "message": f"{path} not found"})

    def do_PATCH(self):
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        ctype = self.headers.get("Content-Type", "")
        log.write(f"PATCH {self.path} {ctype}\n")
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if ctype != "application/apply-patch+yaml" or q.get("fieldManager") != ["landscape"]:
            return self.answer(400, {"kind": "Status", "code": 400, "reason": "BadRequest",
                                     "message": "not a server-side apply by landscape"})
        old = objects.get(url.path)
        gen = (old or {}).get("metadata", {}).get("generation", 0)
        if old is None or old.get("spec") != body.get("spec"):
            gen += 1
        body.setdefault("metadata", {})["generation"] = gen
        if q.get("dryRun") != ["All"]:
            objects[url.path] = body
        self.answer(200, body)

    def do_GET(self):
        path = urlsplit(self.path).path
        log.write(f"GET {self.path}\n")
        obj = objects.get(path)
        if obj is None:
            return self.not_found(path)
        obj = json.loads(json.dumps(obj))
        if "/jobs/" in path:
            obj["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
        elif "/deployments/" in path:
            n = obj.get("spec", {}).get("replicas", 1)
            obj["status"] = {"observedGeneration": obj["metadata"]["generation"], "replicas": n,
                             "updatedReplicas": n, "availableReplicas": n}
        self.answer(200, obj)


server = HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
