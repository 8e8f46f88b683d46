"""Token auth (auth/token/*) and ACL policies (sys/policies/acl, legacy sys/policy)."""

import pytest
from hvac.exceptions import Forbidden, InvalidPath, InvalidRequest

from compat_util import assert_error_body, b64, raw_request, unique

# ---------------------------------------------------------------------------- tokens


def _create(client, **kw):
    return client.auth.token.create(**kw)


def test_root_lookup_self(client, root_token):
    data = client.auth.token.lookup_self()["data"]
    assert data["id"] == root_token
    assert data["policies"] == ["root"]
    assert data["ttl"] == 0
    assert data["expire_time"] is None
    assert isinstance(data["accessor"], str) and data["accessor"]


def test_create_token_auth_block(client):
    pname = unique("pol")
    client.sys.create_or_update_acl_policy(name=pname, policy='path "transit/*" { capabilities = ["read"] }')
    resp = _create(client, policies=[pname], ttl="1h", meta={"app": "compat"})
    assert resp["data"] is None
    auth = resp["auth"]
    assert isinstance(auth["client_token"], str) and auth["client_token"]
    assert isinstance(auth["accessor"], str) and auth["accessor"]
    assert auth["client_token"] != auth["accessor"]
    # the default policy is added unless no_default_policy; lists are sorted
    assert auth["policies"] == sorted(["default", pname])
    assert auth["token_policies"] == sorted(["default", pname])
    assert auth["metadata"] == {"app": "compat"}
    assert auth["lease_duration"] == 3600
    assert auth["renewable"] is True
    assert auth["orphan"] is False
    assert auth["token_type"] == "service"
    assert auth["num_uses"] == 0


def test_create_token_no_default_policy(client):
    pname = unique("pol")
    client.sys.create_or_update_acl_policy(name=pname, policy='path "transit/*" { capabilities = ["read"] }')
    auth = _create(client, policies=[pname], no_default_policy=True, ttl="30m")["auth"]
    assert auth["policies"] == [pname]
    assert auth["lease_duration"] == 1800


def test_lookup_self_fields(client, new_client):
    auth = _create(client, policies=["default"], ttl="1h", meta={"k": "v"})["auth"]
    token = auth["client_token"]
    data = new_client(token).auth.token.lookup_self()["data"]
    assert data["id"] == token
    assert data["accessor"] == auth["accessor"]
    assert data["policies"] == ["default"]
    assert 3500 <= data["ttl"] <= 3600
    assert data["creation_ttl"] == 3600
    assert isinstance(data["creation_time"], int)
    assert isinstance(data["expire_time"], str) and data["expire_time"]
    assert isinstance(data["issue_time"], str) and data["issue_time"]
    assert data["meta"] == {"k": "v"}
    assert data["renewable"] is True
    assert data["orphan"] is False
    assert data["path"] == "auth/token/create"
    assert data["type"] == "service"
    assert data["num_uses"] == 0
    assert data["explicit_max_ttl"] == 0


def test_lookup_other_token_and_accessor(client):
    auth = _create(client, policies=["default"], ttl="10m")["auth"]
    by_token = client.auth.token.lookup(auth["client_token"])["data"]
    assert by_token["id"] == auth["client_token"]
    assert by_token["accessor"] == auth["accessor"]
    # looking up by accessor never reveals the token itself
    by_acc = client.auth.token.lookup_accessor(auth["accessor"])["data"]
    assert by_acc["id"] == ""
    assert by_acc["accessor"] == auth["accessor"]
    assert by_acc["policies"] == ["default"]


def test_lookup_unknown_token_is_403(client):
    with pytest.raises(Forbidden):
        client.auth.token.lookup("definitely-not-a-token")


def test_renew_self(client, new_client):
    auth = _create(client, policies=["default"], ttl="10m")["auth"]
    renewed = new_client(auth["client_token"]).auth.token.renew_self()["auth"]
    assert renewed["client_token"] == auth["client_token"]
    assert renewed["accessor"] == auth["accessor"]
    assert renewed["lease_duration"] == 600


