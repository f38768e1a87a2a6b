"""Writes infra/events/*.json: one event per function, for `sam local invoke -e` and for the
tests that replay them. Tokens are signed with the local-only keys of tests/src/stack.rs and
`infra/events/env.json`, and expire in 2100 so the files stay valid. Run it again after
changing a route or a key: `python3 infra/events/generate.py`."""

import base64
import hashlib
import hmac
import json
import pathlib

HERE = pathlib.Path(__file__).parent
ACCESS_SECRET = "local-access-token-secret-0123456789abcdef"
LINK_KEY = "local-confirmation-signing-key-0123456789abcdef"
ISSUER = "https://auth.local.test"
AUDIENCE = "mailconfirm"
USER_ID = "user-123"
EMAIL = "ada@example.com"
FAR_FUTURE = 4102444800  # 2100-01-01
ISSUED = 1767225600  # 2026-01-01


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(header: dict, claims: dict, secret: str) -> str:
    signing_input = b64(json.dumps(header, separators=(",", ":")).encode()) + "." + b64(
        json.dumps(claims, separators=(",", ":")).encode()
    )
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(signature)


def access_token(**extra) -> str:
    claims = {"sub": USER_ID, "iss": ISSUER, "aud": AUDIENCE, "iat": ISSUED, "exp": FAR_FUTURE, **extra}
    return jwt({"alg": "HS256", "typ": "JWT"}, claims, ACCESS_SECRET)


def link_token() -> str:
    # Mirrors shared/src/link_token.rs: kid = first 6 bytes of SHA-256(key), adr = tag of the address.
    kid = hashlib.sha256(LINK_KEY.encode()).digest()[:6].hex()
    adr = b64(hashlib.sha256(EMAIL.lower().encode()).digest()[:16])
    claims = {"sub": USER_ID, "adr": adr, "lc": "en", "aud": "mailconfirm:confirm-email", "iat": ISSUED, "exp": FAR_FUTURE}
    return jwt({"typ": "JWT", "alg": "HS256", "kid": kid}, claims, LINK_KEY)


def http_event(
    method: str, path: str, query: dict | None = None, headers: dict | None = None, path_parameters: dict | None = None
) -> dict:
    raw_query = "&".join(f"{k}={v}" for k, v in (query or {}).items())
    event = {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": {"host": "abc123.execute-api.us-east-1.amazonaws.com", "user-agent": "curl/8.5.0", **(headers or {})},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0"},
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "routeKey": f"{method} {path}",
            "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000",
            "timeEpoch": ISSUED * 1000,
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        # API Gateway HTTP APIs hand path parameters over decoded.
        event["pathParameters"] = path_parameters
    return event


def sqs_event(
    command: dict | None = None, message_id: str = "059f36b4-87a3-44ab-83d2-661975830a7d"
) -> dict:
    body = json.dumps(command or {"user_id": USER_ID, "email": EMAIL, "locale": "en", "client_id": "web-app"})
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": str(ISSUED * 1000),
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": str(ISSUED * 1000),
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:SignUpQueue",
                "awsRegion": "us-east-1",
            }
        ]
    }


def user_image(**changes) -> dict:
    image = {
        "pk": {"S": f"USER#{USER_ID}"},
        "kind": {"S": "user"},
        "user_id": {"S": USER_ID},
        "email": {"S": EMAIL},
        "email_normalized": {"S": EMAIL},
        "address_tag": {"S": b64(hashlib.sha256(EMAIL.encode()).digest()[:16])},
        "status": {"S": "EMAIL_CONFIRMATION_PENDING"},
        "locale": {"S": "en"},
        "client_id": {"S": "web-app"},
        "created_at": {"N": str(ISSUED)},
        "updated_at": {"N": str(ISSUED)},
        "last_mail_sent_at": {"N": str(ISSUED)},
    }
    image.update(changes)
    return image


def stream_record(sequence: str, name: str, old: dict | None, new: dict | None, **extra) -> dict:
    change = {
        "ApproximateCreationDateTime": ISSUED + 60,
        "Keys": {"pk": {"S": f"USER#{USER_ID}"}},
        "SequenceNumber": sequence,
        "SizeBytes": 512,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if old is not None:
        change["OldImage"] = old
    if new is not None:
        change["NewImage"] = new
    return {
        "eventID": f"c4ca4238a0b923820dcc509a6f75849{sequence[-1]}",
        "eventName": name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": change,
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/mailconfirm/stream/2026-01-01T00:00:00.000",
        **extra,
    }


def stream_event() -> dict:
    # user-123 confirms with the link, then a pending user's sign-up expires (TTL's removal).
    confirmed = user_image(
        status={"S": "ENABLED"}, confirmed_at={"N": str(ISSUED + 60)}, confirmed_via={"S": "link"}
    )
    return {
        "Records": [
            stream_record("100000000000000000001", "MODIFY", user_image(), confirmed),
            stream_record(
                "100000000000000000002",
                "REMOVE",
                user_image(expires_at={"N": str(ISSUED + 60)}),
                None,
                userIdentity={"type": "Service", "principalId": "dynamodb.amazonaws.com"},
            ),
        ]
    }


def ses_bounce(address: str, bounce_type: str = "Permanent") -> dict:
    return {
        "eventType": "Bounce",
        "bounce": {
            "feedbackId": "0100018c-bounce-feedback",
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {"emailAddress": address, "action": "failed", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}
            ],
            "timestamp": "2026-01-01T00:02:00.000Z",
            "reportingMTA": "dsn; a8-1.smtp-out.amazonses.com",
        },
        "mail": {
            "timestamp": "2026-01-01T00:01:59.000Z",
            "source": "no-reply@mailconfirm.example.com",
            "messageId": "0100018c-message-id",
            "destination": [address],
        },
    }


