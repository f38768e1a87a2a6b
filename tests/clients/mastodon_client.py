"""Calls mailconfirm through Mastodon.py, the PyPI client library of Mastodon, and prints the
outcome as JSON: python mastodon_client.py <base-url> <access-token>
{"ok": true, "value": ...} or {"ok": false, "error": <exception class>, "status": ..., "message": ...}"""

import json
import sys

from mastodon import Mastodon, MastodonAPIError, MastodonError

base_url, access_token = sys.argv[1:3]
# 'throw' so a 429 surfaces instead of the default of sleeping until X-RateLimit-Reset.
client = Mastodon(access_token=access_token, api_base_url=base_url, version_check_mode="none", ratelimit_method="throw")
try:
    outcome = {"ok": True, "value": client.email_resend_confirmation()}
except MastodonAPIError as error:
    _, status, reason, message = (list(error.args) + [None] * 4)[:4]
    outcome = {"ok": False, "error": type(error).__name__, "status": status, "message": message}
except MastodonError as error:
    outcome = {"ok": False, "error": type(error).__name__, "message": str(error)}
print(json.dumps(outcome, default=str))
