"""Schemathesis hooks for scripts/fuzz.sh (loaded through SCHEMATHESIS_HOOKS).

- Signs the run in as one role: FUZZ_EMAIL and FUZZ_PASSWORD, logged in at FUZZ_BASE_URL.
  Without them the run is anonymous. A token that stops working (the fuzzer itself logs
  out, or it expires on a long run) answers 401, and Schemathesis then logs in again and
  replays the request once.
- Adds the check `error_body`: every 4xx and 5xx answer is the documented ErrorBody,
  `{"error": {"code", "message"}}` as JSON, with a code the document's ErrorCode lists.
  Schemathesis' own response_schema_conformance checks a body against the schema the
  document gives that status, so this one also holds the document to its promise that
  every error has that shape.
"""

import json
import os

import requests
import schemathesis

BASE_URL = os.environ.get("FUZZ_BASE_URL", "")
EMAIL = os.environ.get("FUZZ_EMAIL")
PASSWORD = os.environ.get("FUZZ_PASSWORD")

if EMAIL and PASSWORD:

    @schemathesis.auth()
    class Login:
        def get(self, case, context):
            answer = requests.post(
                f"{BASE_URL}/api/v1/auth/login",
                json={"email": EMAIL, "password": PASSWORD},
                timeout=30,
            )
            answer.raise_for_status()
            return answer.json()["access_token"]

        def set(self, case, data, context):
            case.headers = case.headers or {}
            case.headers["Authorization"] = f"Bearer {data}"


def _error_codes(case):
    schemas = case.operation.schema.raw_schema["components"]["schemas"]
    return set(schemas["ErrorCode"]["enum"])


@schemathesis.check
def error_body(ctx, response, case):
    """A 4xx or 5xx answer is an ErrorBody with a documented code."""
    if response.status_code < 400:
        return
    content_type = response.headers.get("content-type", [""])
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    if not content_type.startswith("application/json"):
        raise AssertionError(f"error answer {response.status_code} is {content_type!r}, not JSON")
    try:
        body = json.loads(response.content)
    except ValueError as e:
        raise AssertionError(f"error answer {response.status_code} is not valid JSON: {e}")
    error = body.get("error") if isinstance(body, dict) else None
    if not (
        isinstance(error, dict)
        and set(error) - {"items"} == {"code", "message"}
        and isinstance(error["message"], str)
    ):
        raise AssertionError(f"error answer {response.status_code} is not an ErrorBody: {body!r}")
    # `items` (a refused batch's reasons, by index) comes only with `batch_invalid`.
    if "items" in error and not (
        error["code"] == "batch_invalid"
        and isinstance(error["items"], list)
        and error["items"]
        and all(
            isinstance(item, dict)
            and set(item) == {"index", "field", "message"}
            and isinstance(item["index"], int)
            and isinstance(item["field"], str)
            and isinstance(item["message"], str)
            for item in error["items"]
        )
    ):
        raise AssertionError(f"error answer {response.status_code} has malformed items: {body!r}")
    if error["code"] not in _error_codes(case):
        raise AssertionError(f"error code {error['code']!r} is not in the document's ErrorCode")
