"""sys/* on the dev server (mounts, health, seal-status) and malformed-input handling."""

import pytest
from hvac.exceptions import InvalidPath, InvalidRequest

from compat_util import assert_error_body, b64, raw_request, unique

# ---------------------------------------------------------------------------- mounts


def test_mounts_lists_transit(client):
    resp = client.sys.list_mounted_secrets_engines()  # GET sys/mounts
    mounts = resp["data"]
    assert "transit/" in mounts
    entry = mounts["transit/"]
    assert entry["type"] == "transit"
    assert isinstance(entry["accessor"], str) and entry["accessor"]
    assert isinstance(entry["config"], dict)
    assert "description" in entry
    assert mounts["sys/"]["type"] == "system"


def test_enable_use_disable_transit_mount(client):
    path = unique("transit2")
    resp = client.sys.enable_secrets_engine(backend_type="transit", path=path)  # POST sys/mounts/:path
    assert resp.status_code == 204
    mounts = client.sys.list_mounted_secrets_engines()["data"]
    assert mounts[f"{path}/"]["type"] == "transit"

    t = client.secrets.transit
    t.create_key(name="m1", mount_point=path)
    assert t.list_keys(mount_point=path)["data"]["keys"] == ["m1"]
    ct = t.encrypt_data(name="m1", plaintext=b64("mounted"), mount_point=path)["data"]["ciphertext"]
    assert ct.startswith("vault:v1:")
    assert t.decrypt_data(name="m1", ciphertext=ct, mount_point=path)["data"]["plaintext"] == b64("mounted")
    # mounts are independent key namespaces
    with pytest.raises(InvalidPath):
        t.read_key(name="m1")

    # mounting twice on the same path is refused
    with pytest.raises(InvalidRequest):
        client.sys.enable_secrets_engine(backend_type="transit", path=path)

    resp = client.sys.disable_secrets_engine(path=path)  # DELETE sys/mounts/:path
    assert resp.status_code == 204
    assert f"{path}/" not in client.sys.list_mounted_secrets_engines()["data"]
    # the route is gone: 404
    with pytest.raises(InvalidPath):
        t.read_key(name="m1", mount_point=path)
    # unmounting a path that is not mounted is not an error
    assert client.sys.disable_secrets_engine(path=path).status_code == 204


def test_remount_starts_empty(client):
    path = unique("transit3")
    client.sys.enable_secrets_engine(backend_type="transit", path=path)
    client.secrets.transit.create_key(name="gone", mount_point=path)
    client.sys.disable_secrets_engine(path=path)
    client.sys.enable_secrets_engine(backend_type="transit", path=path)
    try:
        with pytest.raises(InvalidPath):
            client.secrets.transit.read_key(name="gone", mount_point=path)
    finally:
        client.sys.disable_secrets_engine(path=path)


def test_enable_bad_mounts(client):
    with pytest.raises(InvalidRequest):
        client.sys.enable_secrets_engine(backend_type="no-such-engine", path=unique("bogus"))
    resp = raw_request(client.url, "POST", f"sys/mounts/{unique('nt')}", client.token, json={})
    assert_error_body(resp, 400)  # type missing


def test_unknown_path_is_404(client):
    resp = raw_request(client.url, "GET", f"{unique('nomount')}/foo", client.token)
    assert_error_body(resp, 404)


# ---------------------------------------------------------------------------- health / seal-status on the dev server


def test_health_dev(dev_addr):
    resp = raw_request(dev_addr, "GET", "sys/health")  # no token needed
    assert resp.status_code == 200
    body = resp.json()
    assert body["initialized"] is True
    assert body["sealed"] is False
    assert body["standby"] is False
    assert isinstance(body["version"], str) and body["version"]
    assert isinstance(body["server_time_utc"], int)
    head = raw_request(dev_addr, "HEAD", "sys/health")
    assert head.status_code == 200


def test_seal_status_and_init_dev(client, dev_addr):
    resp = raw_request(dev_addr, "GET", "sys/seal-status")  # no token needed
    assert resp.status_code == 200
    st = resp.json()
    assert st["sealed"] is False
    assert st["initialized"] is True
    assert st["type"] == "shamir"
    assert st["t"] >= 1 and st["n"] >= st["t"]
    assert st["progress"] == 0
    assert client.sys.read_seal_status()["sealed"] is False
    assert client.sys.is_sealed() is False
    assert client.sys.is_initialized() is True  # GET sys/init -> {"initialized": true}