def sns_event(message: dict) -> dict:
    # What SNS hands a subscribed function: the SES notification as the JSON text of `Message`.
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:MailFeedbackTopic:6f1c4c52-sub",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
                    "TopicArn": "arn:aws:sns:us-east-1:123456789012:MailFeedbackTopic",
                    "Subject": None,
                    "Message": json.dumps(message),
                    "Timestamp": "2026-01-01T00:02:00.000Z",
                    "SignatureVersion": "1",
                    "MessageAttributes": {},
                },
            }
        ]
    }


def main() -> None:
    bearer = {"authorization": f"Bearer {access_token()}"}
    admin_bearer = {"authorization": f"Bearer {access_token(sub='backend-service', roles=['mailconfirm-admin'])}"}
    events = {
        "signup-events.json": sqs_event(),
        # Commands on the same queue (README "Commands on the sign-up queue"): a resend by
        # address, and a move to a new address inside an EventBridge envelope named by its detail-type.
        "signup-events-resend.json": sqs_event(
            {"action": "resend", "email": EMAIL, "locale": "de"}, "1d7a1c3e-2f4b-4e0a-9d61-7a2c5e8b9f10"
        ),
        "signup-events-change-email.json": sqs_event(
            {
                "version": "0",
                "id": "9c4b3a2d-6e5f-4a1b-8c7d-0e9f8a7b6c5d",
                "detail-type": "EmailChangeRequested",
                "source": "app.accounts",
                "account": "123456789012",
                "time": "2026-01-01T00:02:00Z",
                "region": "us-east-1",
                "resources": [],
                "detail": {"user_id": USER_ID, "email": "ada.lovelace@example.com", "locale": "en"},
            },
            "5e2d8f61-0b3a-4c9e-a7d4-3f1b6c8e2a90",
        ),
        "change-events.json": stream_event(),
        "mail-feedback.json": sns_event(ses_bounce(EMAIL)),
        "singularity-send-verification.json": http_event("POST", "/api/auth/email/verification/send", {"locale": "en"}, bearer),
        "singularity-verification-cooldown.json": http_event("GET", "/api/auth/email/verification/cooldown", None, bearer),
        "singularity-verify-email.json": http_event("POST", "/api/auth/email/verification", {"token": link_token()}),
        "confirm-page.json": http_event(
            "GET", "/confirm-email", {"token": link_token()}, {"accept-language": "fr-CA,fr;q=0.9,en;q=0.5"}
        ),
        "backendless-resend-confirmation.json": http_event(
            "POST", f"/api/users/resendconfirmation/{EMAIL}", None, None, {"identity": EMAIL}
        ),
        "tennpay-send-confirmation.json": {
            **http_event(
                "POST",
                "/User/email/send-confirmation",
                None,
                {"authorization": f"Bearer {access_token(sub='123')}", "content-type": "application/json"},
            ),
            "body": json.dumps({"id": 123, "email": "user.name@example.org"}),
        },
        "mastodon-resend-confirmation.json": http_event(
            "POST",
            "/api/v1/emails/confirmations",
            None,
            {"authorization": f"Bearer {access_token(client_id='web-app', scope='read write')}"},
        ),
        "mastodon-check-confirmation.json": http_event(
            "GET",
            "/api/v1/emails/check_confirmation",
            None,
            {"authorization": f"Bearer {access_token(client_id='web-app', scope='read')}"},
        ),
        "service-get-user.json": http_event(
            "GET", f"/v1/users/{USER_ID}", None, admin_bearer, {"user_id": USER_ID}
        ),
        "service-confirm-user.json": http_event(
            "POST", f"/v1/users/{USER_ID}/confirm", None, admin_bearer, {"user_id": USER_ID}
        ),
        "service-delete-user.json": http_event(
            "DELETE", f"/v1/users/{USER_ID}", None, admin_bearer, {"user_id": USER_ID}
        ),
        # The app posts the one-time code of user-123's mail (a wrong one here, as the file cannot know it).
        "confirm-code.json": {
            **http_event("POST", "/v1/confirmations/code", None, {**bearer, "content-type": "application/json"}),
            "body": json.dumps({"code": "123456"}),
        },
        # What the Backendless SDK asks in initApp, with the token of a logged-in user.
        "backendless-app-info.json": http_event("GET", "/api/info", None, {"user-token": access_token()}),
        "backendless-create-confirmation-url.json": http_event(
            "POST",
            f"/api/users/createEmailConfirmationURL/{EMAIL}",
            None,
            {"user-token": access_token(sub="backend-service", roles=["mailconfirm-admin"])},
            {"identity": EMAIL},
        ),
    }
    for name, event in events.items():
        (HERE / name).write_text(json.dumps(event, indent=2) + "\n")
    env = {
        "Parameters": {
            "TABLE_NAME": "mailconfirm-local",
            "PUBLIC_BASE_URL": "http://127.0.0.1:3000",
            "SENDER_ADDRESS": "no-reply@mailconfirm.example.com",
            "CONFIRMATION_SIGNING_KEY": LINK_KEY,
            "CONFIRMATION_PREVIOUS_SIGNING_KEYS": "",
            "ACCESS_TOKEN_HS256_SECRET": ACCESS_SECRET,
            "ACCESS_TOKEN_ISSUER": ISSUER,
            "ACCESS_TOKEN_AUDIENCE": AUDIENCE,
        }
    }
    (HERE / "env.json").write_text(json.dumps(env, indent=2) + "\n")


if __name__ == "__main__":
    main()
