"""Schemathesis hooks for the VoiceCore edge, run before each generated request is sent.

Loaded by Tests/VoiceCoreCLITests/SchemathesisTests.swift (SCHEMATHESIS_HOOKS=voicecore_hooks).

- The played tenant keeps its API key and rate limit: schemathesis learns tenant ids from the
  answers (`GET /admin/tenants`) and sends them to every route with a `{tenant}`, so a request
  that would rotate the played tenant's key or change its settings is sent to the spare tenant
  instead (else the rest of the run's tenant API requests would all be 401 or 429).
- Part of the Twilio webhooks to the played tenant are signed. Unsigned, every generated Twilio
  webhook stops at the signature check (403); signed like Twilio signs (HMAC-SHA1 of the public
  URL followed by the form parameters sorted by name, keyed by the tenant's auth token; a JSON
  body through `bodySHA256` in the URL), the generated fields reach the parsing and validation
  behind it. Only some are signed, so the refusals stay covered too.

Environment: VOICECORE_ST_PUBLIC_URL (the edge's VOICECORE_PUBLIC_URL), VOICECORE_ST_TENANT (the
played tenant), VOICECORE_ST_SPARE_TENANT, VOICECORE_ST_TWILIO_TOKEN (the played tenant's).
"""

import base64
import hashlib
import hmac
import os
from urllib.parse import parse_qsl, urlencode

import requests
import schemathesis

PUBLIC_URL = os.environ["VOICECORE_ST_PUBLIC_URL"].rstrip("/")
TENANT = os.environ["VOICECORE_ST_TENANT"]
SPARE_TENANT = os.environ["VOICECORE_ST_SPARE_TENANT"]
TOKEN = os.environ["VOICECORE_ST_TWILIO_TOKEN"].encode()
# The share of the tenant's Twilio webhooks that are signed.
SIGNED_SHARE = 0.7


def _header(headers, name):
    for key in headers:
        if key.lower() == name.lower():
            return key
    return None


# The routes that change a tenant: its settings, credentials, rate limit or API keys.
CHANGING_A_TENANT = {("PATCH", "/admin/tenants/{tenant}"), ("POST", "/admin/tenants/{tenant}/api-keys")}


@schemathesis.hook
def before_call(context, case, kwargs):
    path = case.operation.path
    if (case.method.upper(), path) in CHANGING_A_TENANT and (case.path_parameters or {}).get("tenant") == TENANT:
        case.path_parameters = {**case.path_parameters, "tenant": SPARE_TENANT}
        return
    if path.startswith("/webhooks/twilio/") and (case.path_parameters or {}).get("tenant") == TENANT:
        _sign(case)


def _sign(case):
    # Decided by the request's content, not by `random` (Hypothesis seeds that one per test, so
    # every case would get the same answer): the same case is signed again when replayed.
    digest = hashlib.sha256(repr((case.headers, case.query, case.body)).encode("utf-8", "surrogatepass")).digest()
    if digest[0] >= SIGNED_SHARE * 256:
        return
    headers = case.headers if case.headers is not None else {}
    serialized = case.as_transport_kwargs(base_url=PUBLIC_URL)
    content_type = (case.media_type or "").lower()
    query = dict(case.query or {})
    parameters = []
    if content_type.startswith("application/json"):
        # The bytes requests sends for `json=`.
        body = requests.models.complexjson.dumps(serialized.get("json"), allow_nan=False).encode()
        query["bodySHA256"] = hashlib.sha256(body).hexdigest()
        case.query = query
    elif content_type.startswith("application/x-www-form-urlencoded"):
        data = serialized.get("data")
        # The form requests sends for `data=` (a dict is encoded, a str or bytes sent as is).
        encoded = requests.models.RequestEncodingMixin._encode_params(data) if data is not None else ""
        if isinstance(encoded, bytes):
            try:
                encoded = encoded.decode("utf-8")
            except UnicodeDecodeError:
                return
        if not isinstance(encoded, str):
            return
        parameters = parse_qsl(encoded, keep_blank_values=True)
    else:
        return
    url = PUBLIC_URL + case.formatted_path
    if query:
        url += "?" + urlencode(query, doseq=True)
    signed = url + "".join(name + value for name, value in sorted(parameters))
    signature = base64.b64encode(hmac.new(TOKEN, signed.encode("utf-8", "surrogatepass"), hashlib.sha1).digest()).decode()
    existing = _header(headers, "X-Twilio-Signature")
    if existing is not None:
        del headers[existing]
    headers["X-Twilio-Signature"] = signature
    case.headers = headers
