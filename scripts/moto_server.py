"""moto in server mode, made fit for mailconfirm's local stack and tests.

Four additions to stock `moto_server`, none of which changes what moto answers:
- Requests are served one at a time. Stock moto serves them on threads and its conditional
  writes are then not atomic (2 of 50 concurrent claims can succeed); real DynamoDB lets
  exactly one through, and the cooldown tests rely on that.
- A tap records every SES v2 SendEmail that moto accepted, with both its text and HTML part
  (moto's own store keeps only the HTML), at GET /_mailconfirm/outbox.
- A transaction backs up only the items it names. moto deep-copies every table a
  TransactWriteItems names before applying it (to roll back a cancelled one), so each
  transaction costs as much as its table is big: a burst of 2,000 sign-ups (4,000 items) slowed
  to ten a second. The items it does not name cannot change, so the backup shares them; the
  table's stream is copied, so a cancelled transaction leaves no record in it (as in DynamoDB).
- A tap records every event EventBridge's PutEvents accepted (moto keeps none unless a rule
  routes it), in publish order, at GET /_mailconfirm/events.
"""

import argparse
import io
import json
import threading
import time

import copy

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

SEND_EMAIL_PATH = "/v2/email/outbound-emails"
OUTBOX_PATH = "/_mailconfirm/outbox"
EVENTS_PATH = "/_mailconfirm/events"
PUT_EVENTS_TARGET = "AWSEvents.PutEvents"


class TransactionBackups:
    """Stands in for the `copy` module inside moto's DynamoDB backend: a table is copied with
    only the named items deep-copied; anything else is deep-copied as before. Requests are
    served one at a time (below), so the names of the running transaction can be held here."""

    def __init__(self):
        self.named = {}

    def deepcopy(self, value, *args, **kwargs):
        if not isinstance(value, Table):
            return copy.deepcopy(value, *args, **kwargs)
        backup = copy.copy(value)
        backup.items = copy.copy(value.items)
        if getattr(value, "stream_shard", None) is not None:
            backup.stream_shard = copy.copy(value.stream_shard)
            backup.stream_shard.items = list(value.stream_shard.items)
        for key in self.named.get(value.name, ()):
            if key in value.items:
                backup.items[key] = copy.deepcopy(value.items[key])
        return backup

    def __getattr__(self, name):
        return getattr(copy, name)

    def install(self):
        original = DynamoDBBackend.transact_write_items
        backups = self

        def transact_write_items(backend, transact_items):
            backups.named = {}
            for item in transact_items:
                for op in item.values():
                    table = backend.tables.get(op.get("TableName"))
                    attributes = op.get("Key") or op.get("Item") or {}
                    if table is not None and table.hash_key_attr in attributes:
                        key = DynamoType(attributes[table.hash_key_attr])
                        backups.named.setdefault(table.name, set()).add(key)
            try:
                return original(backend, transact_items)
            finally:
                backups.named = {}

        DynamoDBBackend.transact_write_items = transact_write_items
        dynamodb_models.copy = self


class MailconfirmMoto:
    def __init__(self):
        self.moto = DomainDispatcherApplication(create_backend_app)
        self.lock = threading.Lock()
        self.outbox = []
        self.events = []

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == OUTBOX_PATH:
            return self.serve_outbox(method, start_response)
        if path == EVENTS_PATH:
            return self.serve_events(method, start_response)
        body = b""
        put_events = environ.get("HTTP_X_AMZ_TARGET") == PUT_EVENTS_TARGET
        if method == "POST" and (path == SEND_EMAIL_PATH or put_events):
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
                if put_events:
                    self.record_events(body, response)
                else:
                    self.record(body, response)
            if path == "/moto-api/reset" and method == "POST":
                self.outbox.clear()
                self.events.clear()
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

    def record_events(self, body, response):
        entries = json.loads(body).get("Entries", [])
        answers = json.loads(response).get("Entries", [])
        for entry, answer in zip(entries, answers):
            if answer.get("ErrorCode") or not answer.get("EventId"):
                continue
            try:
                detail = json.loads(entry.get("Detail") or "{}")
            except ValueError:
                detail = entry.get("Detail")
            self.events.append(
                {
                    "source": entry.get("Source"),
                    "detail-type": entry.get("DetailType"),
                    "detail": detail,
                    "event-bus-name": entry.get("EventBusName") or "default",
                    "id": answer.get("EventId"),
                }
            )

    def serve_events(self, method, start_response):
        with self.lock:
            if method == "DELETE":
                self.events.clear()
            payload = json.dumps({"events": self.events}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
        return [payload]

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
    TransactionBackups().install()
    run_simple(args.host, args.port, MailconfirmMoto(), threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
