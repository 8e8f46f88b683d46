"""Transit secrets engine: keys, encrypt/decrypt, batches, rotation, rewrap, datakeys, HMAC."""

import base64
import hashlib
import time

import pytest
from hvac.exceptions import InvalidPath, InvalidRequest

from compat_util import (
    CIPHERTEXT_RE,
    HMAC_RE,
    assert_error_body,
    b64,
    flip_body_char,
    raw_request,
    unb64,
    unique,
)

def _transit(client):
    return client.secrets.transit


def _encrypt(client, name, pt=b"hello world", **kw):
    resp = _transit(client).encrypt_data(name=name, plaintext=b64(pt), **kw)
    return resp["data"]["ciphertext"]


def _decrypt(client, name, ct, **kw):
    resp = _transit(client).decrypt_data(name=name, ciphertext=ct, **kw)
    return unb64(resp["data"]["plaintext"])


# ---------------------------------------------------------------------------- keys


KEY_FIELDS = {
    "type",
    "name",
    "latest_version",
    "min_decryption_version",
    "min_encryption_version",
    "min_available_version",
    "deletion_allowed",
    "exportable",
    "derived",
    "supports_encryption",
    "supports_decryption",
    "supports_derivation",
    "supports_signing",
    "keys",
}


def test_create_and_read_key_defaults(client, key_name):
    before = int(time.time())
    # OpenBao answers key creation with 200 and the key description (older Vault: 204).
    created = _transit(client).create_key(name=key_name)
    assert isinstance(created, dict), created
    assert created["data"]["name"] == key_name
    assert created["data"]["type"] == "aes256-gcm96"

    data = _transit(client).read_key(name=key_name)["data"]
    missing = KEY_FIELDS - set(data)
    assert not missing, f"missing fields {missing} in {data}"
    assert data["name"] == key_name
    assert data["type"] == "aes256-gcm96"
    assert data["latest_version"] == 1
    assert data["min_decryption_version"] == 1
    assert data["min_encryption_version"] == 0
    assert data["min_available_version"] == 0
    assert data["deletion_allowed"] is False
    assert data["exportable"] is False
    assert data["derived"] is False
    assert data["supports_encryption"] is True
    assert data["supports_decryption"] is True
    assert data["supports_signing"] is False
    # For symmetric keys `keys` maps the version (string) to its creation time (unix seconds, int).
    assert isinstance(data["keys"], dict)
    assert list(data["keys"]) == ["1"]
    ts = data["keys"]["1"]
    assert isinstance(ts, int) and not isinstance(ts, bool)
    assert before - 300 <= ts <= int(time.time()) + 300


def test_create_key_explicit_type(client, key_name):
    _transit(client).create_key(name=key_name, key_type="aes256-gcm96")
    assert _transit(client).read_key(name=key_name)["data"]["type"] == "aes256-gcm96"


def test_create_existing_key_is_noop(client, new_key):
    name = new_key()
    _transit(client).rotate_key(name=name)
    # Re-creating an existing key succeeds and changes nothing (not even the type).
    _transit(client).create_key(name=name, key_type="chacha20-poly1305")
    data = _transit(client).read_key(name=name)["data"]
    assert data["latest_version"] == 2
    assert data["type"] == "aes256-gcm96"


def test_unknown_key_type_rejected(client, key_name):
    resp = raw_request(client.url, "POST", f"transit/keys/{key_name}", client.token, json={"type": "no-such-type"})
    body = assert_error_body(resp, 400)
    assert body["errors"] and body["errors"][0]
    with pytest.raises(InvalidPath):
        _transit(client).read_key(name=key_name)


def test_list_keys(client, new_key):
    names = {new_key("list"), new_key("list")}
    # hvac sends the LIST verb; Vault also accepts GET ?list=true.
    listed = _transit(client).list_keys()["data"]["keys"]
    assert names <= set(listed)
    resp = raw_request(client.url, "GET", "transit/keys?list=true", client.token)
    assert resp.status_code == 200
    assert names <= set(resp.json()["data"]["keys"])


def test_read_missing_key_is_404(client, key_name):
    with pytest.raises(InvalidPath):
        _transit(client).read_key(name=key_name)
    resp = raw_request(client.url, "GET", f"transit/keys/{key_name}", client.token)
    assert_error_body(resp, 404)