def test_revoke_token(client, new_client):
    pname = unique("pol")
    key = unique("key")
    client.secrets.transit.create_key(name=key)
    client.sys.create_or_update_acl_policy(
        name=pname, policy=f'path "transit/encrypt/{key}" {{ capabilities = ["update"] }}'
    )
    token = _create(client, policies=[pname], ttl="10m")["auth"]["client_token"]
    user = new_client(token)
    assert user.secrets.transit.encrypt_data(name=key, plaintext=b64("x"))["data"]["ciphertext"]
    assert user.is_authenticated() is True

    resp = client.auth.token.revoke(token)
    assert resp.status_code == 204
    with pytest.raises(Forbidden):
        user.auth.token.lookup_self()
    with pytest.raises(Forbidden):
        user.secrets.transit.encrypt_data(name=key, plaintext=b64("x"))
    assert user.is_authenticated() is False
    # revoking again is not an error
    assert client.auth.token.revoke(token).status_code == 204


def test_revoke_self(client, new_client):
    token = _create(client, policies=["default"], ttl="10m")["auth"]["client_token"]
    user = new_client(token)
    resp = user.auth.token.revoke_self()
    assert resp.status_code == 204
    with pytest.raises(Forbidden):
        user.auth.token.lookup_self()


def test_revoke_self_needs_default_policy(client, new_client):
    # revoke-self / lookup-self are granted by the `default` policy only.
    pname = unique("pol")
    client.sys.create_or_update_acl_policy(name=pname, policy='path "transit/*" { capabilities = ["read"] }')
    token = _create(client, policies=[pname], no_default_policy=True, ttl="10m")["auth"]["client_token"]
    user = new_client(token)
    with pytest.raises(Forbidden):
        user.auth.token.revoke_self()
    with pytest.raises(Forbidden):
        user.auth.token.lookup_self()
    # the token is still valid: root can look it up
    assert client.auth.token.lookup(token)["data"]["id"] == token


def test_bad_and_missing_token_are_403(new_client, dev_addr):
    # Vault answers 403 (not 401) for unknown and for absent tokens.
    bad = new_client("not-a-real-token")
    with pytest.raises(Forbidden):
        bad.auth.token.lookup_self()
    with pytest.raises(Forbidden):
        bad.secrets.transit.encrypt_data(name="whatever", plaintext=b64("x"))
    assert bad.is_authenticated() is False
    resp = raw_request(dev_addr, "POST", "transit/encrypt/whatever", token=None, json={"plaintext": b64("x")})
    assert_error_body(resp, 403)
    resp = raw_request(dev_addr, "GET", "auth/token/lookup-self", token=None)
    assert_error_body(resp, 403)


def test_num_uses(client, new_client):
    auth = _create(client, policies=["default"], ttl="10m", num_uses=2)["auth"]
    assert auth["num_uses"] == 2
    user = new_client(auth["client_token"])
    user.auth.token.lookup_self()
    user.auth.token.lookup_self()
    with pytest.raises(Forbidden):
        user.auth.token.lookup_self()


def test_invalid_ttl_is_400(client):
    with pytest.raises(InvalidRequest):
        _create(client, ttl="not-a-duration")


def test_token_ttl_numeric_seconds_and_string_bool(client):
    # Vault's field parser is weakly typed: a TTL may be a number of seconds, a bool a string.
    auth = client.adapter.post("/v1/auth/token/create", json={"ttl": 120, "renewable": "false"})["auth"]
    assert auth["lease_duration"] == 120
    assert auth["renewable"] is False


# ---------------------------------------------------------------------------- policies

POLICY = 'path "transit/encrypt/x" {\n  capabilities = ["update"]\n}\n'


def test_acl_policy_crud(client):
    name = unique("pol")
    resp = client.sys.create_or_update_acl_policy(name=name, policy=POLICY)
    assert resp.status_code == 204
    data = client.sys.read_acl_policy(name)["data"]
    assert data["name"] == name
    assert data["policy"] == POLICY  # stored verbatim
    keys = client.sys.list_acl_policies()["data"]["keys"]  # LIST sys/policies/acl
    assert name in keys and "default" in keys and "root" in keys
    resp = raw_request(client.url, "GET", "sys/policies/acl?list=true", client.token)
    assert resp.status_code == 200 and name in resp.json()["data"]["keys"]
    assert client.sys.delete_acl_policy(name).status_code == 204
    with pytest.raises(InvalidPath):
        client.sys.read_acl_policy(name)
    assert name not in client.sys.list_acl_policies()["data"]["keys"]
    # deleting a policy that does not exist is not an error
    assert client.sys.delete_acl_policy(name).status_code == 204


