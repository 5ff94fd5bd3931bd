#!/usr/bin/env python3
"""An offboarding done with Microsoft's own Python sign-in library against
the sandbox's Microsoft Graph twin.

Unmodified MSAL for Python (`msal.ConfidentialClientApplication`, client
credentials with a client secret and with a certificate, both the SHA-256
`x5t#S256`/PS256 assertion MSAL sends by default and the SHA-1 `x5t`/RS256
one) and the documented Graph v1.0 calls made with `requests` on
`https://graph.microsoft.com/v1.0`. Only the transport is pointed at the
sandbox: a `requests.Session` that sends what is addressed to
login.microsoftonline.com and graph.microsoft.com to the sandbox (MSAL
takes it as its `http_client`; MSAL refuses a non-https authority).

    graph_client.py --base-url http://127.0.0.1:PORT --tenant TENANT \
        --client-id ID --secret-file FILE --key-file KEY --cert-file CERT

Exits 0 when every step and every check passed; otherwise prints what failed
and exits 1.
"""

import argparse
import hashlib
import sys
import time

import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

GRAPH = "https://graph.microsoft.com/v1.0"
LOGIN = "https://login.microsoftonline.com"
SCOPE = ["https://graph.microsoft.com/.default"]
LEAVER = "marcus.reyes@example.com"


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


class ToSandbox(requests.Session):
    """Sends Microsoft's hosts to the sandbox; nothing else changes."""

    def __init__(self, base):
        super().__init__()
        self.base = base.rstrip("/")

    def request(self, method, url, *args, **kwargs):
        for host in (LOGIN, "https://graph.microsoft.com"):
            if url.startswith(host + "/"):
                url = self.base + url[len(host):]
        return super().request(method, url, *args, **kwargs)


def app(args, http, credential):
    return msal.ConfidentialClientApplication(
        args.client_id,
        authority=f"{LOGIN}/{args.tenant}",
        client_credential=credential,
        http_client=http,
        instance_discovery=False,
    )