def test_delete_refused_until_deletion_allowed(client, new_key):
    name = new_key("del")
    with pytest.raises(InvalidRequest) as ei:
        _transit(client).delete_key(name=name)
    assert ei.value.errors and ei.value.errors[0]
    # still there
    assert _transit(client).read_key(name=name)["data"]["name"] == name

    cfg = _transit(client).update_key_configuration(name=name, deletion_allowed=True)
    # OpenBao answers config updates with 200 + the key description.
    assert cfg["data"]["deletion_allowed"] is True
    assert _transit(client).read_key(name=name)["data"]["deletion_allowed"] is True

    resp = _transit(client).delete_key(name=name)
    assert resp.status_code == 204
    with pytest.raises(InvalidPath):
        _transit(client).read_key(name=name)
    assert name not in _list_or_empty(client)


def _list_or_empty(client):
    try:
        return _transit(client).list_keys()["data"]["keys"]
    except InvalidPath:  # an empty LIST is a 404 in Vault
        return []


def test_delete_missing_key_is_400(client, key_name):
    # Not 404: deleting an unknown key is a 400 in OpenBao.
    with pytest.raises(InvalidRequest):
        _transit(client).delete_key(name=key_name)


def test_empty_list_is_404(client):
    # A LIST on a mount without any key answers 404 (hvac InvalidPath), not an empty list.
    path = unique("tr-empty")
    client.sys.enable_secrets_engine(backend_type="transit", path=path)
    try:
        with pytest.raises(InvalidPath):
            _transit(client).list_keys(mount_point=path)
    finally:
        client.sys.disable_secrets_engine(path=path)


def test_operations_on_missing_key(client, key_name):
    t = _transit(client)
    with pytest.raises(InvalidRequest):
        t.rotate_key(name=key_name)
    with pytest.raises(InvalidRequest):
        t.update_key_configuration(name=key_name, deletion_allowed=True)
    with pytest.raises(InvalidRequest):
        t.trim_key(name=key_name, min_version=1)
    with pytest.raises(InvalidRequest):
        t.generate_data_key(name=key_name, key_type="plaintext")
    with pytest.raises(InvalidRequest):
        t.generate_hmac(name=key_name, hash_input=b64("x"))
    with pytest.raises(InvalidRequest):
        t.verify_signed_data(name=key_name, hash_input=b64("x"), hmac="vault:v1:AAAA")
    with pytest.raises(InvalidRequest):
        t.rewrap_data(name=key_name, ciphertext="vault:v1:AAAA")
    # none of those created the key
    with pytest.raises(InvalidPath):
        t.read_key(name=key_name)


# ---------------------------------------------------------------------------- encrypt/decrypt


def test_encrypt_decrypt_round_trip(client, new_key):
    name = new_key()
    resp = _transit(client).encrypt_data(name=name, plaintext=b64(b"hello world"))
    data = resp["data"]
    assert CIPHERTEXT_RE.match(data["ciphertext"]), data
    assert data["ciphertext"].startswith("vault:v1:")
    assert data["key_version"] == 1
    # aes256-gcm96 ciphertext body = 12-byte nonce || ciphertext || 16-byte tag
    assert len(unb64(data["ciphertext"].split(":", 2)[2])) == 12 + len(b"hello world") + 16
    out = _transit(client).decrypt_data(name=name, ciphertext=data["ciphertext"])["data"]
    assert out["plaintext"] == b64(b"hello world")


def test_encryption_is_randomised(client, new_key):
    name = new_key()
    a = _encrypt(client, name, b"same")
    b = _encrypt(client, name, b"same")
    assert a != b
    assert _decrypt(client, name, a) == _decrypt(client, name, b) == b"same"


@pytest.mark.parametrize("pt", [b"", b"\x00\xff" * 3, bytes(range(256)) * 40])
def test_round_trip_binary_and_empty(client, new_key, pt):
    name = new_key()
    ct = _encrypt(client, name, pt)
    assert CIPHERTEXT_RE.match(ct)
    assert _decrypt(client, name, ct) == pt


