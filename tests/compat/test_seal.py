"""Init / unseal / seal / restart against a fresh NON-dev server (see conftest.sealed_server).

The tests of this module run in order and share state: each step builds on the previous one.
"""

import base64

import pytest
from hvac.exceptions import Forbidden, InvalidRequest, VaultDown

from compat_util import assert_error_body, b64, raw_request, unb64, unique

SHARES, THRESHOLD = 5, 3

STATE = {}


def _need(*keys):
    missing = [k for k in keys if k not in STATE]
    if missing:
        pytest.fail(f"an earlier step of the seal flow failed (missing {missing})")


def _status(srv):
    resp = raw_request(srv.addr, "GET", "sys/seal-status")
    assert resp.status_code == 200, resp.text
    return resp.json()


def _health(srv):
    resp = raw_request(srv.addr, "GET", "sys/health")
    return resp.status_code, resp.json()


def _ensure_transit(c):
    if "transit/" not in c.sys.list_mounted_secrets_engines()["data"]:
        c.sys.enable_secrets_engine(backend_type="transit", path="transit")


def test_01_uninitialised(sealed_server):
    srv = sealed_server
    code, body = _health(srv)
    assert code == 501
    assert body["initialized"] is False
    assert body["sealed"] is True

    st = _status(srv)
    assert st["initialized"] is False
    assert st["sealed"] is True
    assert st["t"] == 0 and st["n"] == 0 and st["progress"] == 0

    c = srv.client()
    assert c.sys.is_initialized() is False  # GET sys/init
    resp = raw_request(srv.addr, "GET", "sys/init")
    assert resp.status_code == 200 and resp.json() == {"initialized": False}

    # everything behind the barrier answers 503 while not initialised
    resp = raw_request(srv.addr, "POST", "transit/encrypt/x", token="root", json={"plaintext": b64("x")})
    assert_error_body(resp, 503)
    # unseal before init is a 400
    resp = raw_request(srv.addr, "PUT", "sys/unseal", json={"key": base64.b64encode(bytes(33)).decode()})
    assert_error_body(resp, 400)


def test_02_init_validation(sealed_server):
    for body in ({"secret_shares": 2, "secret_threshold": 3}, {"secret_shares": 0, "secret_threshold": 0}):
        resp = raw_request(sealed_server.addr, "PUT", "sys/init", json=body)
        assert_error_body(resp, 400)
    assert sealed_server.client().sys.is_initialized() is False


def test_03_init(sealed_server):
    srv = sealed_server
    c = srv.client()
    resp = c.sys.initialize(secret_shares=SHARES, secret_threshold=THRESHOLD)  # PUT sys/init
    assert isinstance(resp["root_token"], str) and resp["root_token"]
    assert len(resp["keys"]) == SHARES
    assert len(resp["keys_base64"]) == SHARES
    assert len(set(resp["keys"])) == SHARES
    for hex_key, b64_key in zip(resp["keys"], resp["keys_base64"]):
        assert bytes.fromhex(hex_key) == unb64(b64_key)  # same share, two encodings
    STATE.update(keys=resp["keys"], keys_b64=resp["keys_base64"], root=resp["root_token"])

    assert c.sys.is_initialized() is True
    with pytest.raises(InvalidRequest):  # only once
        c.sys.initialize(secret_shares=SHARES, secret_threshold=THRESHOLD)

    st = _status(srv)
    assert st["initialized"] is True
    assert st["sealed"] is True
    assert (st["t"], st["n"], st["progress"]) == (THRESHOLD, SHARES, 0)
    assert st["type"] == "shamir"
    code, body = _health(srv)
    assert code == 503
    assert body["initialized"] is True and body["sealed"] is True


def test_04_unseal_progress(sealed_server):
    _need("keys")
    srv = sealed_server
    c = srv.client()
    keys, keys_b64 = STATE["keys"], STATE["keys_b64"]

    st = c.sys.submit_unseal_key(key=keys[0])  # PUT sys/unseal {"key": hex, "migrate": false}
    assert st["sealed"] is True
    assert st["progress"] == 1
    assert (st["t"], st["n"]) == (THRESHOLD, SHARES)

    st = c.sys.submit_unseal_key(key=keys_b64[1])  # base64 form works too
    assert st["sealed"] is True and st["progress"] == 2
    # submitting the same share again (other encoding) does not advance progress
    st = c.sys.submit_unseal_key(key=keys[1])
    assert st["sealed"] is True and st["progress"] == 2
    assert _status(srv)["progress"] == 2

    st = c.sys.submit_unseal_key(key=keys[2])
    assert st["sealed"] is False
    assert st["progress"] == 0
    srv.wait_active()
    code, body = _health(srv)
    assert code == 200
    assert body["initialized"] is True and body["sealed"] is False and body["standby"] is False
    assert c.sys.is_sealed() is False


