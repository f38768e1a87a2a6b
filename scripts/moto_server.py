"""moto in server mode, made fit for mailconfirm's local stack and tests.

Two additions to stock `moto_server`, neither of which changes what moto answers:
- Requests are served one at a time. Stock moto serves them on threads and its conditional
  writes are then not atomic (2 of 50 concurrent claims can succeed); real DynamoDB lets
  exactly one through, and the cooldown tests rely on that.
- A tap records every SES v2 SendEmail that moto accepted, with both its text and HTML part
  (moto's own store keeps only the HTML), at GET /_mailconfirm/outbox.
"""

import argparse
import io
import json
import threading
import time

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

SEND_EMAIL_PATH = "/v2/email/outbound-emails"
OUTBOX_PATH = "/_mailconfirm/outbox"


class MailconfirmMoto:
    def __init__(self):
        self.moto = DomainDispatcherApplication(create_backend_app)
        self.lock = threading.Lock()
        self.outbox = []

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == OUTBOX_PATH:
            return self.serve_outbox(method, start_response)
        body = b""
        if method == "POST" and path == SEND_EMAIL_PATH:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
        status_holder = {}

        def capture(status, headers, exc_info=None):
            status_holder["status"] = status
            return start_response(status, headers, exc_info)

        with self.lock:
            response = b"".join(self.moto(environ, capture))
            if body and status_holder.get("status", "").startswith("200"):
                self.record(body, response)
            if path == "/moto-api/reset" and method == "POST":
                self.outbox.clear()
        return [response]

    def record(self, body, response):
        request = json.loads(body)
        simple = request.get("Content", {}).get("Simple", {})
        parts = simple.get("Body", {})
        destination = request.get("Destination", {})
        self.outbox.append(
            {
                "message_id": json.loads(response).get("MessageId"),
                "from": request.get("FromEmailAddress"),
                "to": destination.get("ToAddresses", []),
                "subject": simple.get("Subject", {}).get("Data"),
                "text": parts.get("Text", {}).get("Data"),
                "html": parts.get("Html", {}).get("Data"),
                "configuration_set": request.get("ConfigurationSetName"),
                "sent_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )

    def serve_outbox(self, method, start_response):
        with self.lock:
            if method == "DELETE":
                self.outbox.clear()
            payload = json.dumps({"messages": self.outbox}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
        return [payload]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    run_simple(args.host, args.port, MailconfirmMoto(), threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