def test_associated_data_round_trip_and_mismatch(client, new_key):
    name = new_key()
    aad = b64(b"tenant=42")
    ct = _encrypt(client, name, b"secret", associated_data=aad)
    assert CIPHERTEXT_RE.match(ct)
    assert _decrypt(client, name, ct, associated_data=aad) == b"secret"
    with pytest.raises(InvalidRequest):
        _decrypt(client, name, ct, associated_data=b64(b"tenant=43"))
    with pytest.raises(InvalidRequest):  # AAD missing
        _decrypt(client, name, ct)
    plain_ct = _encrypt(client, name, b"secret")
    with pytest.raises(InvalidRequest):  # AAD given where none was used
        _decrypt(client, name, plain_ct, associated_data=aad)


def test_encrypt_invalid_associated_data_is_error(client, new_key):
    name = new_key()
    resp = raw_request(
        client.url, "POST", f"transit/encrypt/{name}", client.token,
        json={"plaintext": b64("x"), "associated_data": "!!not base64!!"},
    )
    # OpenBao answers 500 here (sic); accept 400 as the sane alternative.
    assert resp.status_code in (400, 500), resp.text
    assert resp.json()["errors"]


def test_decrypt_with_other_key_fails(client, new_key):
    k1, k2 = new_key(), new_key()
    ct = _encrypt(client, k1, b"for k1")
    with pytest.raises(InvalidRequest):
        _decrypt(client, k2, ct)


@pytest.mark.parametrize("index", [0, 5, 20, -6])  # -6: inside the GCM tag; avoids the last base64 quad whose low bits decoders may ignore
def test_tampered_ciphertext_fails(client, new_key, index):
    name = new_key()
    ct = _encrypt(client, name, b"do not touch")
    body_len = len(ct.split(":", 2)[2])
    bad = flip_body_char(ct, index % body_len)
    assert bad != ct
    with pytest.raises(InvalidRequest):
        _decrypt(client, name, bad)