def token(args, http, credential):
    r = app(args, http, credential).acquire_token_for_client(scopes=SCOPE)
    check("access_token" in r, f"no token: {r.get('error')} {r.get('error_codes')}")
    check(r.get("token_type", "").lower() == "bearer", f"token_type {r.get('token_type')}")
    return r["access_token"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base-url", required=True)
    p.add_argument("--tenant", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--secret-file", required=True)
    p.add_argument("--key-file", required=True)
    p.add_argument("--cert-file", required=True)
    args = p.parse_args()
    http = ToSandbox(args.base_url)
    secret = open(args.secret_file).read().strip()
    key = open(args.key_file).read()
    cert = open(args.cert_file).read()

    # Sign-in: secret, certificate (SHA-256, MSAL's default), certificate
    # by SHA-1 thumbprint; a wrong secret is AADSTS7000215.
    bearer = token(args, http, secret)
    token(args, http, {"private_key": key, "public_certificate": cert})
    der = x509.load_pem_x509_certificate(cert.encode()).public_bytes(Encoding.DER)
    token(args, http, {"private_key": key, "thumbprint": hashlib.sha1(der).hexdigest()})
    bad = app(args, http, "not-the-secret").acquire_token_for_client(scopes=SCOPE)
    check(bad.get("error") == "invalid_client", f"wrong secret: {bad.get('error')}")
    check(7000215 in bad.get("error_codes", []), f"wrong secret codes: {bad.get('error_codes')}")

    g = ToSandbox(args.base_url)
    g.headers["Authorization"] = f"Bearer {bearer}"

    def call(method, path, want, **kw):
        r = g.request(method, path if path.startswith("http") else GRAPH + path, **kw)
        check(r.status_code == want, f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r.json() if r.content else None

    def pages(path):
        out, url = [], GRAPH + path
        while url:
            body = call("GET", url, 200)
            out += body["value"]
            url = body.get("@odata.nextLink")
        return out

    # Find: by UPN with $select; a proxy address through the advanced query.
    u = call("GET", f"/users/{LEAVER}?$select=id,accountEnabled,onPremisesSyncEnabled", 200)
    uid = u["id"]
    check(u["accountEnabled"] is True, "enabled at the start")
    r = call(
        "GET",
        "/users?$filter=proxyAddresses/any(p:p eq 'smtp:alex.chen@example.com')&$count=true&$select=id,userPrincipalName",
        200,
        headers={"ConsistencyLevel": "eventual"},
    )
    check(r.get("@odata.count") == 1 and r["value"][0]["userPrincipalName"] == "achen@example.com", f"proxy lookup: {r}")

    # Lists: memberOf page by page; the rest in one $batch.
    member_of = pages(f"/users/{uid}/memberOf?$top=1")
    groups = {m["displayName"]: m for m in member_of if m["@odata.type"] == "#microsoft.graph.group"}
    check("IT Operations" in groups and len(groups) == 4, f"groups: {sorted(groups)}")
    batch = call(
        "POST",
        "/$batch",
        200,
        json={
            "requests": [
                {"id": "1", "method": "GET", "url": f"/oauth2PermissionGrants?$filter=principalId eq '{uid}'"},
                {"id": "2", "method": "GET", "url": f"/users/{uid}/authentication/methods"},
                {"id": "3", "method": "GET", "url": f"/users/{uid}/licenseDetails"},
            ]
        },
    )
    by_id = {r["id"]: r for r in batch["responses"]}
    check(all(by_id[i]["status"] == 200 for i in "123"), f"batch: {batch}")
    grants = by_id["1"]["body"]["value"]
    methods = by_id["2"]["body"]["value"]
    check(len(grants) == 2 and all(x["consentType"] == "Principal" for x in grants), f"grants: {grants}")
    fido = [m for m in methods if m["@odata.type"] == "#microsoft.graph.fido2AuthenticationMethod"]
    check(len(fido) == 1, f"methods: {methods}")

    # Remove.
    check(call("POST", f"/users/{uid}/revokeSignInSessions", 200)["value"] is True, "revoke sessions")
    for x in grants:
        call("DELETE", f"/oauth2PermissionGrants/{x['id']}", 204)
    call("DELETE", f"/users/{uid}/authentication/fido2Methods/{fido[0]['id']}", 204)
    call("DELETE", f"/groups/{groups['IT Operations']['id']}/members/{uid}/$ref", 204)
    ems = "efccb6f7-5641-4e0e-bd10-b4976e1bf68e"
    e3 = "05e9a617-0261-4cee-bb44-138d3ef5d965"
    call("POST", f"/users/{uid}/assignLicense", 200, json={"addLicenses": [], "removeLicenses": [ems]})
    err = call("POST", f"/users/{uid}/assignLicense", 400, json={"addLicenses": [], "removeLicenses": [e3]})
    check("inherited" in err["error"]["message"], f"group licence: {err}")
    call("PATCH", f"/users/{uid}", 204, json={"accountEnabled": False})

    # Confirm with fresh reads once the replicas catch up.
    deadline = time.time() + 15
    while True:
        u = call("GET", f"/users/{uid}?$select=accountEnabled,licenseAssignmentStates", 200)
        left = pages(f"/oauth2PermissionGrants?$filter=principalId eq '{uid}'")
        groups_now = [m["displayName"] for m in pages(f"/users/{uid}/memberOf")]
        skus = [s["skuId"] for s in u["licenseAssignmentStates"]]
        done = u["accountEnabled"] is False and not left and "IT Operations" not in groups_now and ems not in skus
        if done:
            break
        check(time.time() < deadline, f"not confirmed: {u} {left} {groups_now}")
        time.sleep(0.2)
    check(e3 in skus, "the group licence stays until the group membership goes")
    print("graph client: every step confirmed")


if __name__ == "__main__":
    try:
        main()
    except Failed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