def test_05_data_operations_after_unseal(sealed_server):
    _need("root")
    c = sealed_server.client(STATE["root"])
    assert c.auth.token.lookup_self()["data"]["policies"] == ["root"]
    _ensure_transit(c)
    key = unique("persist")
    c.secrets.transit.create_key(name=key)
    ct = c.secrets.transit.encrypt_data(name=key, plaintext=b64("survives restart"))["data"]["ciphertext"]
    assert c.secrets.transit.decrypt_data(name=key, ciphertext=ct)["data"]["plaintext"] == b64("survives restart")
    c.secrets.transit.rotate_key(name=key)

    pname = unique("pol")
    c.sys.create_or_update_acl_policy(name=pname, policy=f'path "transit/decrypt/{key}" {{ capabilities = ["update"] }}')
    user_token = c.auth.token.create(policies=[pname], ttl="1h")["auth"]["client_token"]
    STATE.update(key=key, ct=ct, policy=pname, user_token=user_token)


def test_06_seal(sealed_server):
    _need("root", "key")
    srv = sealed_server
    # sealing needs an authorised token
    resp = raw_request(srv.addr, "PUT", "sys/seal")
    assert_error_body(resp, 403)
    c = srv.client(STATE["root"])
    resp = c.sys.seal()  # PUT sys/seal
    assert resp.status_code == 204

    code, body = _health(srv)
    assert code == 503
    assert body["sealed"] is True and body["initialized"] is True
    st = _status(srv)
    assert st["sealed"] is True and st["progress"] == 0
    assert c.sys.is_sealed() is True
    with pytest.raises(VaultDown):  # 503
        c.secrets.transit.encrypt_data(name=STATE["key"], plaintext=b64("x"))
    with pytest.raises(VaultDown):
        c.auth.token.lookup_self()
    resp = raw_request(srv.addr, "POST", f"transit/encrypt/{STATE['key']}", json={"plaintext": b64("x")})
    assert_error_body(resp, 503)  # even without a token


def test_07_bad_unseal_keys(sealed_server):
    _need("keys")
    srv = sealed_server
    c = srv.client()
    keys = STATE["keys"]
    # not hex / base64 at all
    resp = raw_request(srv.addr, "PUT", "sys/unseal", json={"key": "this is not a key!!"})
    assert_error_body(resp, 400)
    # neither key nor reset
    resp = raw_request(srv.addr, "PUT", "sys/unseal", json={})
    assert_error_body(resp, 400)
    assert _status(srv)["progress"] == 0

    # a corrupted share (valid encoding, same length) completing the threshold -> 400 and the
    # attempt is reset
    bad = bytearray(bytes.fromhex(keys[3]))
    bad[0] ^= 0xFF
    bad[1] ^= 0x55
    c.sys.submit_unseal_key(key=keys[0])
    c.sys.submit_unseal_key(key=keys[1])
    with pytest.raises(InvalidRequest):
        c.sys.submit_unseal_key(key=bytes(bad).hex())
    st = _status(srv)
    assert st["sealed"] is True
    assert st["progress"] == 0

    # reset discards submitted shares
    st = c.sys.submit_unseal_key(key=keys[0])
    assert st["progress"] == 1
    st = c.sys.submit_unseal_key(reset=True)  # PUT sys/unseal {"reset": true}
    assert st["progress"] == 0 and st["sealed"] is True


def test_08_restart_keeps_data(sealed_server):
    _need("keys_b64", "root", "key", "ct", "user_token")
    srv = sealed_server
    if not srv.managed:
        pytest.skip("COMPAT_SERVER_CMD not set: cannot restart an external server")
    srv.restart()

    st = _status(srv)
    assert st["initialized"] is True
    assert st["sealed"] is True
    assert (st["t"], st["n"], st["progress"]) == (THRESHOLD, SHARES, 0)
    code, _ = _health(srv)
    assert code == 503

    c = srv.client()
    # a different subset of shares, base64 encoded
    keys_b64 = STATE["keys_b64"]
    for i, k in enumerate((keys_b64[4], keys_b64[2], keys_b64[0])):
        st = c.sys.submit_unseal_key(key=k)
        assert st["sealed"] is (i < 2)
    srv.wait_active()

    root = srv.client(STATE["root"])
    assert root.auth.token.lookup_self()["data"]["policies"] == ["root"]
    data = root.secrets.transit.read_key(name=STATE["key"])["data"]
    assert data["latest_version"] == 2
    assert sorted(data["keys"], key=int) == ["1", "2"]
    out = root.secrets.transit.decrypt_data(name=STATE["key"], ciphertext=STATE["ct"])["data"]["plaintext"]
    assert out == b64("survives restart")
    ct2 = root.secrets.transit.encrypt_data(name=STATE["key"], plaintext=b64("new"))["data"]["ciphertext"]
    assert ct2.startswith("vault:v2:")

    # policies and tokens persisted as well
    assert STATE["policy"] in root.sys.list_acl_policies()["data"]["keys"]
    user = srv.client(STATE["user_token"])
    assert user.secrets.transit.decrypt_data(name=STATE["key"], ciphertext=STATE["ct"])["data"]["plaintext"] == b64(
        "survives restart"
    )
    with pytest.raises(Forbidden):
        user.secrets.transit.encrypt_data(name=STATE["key"], plaintext=b64("x"))