@pytest.mark.parametrize(
    "bad",
    [
        "garbage",
        "vault:vX:abc",
        "vault:v1:!!!",
        "vault:v1:",
        "vault:v1:AAAA",
        "foo:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "vault:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "vault:v-1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_malformed_ciphertext_is_400(client, new_key, bad):
    name = new_key()
    with pytest.raises(InvalidRequest) as ei:
        _decrypt(client, name, bad)
    assert ei.value.errors and ei.value.errors[0]


def test_unknown_version_ciphertext_is_400(client, new_key):
    name = new_key()
    ct = _encrypt(client, name, b"x")
    too_new = ct.replace("vault:v1:", "vault:v99:", 1)
    with pytest.raises(InvalidRequest):
        _decrypt(client, name, too_new)


def test_v0_ciphertext_means_v1(client, new_key):
    # Vault compatibility quirk: "vault:v0:" is treated as version 1 (keys once started at 0).
    name = new_key()
    ct = _encrypt(client, name, b"zero")
    assert _decrypt(client, name, ct.replace("vault:v1:", "vault:v0:", 1)) == b"zero"


def test_missing_or_empty_ciphertext_is_400(client, new_key):
    name = new_key()
    for body in ({}, {"ciphertext": ""}):
        resp = raw_request(client.url, "POST", f"transit/decrypt/{name}", client.token, json=body)
        assert_error_body(resp, 400)


def test_plaintext_not_base64_is_400(client, new_key):
    name = new_key()
    with pytest.raises(InvalidRequest):
        _transit(client).encrypt_data(name=name, plaintext="not base64!!")
    resp = raw_request(client.url, "POST", f"transit/encrypt/{name}", client.token, json={})
    assert_error_body(resp, 400)  # plaintext missing altogether


def test_encrypt_upserts_missing_key(client, key_name):
    # With `create` capability (root has it), encrypt to an unknown key creates it.
    with pytest.raises(InvalidPath):
        _transit(client).read_key(name=key_name)
    ct = _encrypt(client, key_name, b"upsert")
    assert ct.startswith("vault:v1:")
    data = _transit(client).read_key(name=key_name)["data"]
    assert data["type"] == "aes256-gcm96"
    assert data["latest_version"] == 1
    assert _decrypt(client, key_name, ct) == b"upsert"


def test_decrypt_missing_key_is_400(client, new_key, key_name):
    other = new_key()
    ct = _encrypt(client, other, b"x")
    # Not 404: decrypt with an unknown key name is a 400 and does not create the key.
    with pytest.raises(InvalidRequest):
        _decrypt(client, key_name, ct)
    with pytest.raises(InvalidPath):
        _transit(client).read_key(name=key_name)


# ---------------------------------------------------------------------------- batches


def test_batch_encrypt_decrypt(client, new_key):
    name = new_key()
    items = [b"one", b"two", b"", b"four"]
    batch = [{"plaintext": b64(p)} for p in items]
    batch[1]["associated_data"] = b64("aad")
    batch[3]["reference"] = "ref-4"
    # hvac sends {"plaintext": null, "batch_input": [...]}.
    res = _transit(client).encrypt_data(name=name, batch_input=batch)["data"]["batch_results"]
    assert len(res) == len(items)
    for r in res:
        assert CIPHERTEXT_RE.match(r["ciphertext"]), r
        assert r["key_version"] == 1
        assert "error" not in r or not r["error"]
    assert res[3]["reference"] == "ref-4"

    dec_in = [{"ciphertext": r["ciphertext"]} for r in res]
    dec_in[1]["associated_data"] = b64("aad")
    dec_in[3]["reference"] = "back"
    out = _transit(client).decrypt_data(name=name, ciphertext=None, batch_input=dec_in)["data"]["batch_results"]
    assert [unb64(o["plaintext"]) for o in out] == items
    assert out[3]["reference"] == "back"


def test_batch_decrypt_with_one_bad_item(client, new_key):
    name = new_key()
    good = _encrypt(client, name, b"good")
    batch = [
        {"ciphertext": good, "reference": "a"},
        {"ciphertext": "garbage", "reference": "b"},
        {"ciphertext": good, "reference": "c"},
    ]
    # OpenBao: any failed item makes the whole response HTTP 400, but the body still carries
    # data.batch_results with one entry per input; failed entries have a non-empty "error".
    with pytest.raises(InvalidRequest) as ei:
        _transit(client).decrypt_data(name=name, ciphertext=None, batch_input=batch)
    body = ei.value.json
    assert body is not None, "error response must be JSON (Content-Type: application/json)"
    results = body["data"]["batch_results"]
    assert len(results) == 3
    assert unb64(results[0]["plaintext"]) == b"good"
    assert unb64(results[2]["plaintext"]) == b"good"
    assert results[1]["error"]
    assert not results[0].get("error")
    assert [r["reference"] for r in results] == ["a", "b", "c"]


def test_batch_encrypt_with_one_bad_item(client, new_key):
    name = new_key()
    batch = [{"plaintext": b64("ok")}, {"plaintext": "!!!"}]
    with pytest.raises(InvalidRequest) as ei:
        _transit(client).encrypt_data(name=name, batch_input=batch)
    results = ei.value.json["data"]["batch_results"]
    assert len(results) == 2
    assert CIPHERTEXT_RE.match(results[0]["ciphertext"])
    assert results[1]["error"]
    assert not results[1].get("ciphertext")


def test_empty_batch_is_400(client, new_key):
    name = new_key()
    for op in ("encrypt", "decrypt"):
        resp = raw_request(client.url, "POST", f"transit/{op}/{name}", client.token, json={"batch_input": []})
        assert_error_body(resp, 400)


def test_batch_rewrap(client, new_key):
    name = new_key()
    cts = [_encrypt(client, name, p) for p in (b"a", b"b", b"c")]
    _transit(client).rotate_key(name=name)
    res = _transit(client).rewrap_data(
        name=name, ciphertext=None, batch_input=[{"ciphertext": c} for c in cts]
    )["data"]["batch_results"]
    assert len(res) == 3
    for r, p in zip(res, (b"a", b"b", b"c")):
        assert r["ciphertext"].startswith("vault:v2:")
        assert r["key_version"] == 2
        assert _decrypt(client, name, r["ciphertext"]) == p


def test_batch_rewrap_with_one_bad_item_is_200(client, new_key):
    name = new_key()
    good = _encrypt(client, name, b"a")
    # Unlike encrypt/decrypt, a rewrap batch with failing items still answers HTTP 200.
    res = _transit(client).rewrap_data(
        name=name, ciphertext=None, batch_input=[{"ciphertext": good}, {"ciphertext": "garbage"}]
    )["data"]["batch_results"]
    assert CIPHERTEXT_RE.match(res[0]["ciphertext"])
    assert res[1]["error"]


# ---------------------------------------------------------------------------- rotation & versions


def test_rotate_and_old_versions(client, new_key):
    name = new_key()
    ct1 = _encrypt(client, name, b"v1 data")
    rot = _transit(client).rotate_key(name=name)
    assert rot["data"]["latest_version"] == 2  # OpenBao returns the key description (200)
    data = _transit(client).read_key(name=name)["data"]
    assert data["latest_version"] == 2
    assert sorted(data["keys"], key=int) == ["1", "2"]
    assert all(isinstance(v, int) for v in data["keys"].values())

    resp = _transit(client).encrypt_data(name=name, plaintext=b64("v2 data"))["data"]
    assert resp["ciphertext"].startswith("vault:v2:")
    assert resp["key_version"] == 2
    assert _decrypt(client, name, resp["ciphertext"]) == b"v2 data"
    assert _decrypt(client, name, ct1) == b"v1 data"


def test_rewrap_single(client, new_key):
    name = new_key()
    ct1 = _encrypt(client, name, b"rewrap me")
    _transit(client).rotate_key(name=name)
    resp = _transit(client).rewrap_data(name=name, ciphertext=ct1)["data"]
    assert resp["ciphertext"].startswith("vault:v2:")
    assert resp["key_version"] == 2
    assert resp["ciphertext"] != ct1
    assert _decrypt(client, name, resp["ciphertext"]) == b"rewrap me"
    with pytest.raises(InvalidRequest):
        _transit(client).rewrap_data(name=name, ciphertext="garbage")


def test_encrypt_with_key_version(client, new_key):
    name = new_key()
    _transit(client).rotate_key(name=name)
    _transit(client).rotate_key(name=name)
    r1 = _transit(client).encrypt_data(name=name, plaintext=b64("x"), key_version=1)["data"]
    assert r1["ciphertext"].startswith("vault:v1:") and r1["key_version"] == 1
    r0 = _transit(client).encrypt_data(name=name, plaintext=b64("x"), key_version=0)["data"]
    assert r0["key_version"] == 3  # 0 means "latest"
    with pytest.raises(InvalidRequest):
        _transit(client).encrypt_data(name=name, plaintext=b64("x"), key_version=4)
    assert _decrypt(client, name, r1["ciphertext"]) == b"x"


def test_min_decryption_version(client, new_key):
    name = new_key()
    ct1 = _encrypt(client, name, b"old")
    _transit(client).rotate_key(name=name)
    ct2 = _encrypt(client, name, b"new")
    cfg = _transit(client).update_key_configuration(name=name, min_decryption_version=2)
    assert cfg["data"]["min_decryption_version"] == 2
    data = _transit(client).read_key(name=name)["data"]
    assert data["min_decryption_version"] == 2
    # `keys` only lists versions >= min_decryption_version.
    assert list(data["keys"]) == ["2"]
    with pytest.raises(InvalidRequest):
        _decrypt(client, name, ct1)
    assert _decrypt(client, name, ct2) == b"new"
    with pytest.raises(InvalidRequest):  # rewrap of a too-old ciphertext fails too
        _transit(client).rewrap_data(name=name, ciphertext=ct1)
    # lowering it again (nothing trimmed yet) restores access
    _transit(client).update_key_configuration(name=name, min_decryption_version=1)
    assert _decrypt(client, name, ct1) == b"old"
    # above latest is refused
    with pytest.raises(InvalidRequest):
        _transit(client).update_key_configuration(name=name, min_decryption_version=3)


def test_min_encryption_version(client, new_key):
    name = new_key()
    _transit(client).rotate_key(name=name)
    _transit(client).update_key_configuration(name=name, min_encryption_version=2)
    assert _transit(client).read_key(name=name)["data"]["min_encryption_version"] == 2
    with pytest.raises(InvalidRequest):
        _transit(client).encrypt_data(name=name, plaintext=b64("x"), key_version=1)
    r = _transit(client).encrypt_data(name=name, plaintext=b64("x"), key_version=2)["data"]
    assert r["key_version"] == 2
    with pytest.raises(InvalidRequest):  # above latest_version
        _transit(client).update_key_configuration(name=name, min_encryption_version=3)


def test_trim(client, new_key):
    name = new_key()
    ct1 = _encrypt(client, name, b"one")
    _transit(client).rotate_key(name=name)
    _transit(client).rotate_key(name=name)
    ct2 = _transit(client).encrypt_data(name=name, plaintext=b64("two"), key_version=2)["data"]["ciphertext"]

    # trim needs min_encryption_version set (non-zero) ...
    _transit(client).update_key_configuration(name=name, min_decryption_version=2)
    with pytest.raises(InvalidRequest):
        _transit(client).trim_key(name=name, min_version=2)
    _transit(client).update_key_configuration(name=name, min_encryption_version=3)
    # ... and cannot go beyond min_decryption_version (2) / min_encryption_version
    with pytest.raises(InvalidRequest):
        _transit(client).trim_key(name=name, min_version=3)

    resp = _transit(client).trim_key(name=name, min_version=2)
    assert resp["data"]["min_available_version"] == 2
    data = _transit(client).read_key(name=name)["data"]
    assert data["min_available_version"] == 2
    assert sorted(data["keys"], key=int) == ["2", "3"]
    assert data["latest_version"] == 3

    # trimmed versions are gone for good
    with pytest.raises(InvalidRequest):
        _transit(client).update_key_configuration(name=name, min_decryption_version=1)
    with pytest.raises(InvalidRequest):
        _decrypt(client, name, ct1)
    assert _decrypt(client, name, ct2) == b"two"
    with pytest.raises(InvalidRequest):  # cannot be decremented
        _transit(client).trim_key(name=name, min_version=1)
    resp = raw_request(client.url, "POST", f"transit/keys/{name}/trim", client.token, json={})
    assert_error_body(resp, 400)  # min_available_version missing


# ---------------------------------------------------------------------------- data keys


@pytest.mark.parametrize("bits", [None, 128, 256, 512])
def test_datakey_plaintext(client, new_key, bits):
    name = new_key()
    kw = {} if bits is None else {"bits": bits}
    data = _transit(client).generate_data_key(name=name, key_type="plaintext", **kw)["data"]
    raw_key = unb64(data["plaintext"])
    assert len(raw_key) * 8 == (bits or 256)
    assert CIPHERTEXT_RE.match(data["ciphertext"])
    assert data["key_version"] == 1
    dec = _transit(client).decrypt_data(name=name, ciphertext=data["ciphertext"])["data"]["plaintext"]
    assert unb64(dec) == raw_key


def test_datakey_wrapped(client, new_key):
    name = new_key()
    _transit(client).rotate_key(name=name)
    data = _transit(client).generate_data_key(name=name, key_type="wrapped")["data"]
    assert "plaintext" not in data
    assert data["ciphertext"].startswith("vault:v2:")
    assert data["key_version"] == 2
    dec = _transit(client).decrypt_data(name=name, ciphertext=data["ciphertext"])["data"]["plaintext"]
    assert len(unb64(dec)) == 32


def test_datakey_bad_bits_and_type(client, new_key):
    name = new_key()
    resp = raw_request(client.url, "POST", f"transit/datakey/plaintext/{name}", client.token, json={"bits": 100})
    assert_error_body(resp, 400)
    resp = raw_request(client.url, "POST", f"transit/datakey/bogus/{name}", client.token, json={})
    assert_error_body(resp, 400)


# ---------------------------------------------------------------------------- hmac / verify


def _hmac(client, name, data, **kw):
    return _transit(client).generate_hmac(name=name, hash_input=b64(data), **kw)["data"]["hmac"]


def _verify(client, name, data, mac, **kw):
    return _transit(client).verify_signed_data(name=name, hash_input=b64(data), hmac=mac, **kw)["data"]["valid"]


def test_hmac_and_verify(client, new_key):
    name = new_key()
    mac = _hmac(client, name, b"message")
    assert HMAC_RE.match(mac) and mac.startswith("vault:v1:")
    assert len(unb64(mac.split(":", 2)[2])) == 32  # sha2-256 default
    assert mac == _hmac(client, name, b"message")  # deterministic
    assert mac == _hmac(client, name, b"message", algorithm="sha2-256")
    assert _verify(client, name, b"message", mac) is True
    assert _verify(client, name, b"messagE", mac) is False
    other = new_key()
    assert _verify(client, other, b"message", mac) is False


def test_hmac_sha512(client, new_key):
    name = new_key()
    mac = _hmac(client, name, b"message", algorithm="sha2-512")
    assert len(unb64(mac.split(":", 2)[2])) == 64
    assert mac != _hmac(client, name, b"message")
    # the algorithm may also be given in the URL
    url_form = client.adapter.post(f"/v1/transit/hmac/{name}/sha2-512", json={"input": b64("message")})
    assert url_form["data"]["hmac"] == mac
    # hvac's verify sends the algorithm as "hash_algorithm"
    assert _verify(client, name, b"message", mac, hash_algorithm="sha2-512") is True
    # verifying a sha2-512 HMAC as sha2-256 simply fails
    assert _verify(client, name, b"message", mac) is False


def test_hmac_invalid_inputs(client, new_key):
    name = new_key()
    resp = raw_request(client.url, "POST", f"transit/hmac/{name}", client.token, json={"input": "!!!"})
    assert_error_body(resp, 400)
    resp = raw_request(
        client.url, "POST", f"transit/hmac/{name}", client.token, json={"input": b64("x"), "algorithm": "md5"}
    )
    assert_error_body(resp, 400)
    for bad in ("garbage", "vault:v1:!!!", "vault:v9:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="):
        resp = raw_request(
            client.url, "POST", f"transit/verify/{name}", client.token, json={"input": b64("x"), "hmac": bad}
        )
        assert_error_body(resp, 400)
    resp = raw_request(client.url, "POST", f"transit/verify/{name}", client.token, json={"input": b64("x")})
    assert_error_body(resp, 400)  # neither hmac nor signature


def test_hmac_batch(client, new_key):
    name = new_key()
    inputs = [b"a", b"b", b"c"]
    resp = client.adapter.post(
        f"/v1/transit/hmac/{name}", json={"batch_input": [{"input": b64(i)} for i in inputs]}
    )
    res = resp["data"]["batch_results"]
    assert len(res) == 3
    for r, i in zip(res, inputs):
        assert r["hmac"] == _hmac(client, name, i)
    ver = client.adapter.post(
        f"/v1/transit/verify/{name}",
        json={
            "batch_input": [
                {"input": b64("a"), "hmac": res[0]["hmac"]},
                {"input": b64("a"), "hmac": res[1]["hmac"]},
            ]
        },
    )["data"]["batch_results"]
    assert ver[0]["valid"] is True
    # OpenBao omits "valid" for a failed verification inside a batch (false is dropped).
    assert ver[1].get("valid", False) is False


def test_hmac_batch_with_bad_item_is_200(client, new_key):
    name = new_key()
    # Unlike encrypt/decrypt batches, an hmac batch with a bad item answers 200.
    res = client.adapter.post(
        f"/v1/transit/hmac/{name}", json={"batch_input": [{"input": b64("a")}, {"input": "!!!"}]}
    )["data"]["batch_results"]
    assert HMAC_RE.match(res[0]["hmac"])
    assert res[1]["error"]


def test_hmac_after_rotate(client, new_key):
    name = new_key()
    mac1 = _hmac(client, name, b"msg")
    _transit(client).rotate_key(name=name)
    mac2 = _hmac(client, name, b"msg")
    assert mac2.startswith("vault:v2:")
    assert mac1 != mac2
    assert _verify(client, name, b"msg", mac1) is True
    assert _verify(client, name, b"msg", mac2) is True
    assert _hmac(client, name, b"msg", key_version=1) == mac1
    # once v1 is below min_decryption_version, verifying its HMAC is an error (400), not false
    _transit(client).update_key_configuration(name=name, min_decryption_version=2)
    with pytest.raises(InvalidRequest):
        _verify(client, name, b"msg", mac1)


# ---------------------------------------------------------------------------- other key types


@pytest.mark.parametrize("key_type", ["aes128-gcm96", "chacha20-poly1305"])
def test_other_symmetric_types(client, key_name, key_type):
    # raw POST: hvac's client-side check does not know aes128-gcm96
    client.adapter.post(f"/v1/transit/keys/{key_name}", json={"type": key_type})
    data = _transit(client).read_key(name=key_name)["data"]
    assert data["type"] == key_type
    ct = _encrypt(client, key_name, b"typed")
    assert ct.startswith("vault:v1:")
    assert _decrypt(client, key_name, ct) == b"typed"


# ---------------------------------------------------------------------------- edges Vault defines


def test_batch_where_every_item_failed_ignores_partial_failure_code(client, new_key):
    name = new_key()
    good = _encrypt(client, name, b"good")
    path = f"transit/decrypt/{name}"
    body = {"batch_input": [{"ciphertext": "vault:v1:AAAA"}], "partial_failure_response_code": 207}
    resp = raw_request(client.url, "POST", path, client.token, json=body)
    assert resp.status_code == 400, resp.text
    body["batch_input"].append({"ciphertext": good})
    resp = raw_request(client.url, "POST", path, client.token, json=body)
    assert resp.status_code == 207, resp.text


def test_line_wrapped_base64_is_accepted(client, new_key):
    name = new_key()
    pt = bytes(range(256)) * 2
    wrapped = base64.encodebytes(pt).decode()  # MIME style: a line break every 76 characters
    assert "\n" in wrapped
    ct = _transit(client).encrypt_data(name=name, plaintext=wrapped)["data"]["ciphertext"]
    assert _decrypt(client, name, ct) == pt


def test_random_bytes(client):
    t = _transit(client)
    first = unb64(t.generate_random_bytes()["data"]["random_bytes"])
    second = unb64(t.generate_random_bytes()["data"]["random_bytes"])
    assert len(first) == 32 and first != second
    assert len(unb64(t.generate_random_bytes(n_bytes=48)["data"]["random_bytes"])) == 48
    as_hex = t.generate_random_bytes(n_bytes=16, output_format="hex")["data"]["random_bytes"]
    assert len(bytes.fromhex(as_hex)) == 16
    resp = raw_request(client.url, "POST", "transit/random/7", client.token, json={})
    assert resp.status_code == 200 and len(unb64(resp.json()["data"]["random_bytes"])) == 7
    resp = raw_request(client.url, "POST", "transit/random", client.token, json={"format": "octal"})
    assert_error_body(resp, 400)


@pytest.mark.parametrize("algorithm", ["sha2-224", "sha2-256", "sha2-384", "sha2-512"])
def test_hash_data(client, algorithm):
    expected = hashlib.new(algorithm.replace("sha2-", "sha"), b"hello").digest()
    got = _transit(client).hash_data(hash_input=b64(b"hello"), algorithm=algorithm)["data"]["sum"]
    assert bytes.fromhex(got) == expected
    got = _transit(client).hash_data(hash_input=b64(b"hello"), algorithm=algorithm, output_format="base64")
    assert unb64(got["data"]["sum"]) == expected


@pytest.mark.parametrize("algorithm", ["sha3-256", "sha3-384", "sha3-512"])
def test_hash_data_sha3(client, algorithm):
    # hvac's own check knows only SHA-2; the servers take SHA-3 as well.
    resp = raw_request(client.url, "POST", f"transit/hash/{algorithm}", client.token, json={"input": b64(b"hello")})
    assert resp.status_code == 200, resp.text
    assert bytes.fromhex(resp.json()["data"]["sum"]) == hashlib.new(algorithm.replace("-", "_"), b"hello").digest()


def test_hash_default_and_bad_input(client):
    got = _transit(client).hash_data(hash_input=b64(b"abc"))["data"]["sum"]
    assert got == hashlib.sha256(b"abc").hexdigest()
    resp = raw_request(client.url, "POST", "transit/hash/md5", client.token, json={"input": b64(b"x")})
    assert_error_body(resp, 400)