def test_acl_policy_update(client):
    name = unique("pol")
    client.sys.create_or_update_acl_policy(name=name, policy=POLICY)
    new = 'path "transit/decrypt/x" {\n  capabilities = ["update"]\n}\n'
    client.sys.create_or_update_acl_policy(name=name, policy=new)
    assert client.sys.read_acl_policy(name)["data"]["policy"] == new


def test_legacy_policy_endpoints(client):
    name = unique("pol")
    resp = client.sys.create_or_update_policy(name=name, policy=POLICY)  # PUT sys/policy/:name
    assert resp.status_code == 204
    legacy = client.sys.read_policy(name)  # GET sys/policy/:name
    # the legacy endpoint calls the text "rules" (the new one calls it "policy")
    assert legacy["data"]["name"] == name
    assert legacy["data"]["rules"] == POLICY
    listed = client.sys.list_policies()["data"]  # GET sys/policy
    assert name in listed["policies"]
    assert name in listed["keys"]
    # both APIs see the same policy store
    assert client.sys.read_acl_policy(name)["data"]["policy"] == POLICY
    other = unique("pol")
    client.sys.create_or_update_acl_policy(name=other, policy=POLICY)
    assert client.sys.read_policy(other)["data"]["rules"] == POLICY
    assert client.sys.delete_policy(name).status_code == 204
    with pytest.raises(InvalidPath):
        client.sys.read_policy(name)
    with pytest.raises(InvalidPath):
        client.sys.read_acl_policy(name)
    client.sys.delete_policy(other)


def test_policy_errors(client):
    with pytest.raises(InvalidRequest):
        client.sys.create_or_update_acl_policy(name=unique("pol"), policy="this is not hcl {{{")
    with pytest.raises(InvalidRequest):
        client.sys.create_or_update_acl_policy(
            name=unique("pol"), policy='path "x" { capabilities = ["frobnicate"] }'
        )
    resp = raw_request(client.url, "PUT", f"sys/policies/acl/{unique('pol')}", client.token, json={})
    assert_error_body(resp, 400)  # policy missing
    with pytest.raises(InvalidRequest):
        client.sys.create_or_update_acl_policy(name="root", policy=POLICY)
    with pytest.raises(InvalidRequest):
        client.sys.delete_acl_policy("root")
    with pytest.raises(InvalidRequest):
        client.sys.delete_acl_policy("default")
    with pytest.raises(InvalidPath):
        client.sys.read_acl_policy(unique("missing"))


# ---------------------------------------------------------------------------- enforcement


def test_encrypt_only_policy(client, limited_token, new_key):
    key = new_key()
    user, _, _ = limited_token(f'path "transit/encrypt/{key}" {{ capabilities = ["update"] }}')
    ct = user.secrets.transit.encrypt_data(name=key, plaintext=b64("x"))["data"]["ciphertext"]
    with pytest.raises(Forbidden):
        user.secrets.transit.decrypt_data(name=key, ciphertext=ct)
    with pytest.raises(Forbidden):
        user.secrets.transit.read_key(name=key)
    with pytest.raises(Forbidden):
        user.sys.list_mounted_secrets_engines()
    other = new_key()
    with pytest.raises(Forbidden):
        user.secrets.transit.encrypt_data(name=other, plaintext=b64("x"))
    # root can decrypt what the limited token encrypted
    assert client.secrets.transit.decrypt_data(name=key, ciphertext=ct)["data"]["plaintext"] == b64("x")


def test_update_only_does_not_upsert(client, limited_token):
    # Encrypting to a missing key needs `create`; with only `update` it is 403 and no key appears.
    prefix = unique("up")
    user, _, _ = limited_token(f'path "transit/encrypt/{prefix}-*" {{ capabilities = ["update"] }}')
    with pytest.raises(Forbidden):
        user.secrets.transit.encrypt_data(name=f"{prefix}-a", plaintext=b64("x"))
    with pytest.raises(InvalidPath):
        client.secrets.transit.read_key(name=f"{prefix}-a")
    user2, _, _ = limited_token(f'path "transit/encrypt/{prefix}-*" {{ capabilities = ["create", "update"] }}')
    ct = user2.secrets.transit.encrypt_data(name=f"{prefix}-a", plaintext=b64("x"))["data"]["ciphertext"]
    assert ct.startswith("vault:v1:")
    assert client.secrets.transit.read_key(name=f"{prefix}-a")["data"]["latest_version"] == 1


