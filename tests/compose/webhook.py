"""A webhook receiver for the compose test: keeps every Alertmanager notification in memory.

    POST /alerts   a notification (Alertmanager's webhook JSON)
    GET  /alerts   every notification received so far, as a JSON list

Runs in the stand-in Python image on the compose network (standard library only).
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RECEIVED = []


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            RECEIVED.append(json.loads(body))
        except ValueError:
            self.send_error(400, "expected JSON")
            return
        note = RECEIVED[-1]
        print(f"notification: {note.get('status')} {note.get('groupLabels')}", flush=True)
        self.send_response(200)
        self.end_headers()

    def do_GET(self):
        payload = json.dumps(RECEIVED).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1]) if len(sys.argv) > 1 else 8080), Handler).serve_forever()
