"""Schemathesis hooks for the VoiceCore edge: sign part of the generated Twilio webhooks.

Loaded by Tests/VoiceCoreCLITests/SchemathesisTests.swift (SCHEMATHESIS_HOOKS=twilio_signing).
Unsigned, every generated Twilio webhook stops at the signature check (403); signed like Twilio
signs (HMAC-SHA1 of the public URL followed by the form parameters sorted by name, keyed by the
tenant's auth token; a JSON body through `bodySHA256` in the URL), the generated fields reach the
parsing and validation behind it. Only requests to the provisioned tenant are signed (others are
404 or 403 anyway), and only some of them, so the refusals stay covered too.

Environment: VOICECORE_ST_PUBLIC_URL (the edge's VOICECORE_PUBLIC_URL), VOICECORE_ST_TENANT,
VOICECORE_ST_TWILIO_TOKEN.
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
TOKEN = os.environ["VOICECORE_ST_TWILIO_TOKEN"].encode()
# The share of the tenant's Twilio webhooks that are signed.
SIGNED_SHARE = 0.7


def _header(headers, name):
    for key in headers:
        if key.lower() == name.lower():
            return key
    return None


@schemathesis.hook
def before_call(context, case, kwargs):
    path = case.operation.path
    if not path.startswith("/webhooks/twilio/") or (case.path_parameters or {}).get("tenant") != TENANT:
        return
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