def test_glob_policy(client, limited_token):
    prefix = unique("app")
    inside = [f"{prefix}-one", f"{prefix}-two"]
    outside = unique("other")
    for k in inside + [outside]:
        client.secrets.transit.create_key(name=k)
    user, _, _ = limited_token(
        f'path "transit/encrypt/{prefix}-*" {{ capabilities = ["update"] }}\n'
        f'path "transit/decrypt/{prefix}-*" {{ capabilities = ["update"] }}\n'
    )
    for k in inside:
        ct = user.secrets.transit.encrypt_data(name=k, plaintext=b64(k))["data"]["ciphertext"]
        assert user.secrets.transit.decrypt_data(name=k, ciphertext=ct)["data"]["plaintext"] == b64(k)
    with pytest.raises(Forbidden):
        user.secrets.transit.encrypt_data(name=outside, plaintext=b64("x"))
    # the glob is a prefix match on the whole path, so the bare prefix without "-" is outside it
    with pytest.raises(Forbidden):
        user.secrets.transit.encrypt_data(name=prefix, plaintext=b64("x"))


def test_deny_more_specific_path(client, limited_token):
    prefix = unique("dn")
    allowed, denied = f"{prefix}-ok", f"{prefix}-secret"
    for k in (allowed, denied):
        client.secrets.transit.create_key(name=k)
    user, _, _ = limited_token(
        f'path "transit/encrypt/{prefix}-*" {{ capabilities = ["update"] }}\n'
        f'path "transit/encrypt/{denied}" {{ capabilities = ["deny"] }}\n'
    )
    user.secrets.transit.encrypt_data(name=allowed, plaintext=b64("x"))
    with pytest.raises(Forbidden):
        user.secrets.transit.encrypt_data(name=denied, plaintext=b64("x"))


def test_deny_in_second_policy_wins(client, new_client):
    # Two policies on the same path: one allows, one denies -> deny wins.
    key = unique("key")
    client.secrets.transit.create_key(name=key)
    allow, deny = unique("pol"), unique("pol")
    client.sys.create_or_update_acl_policy(name=allow, policy='path "transit/encrypt/*" { capabilities = ["update"] }')
    client.sys.create_or_update_acl_policy(name=deny, policy='path "transit/encrypt/*" { capabilities = ["deny"] }')
    both = client.auth.token.create(policies=[allow, deny], ttl="10m")["auth"]["client_token"]
    only_allow = client.auth.token.create(policies=[allow], ttl="10m")["auth"]["client_token"]
    new_client(only_allow).secrets.transit.encrypt_data(name=key, plaintext=b64("x"))
    with pytest.raises(Forbidden):
        new_client(both).secrets.transit.encrypt_data(name=key, plaintext=b64("x"))


def test_policy_change_applies_to_existing_token(client, limited_token, new_key):
    key = new_key()
    user, _, pname = limited_token(f'path "transit/encrypt/{key}" {{ capabilities = ["update"] }}')
    ct = user.secrets.transit.encrypt_data(name=key, plaintext=b64("y"))["data"]["ciphertext"]
    with pytest.raises(Forbidden):
        user.secrets.transit.decrypt_data(name=key, ciphertext=ct)
    client.sys.create_or_update_acl_policy(
        name=pname,
        policy=f'path "transit/encrypt/{key}" {{ capabilities = ["update"] }}\n'
        f'path "transit/decrypt/{key}" {{ capabilities = ["update"] }}\n',
    )
    assert user.secrets.transit.decrypt_data(name=key, ciphertext=ct)["data"]["plaintext"] == b64("y")
    # deleting the policy removes the access again
    client.sys.delete_acl_policy(pname)
    with pytest.raises(Forbidden):
        user.secrets.transit.decrypt_data(name=key, ciphertext=ct)


def test_read_and_list_capabilities(client, limited_token, new_key):
    key = new_key()
    user, _, _ = limited_token(
        'path "transit/keys" { capabilities = ["list"] }\n'
        f'path "transit/keys/{key}" {{ capabilities = ["read"] }}\n'
    )
    assert key in user.secrets.transit.list_keys()["data"]["keys"]
    assert user.secrets.transit.read_key(name=key)["data"]["name"] == key
    with pytest.raises(Forbidden):  # read does not imply update (rotate)
        user.secrets.transit.rotate_key(name=key)
    with pytest.raises(Forbidden):  # nor delete
        user.secrets.transit.delete_key(name=key)