# ---------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    "path",
    ["transit/encrypt/{key}", "transit/decrypt/{key}", "transit/keys/{key}", "auth/token/create", "sys/policies/acl/{key}"],
)
@pytest.mark.parametrize("body", ["{not json", "[1, 2]", '{"plaintext": '])
def test_invalid_json_is_400(client, new_key, path, body):
    key = new_key()
    method = "PUT" if path.startswith("sys/") else "POST"
    resp = raw_request(
        client.url, method, path.format(key=key), client.token,
        data=body, headers={"Content-Type": "application/json"},
    )
    body = assert_error_body(resp, 400)
    assert body["errors"] and body["errors"][0]


@pytest.mark.parametrize(
    "path,body",
    [
        ("transit/encrypt/{key}", {"plaintext": ["a"]}),
        ("transit/encrypt/{key}", {"plaintext": {"a": 1}}),
        ("transit/encrypt/{key}", {"plaintext": "eA==", "key_version": "abc"}),
        ("transit/encrypt/{key}", {"plaintext": "eA==", "key_version": [1]}),
        ("transit/keys/{key}/config", {"deletion_allowed": "notbool"}),
        ("transit/keys/{key}/config", {"deletion_allowed": [1]}),
        ("transit/keys/{key}/config", {"min_decryption_version": [1]}),
        ("transit/keys/{key}/config", {"min_decryption_version": 1.5}),
        ("transit/keys/{key}/config", {"min_decryption_version": "two"}),
        ("transit/datakey/plaintext/{key}", {"bits": "many"}),
        ("auth/token/create", {"ttl": [1]}),
        ("auth/token/create", {"num_uses": "x"}),
        ("sys/policies/acl/{key}", {"policy": ["a"]}),
        ("sys/mounts/{key}", {"type": ["transit"]}),
    ],
)
def test_wrong_field_types_are_400(client, new_key, path, body):
    key = new_key()
    method = "PUT" if path.startswith("sys/policies") else "POST"
    resp = raw_request(client.url, method, path.format(key=key), client.token, json=body)
    assert_error_body(resp, 400)


def test_numbers_and_bools_as_strings_are_accepted(client, new_key):
    # The vault/bao CLI sends every `k=v` as a JSON string, so Vault parses fields weakly:
    # "2" is an int, "true" a bool.
    key = new_key()
    client.secrets.transit.rotate_key(name=key)
    resp = raw_request(
        client.url, "POST", f"transit/keys/{key}/config", client.token,
        json={"min_decryption_version": "2", "deletion_allowed": "true"},
    )
    assert resp.status_code == 200, resp.text
    data = client.secrets.transit.read_key(name=key)["data"]
    assert data["min_decryption_version"] == 2
    assert data["deletion_allowed"] is True
    resp = raw_request(
        client.url, "POST", f"transit/encrypt/{key}", client.token, json={"plaintext": b64("x"), "key_version": "2"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"]["key_version"] == 2
    resp = raw_request(client.url, "POST", f"transit/datakey/plaintext/{key}", client.token, json={"bits": "128"})
    assert resp.status_code == 200, resp.text


def test_unknown_key_type_is_400(client):
    # an explicitly empty type is unknown too (only an absent type means aes256-gcm96)
    for t in ("aes512-gcm", "", "AES256-GCM96-X", 123):
        name = unique("kt")
        resp = raw_request(client.url, "POST", f"transit/keys/{name}", client.token, json={"type": t})
        assert_error_body(resp, 400)
        with pytest.raises(InvalidPath):
            client.secrets.transit.read_key(name=name)


def test_empty_body_means_defaults(client, key_name):
    # No body at all is fine for endpoints without required fields.
    resp = raw_request(client.url, "POST", f"transit/keys/{key_name}", client.token)
    assert resp.status_code == 200, resp.text
    assert client.secrets.transit.read_key(name=key_name)["data"]["type"] == "aes256-gcm96"
    resp = raw_request(client.url, "POST", f"transit/keys/{key_name}/rotate", client.token)
    assert resp.status_code == 200, resp.text
    assert client.secrets.transit.read_key(name=key_name)["data"]["latest_version"] == 2
