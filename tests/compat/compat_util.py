"""Small helpers shared by the compatibility tests (imported by the test modules)."""

import base64
import os
import re
import uuid

import requests

CIPHERTEXT_RE = re.compile(r"^vault:v(\d+):[A-Za-z0-9+/=]+$")
HMAC_RE = re.compile(r"^vault:v(\d+):[A-Za-z0-9+/=]+$")

TARGET = os.environ.get("COMPAT_TARGET", "openbao")
HTTP_TIMEOUT = 10


def b64(data):
    """Base64 (standard alphabet, padded) of bytes or str, as str."""
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def unb64(text):
    return base64.b64decode(text, validate=True)


def unique(prefix="k"):
    """A name that is unique per call, so repeated runs never collide."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def ct_version(ciphertext):
    m = CIPHERTEXT_RE.match(ciphertext)
    assert m, f"not a vault ciphertext: {ciphertext!r}"
    return int(m.group(1))


def flip_body_char(ciphertext, index=10):
    """Change one base64 character inside the body of a `vault:vN:` value."""
    prefix, _, body = ciphertext.rpartition(":")
    c = body[index]
    repl = "A" if c != "A" else "B"
    return f"{prefix}:{body[:index]}{repl}{body[index + 1:]}"


def raw_request(addr, method, path, token=None, json=None, data=None, headers=None, timeout=HTTP_TIMEOUT):
    """Plain HTTP request (no hvac) for cases hvac cannot express:
    broken JSON bodies, exact status codes of 204 responses, unauthenticated calls."""
    h = dict(headers or {})
    if token is not None:
        h["X-Vault-Token"] = token
    kwargs = {"headers": h, "timeout": timeout}
    if data is not None:
        kwargs["data"] = data
    elif json is not None:
        kwargs["json"] = json
    return requests.request(method, f"{addr}/v1/{path.lstrip('/')}", **kwargs)


def assert_error_body(resp, status):
    """Vault error shape: HTTP status, JSON body {"errors": [str, ...]}."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers.get("Content-Type", "").startswith("application/json")
    body = resp.json()
    assert isinstance(body.get("errors"), list), body
    for e in body["errors"]:
        assert isinstance(e, str)
    return body
