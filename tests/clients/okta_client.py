"""An offboarding with Okta's own Python SDK (okta-sdk-python, `pip install
okta`), unmodified: the Management API client pointed at the sandbox's
Okta twin with the demo org's API token.

Usage: python tests/clients/okta_client.py --org-url http://127.0.0.1:8700 \
           --token-file keys/okta-api-token
   or: ... --private-key keys/okta-demo.key.pem --client-id 0oaoffboarddemo0svc
(the OAuth service app: the SDK signs a private_key_jwt client assertion
and asks the org authorization server for a token with the okta.* scopes).

The SDK refuses an org URL that is not https unless its testing switch is
on; a client can only set that switch through the environment
(OKTA_TESTING_TESTINGDISABLEHTTPSCHECK) or its YAML file, so this script
sets the variable before the SDK reads its configuration. The SDK's cache
stays off (its default), so every read below goes to the server.

It offboards Marcus Reyes (urgent termination: sessions with OAuth tokens,
grants and refresh tokens per client, factors, direct apps, OKTA_GROUP
memberships, a direct admin role, then suspend) and Lena Kowalski (the
contractor: her API token, deactivation, a factor reset, deletion), and
checks what Okta refuses: a group-held app, a group-held role, a BUILT_IN membership, a
second deactivation, a suspend of a user who is not ACTIVE.
"""

import argparse
import asyncio
import os
import sys

os.environ.setdefault("OKTA_TESTING_TESTINGDISABLEHTTPSCHECK", "true")

from okta.pagination import PaginationHelper  # noqa: E402
from okta.client import Client  # noqa: E402


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def ok(err, what):
    check(err is None, f"{what}: {err}")


def refused(err, status, code, what):
    check(err is not None, f"{what} was not refused")
    got_status = getattr(err, "status", None)
    got_code = getattr(err, "error_code", None)
    check(
        got_status == status and got_code == code,
        f"{what}: expected {status} {code}, got {got_status} {got_code} ({err})",
    )


def inner(model):
    """The member of an anyOf/oneOf model (role assignments, group
    profiles), or the model itself."""
    return getattr(model, "actual_instance", None) or model


async def call(coro):
    """(value, error) of an SDK call: its methods answer (value, response,
    error), or (response, error) for some calls without a body."""
    res = await coro
    return (res[0] if len(res) == 3 else None), res[-1]


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--org-url", required=True)
    p.add_argument("--token-file", help="an API token (SSWS)")
    p.add_argument("--private-key", help="the service app's key (private_key_jwt)")
    p.add_argument("--client-id")
    a = p.parse_args()
    config = {"orgUrl": a.org_url.rstrip("/")}
    if a.private_key:
        config.update(
            authorizationMode="PrivateKey",
            clientId=a.client_id,
            privateKey=open(a.private_key).read(),
            scopes=[
                f"okta.{family}.{access}"
                for family in ["users", "apps", "groups", "roles", "apiTokens", "userGrants", "factors"]
                for access in ["read", "manage"]
            ],
        )
    else:
        config["token"] = open(a.token_file).read().strip()
    okta = Client(config)

    # Find: by login, then by search on the profile email (case-insensitive).
    marcus, err = await call(okta.get_user("marcus.reyes@example.com"))
    ok(err, "get_user by login")
    check(marcus.status.value == "ACTIVE", f"Marcus is {marcus.status}")
    uid = marcus.id
    found, err = await call(okta.list_users(search='profile.email eq "ALEX.CHEN@example.com"'))
    ok(err, "list_users search")
    check(
        [u.profile.login for u in found] == ["achen@example.com"],
        f"search found {[u.profile.login for u in found]}",
    )

    # Sessions, with the OAuth tokens they issued.
    _, err = await call(okta.revoke_user_sessions(uid, oauth_tokens=True))
    ok(err, "revoke_user_sessions")

    # OAuth grants and refresh tokens, client by client.
    grants, err = await call(okta.list_user_grants(uid))
    ok(err, "list_user_grants")
    check(len(grants) >= 1, "Marcus has a grant")
    clients, err = await call(okta.list_user_clients(uid))
    ok(err, "list_user_clients")
    check({g.client_id for g in grants} <= {c.client_id for c in clients}, "grants' clients listed")
    for c in clients:
        cg, err = await call(okta.list_grants_for_user_and_client(uid, c.client_id))
        ok(err, f"list_grants_for_user_and_client {c.client_id}")
        if cg:
            _, err = await call(okta.revoke_grants_for_user_and_client(uid, c.client_id))
            ok(err, f"revoke_grants_for_user_and_client {c.client_id}")
        tokens, err = await call(okta.list_refresh_tokens_for_user_and_client(uid, c.client_id))
        ok(err, f"list_refresh_tokens_for_user_and_client {c.client_id}")
        for t in tokens:
            one, err = await call(okta.get_refresh_token_for_user_and_client(uid, c.client_id, t.id))
            ok(err, f"get_refresh_token_for_user_and_client {t.id}")
            check(one.id == t.id, "the token read back")
            _, err = await call(okta.revoke_token_for_user_and_client(uid, c.client_id, t.id))
            # 404: revoked already, with the sessions (oauthTokens=true),
            # though the listing has not caught up yet.
            if getattr(err, "status", None) != 404:
                ok(err, f"revoke_token_for_user_and_client {t.id}")

    # Factors.
    factors, err = await call(okta.list_factors(uid))
    ok(err, "list_factors")
    check(len(factors) >= 2, f"Marcus has {len(factors)} factors")
    for f in factors:
        _, err = await call(okta.unenroll_factor(uid, f.id))
        ok(err, f"unenroll_factor {f.id}")

    # Apps: direct assignments removed, a group-held one refused.
    links, err = await call(okta.list_app_links(uid))
    ok(err, "list_app_links")
    direct = 0
    for link in links:
        au, err = await call(okta.get_application_user(link.app_instance_id, uid))
        ok(err, f"get_application_user {link.app_name}")
        _, err = await call(okta.unassign_user_from_application(link.app_instance_id, uid))
        if au.scope == "USER":
            ok(err, f"unassign_user_from_application {link.app_name}")
            direct += 1
        else:
            refused(err, 403, "E0000090", f"unassigning group-held {link.app_name}")
    check(direct >= 2, f"{direct} direct apps removed")

    # Admin roles: the direct one removed, the group-held one refused.
    roles, err = await call(okta.list_assigned_roles_for_user(uid))
    ok(err, "list_assigned_roles_for_user")
    kinds = set()
    for r in roles:
        kind = inner(r)
        assignment = getattr(kind, "assignment_type", None)
        assignment = getattr(assignment, "value", assignment)
        kinds.add(assignment)
        _, err = await call(okta.unassign_role_from_user(uid, kind.id))
        if assignment == "USER":
            ok(err, f"unassign_role_from_user {kind.id}")
        else:
            refused(err, 403, "E0000006", f"unassigning group-held role {kind.id}")
    check(kinds == {"USER", "GROUP"}, f"role assignment types {kinds}")

    # Groups: OKTA_GROUP memberships removed; BUILT_IN refused.
    groups, err = await call(okta.list_user_groups(uid))
    ok(err, "list_user_groups")
    it = [g for g in groups if inner(g.profile).name == "IT Helpdesk"]
    check(len(it) == 1, "Marcus is in IT Helpdesk")
    members, err = await call(okta.list_group_users(it[0].id))
    ok(err, "list_group_users")
    check(uid in [m.id for m in members], "Marcus listed as a member")
    for g in groups:
        gtype = getattr(g.type, "value", g.type)
        name = inner(g.profile).name
        _, err = await call(okta.unassign_user_from_group(g.id, uid))
        if gtype == "OKTA_GROUP":
            ok(err, f"unassign_user_from_group {name}")
        else:
            refused(err, 403, "E0000006", f"unassigning {gtype} group {name}")

    # Close: suspend; a second suspend is refused.
    _, err = await call(okta.suspend_user(uid))
    ok(err, "suspend_user")
    _, err = await call(okta.suspend_user(uid))
    refused(err, 400, "E0000001", "suspending a SUSPENDED user")
    again, err = await call(okta.get_user(uid))
    ok(err, "get_user after suspend")
    check(again.status.value == "SUSPENDED", f"Marcus is {again.status}")

    # Fresh reads until nothing removable is listed (Okta's listings catch
    # up with a removal after a while).
    for _ in range(100):
        grants, err = await call(okta.list_user_grants(uid))
        ok(err, "list_user_grants again")
        factors, err = await call(okta.list_factors(uid))
        ok(err, "list_factors again")
        if grants == [] and factors == []:
            break
        await asyncio.sleep(0.1)
    check(grants == [] and factors == [], f"left: {grants} {factors}")

    # Every user, with the SDK's own paging (`limit`, `after` from the
    # `Link: rel="next"` header).
    logins, after = [], None
    for _ in range(50):
        page, resp, err = await okta.list_users(limit=25, after=after)
        ok(err, "list_users page")
        logins += [u.profile.login for u in page]
        after = PaginationHelper.extract_next_cursor(resp.headers)
        if after is None:
            break
    check(len(logins) > 25 and len(set(logins)) == len(logins), f"paged {len(logins)} users")
    check("lena.kowalski@example.com" in logins, "Lena is listed")

    # The contractor's API token: the org-wide list, filtered by owner.
    lena, err = await call(okta.get_user("lena.kowalski@example.com"))
    ok(err, "get_user Lena")
    tokens, err = await call(okta.list_api_tokens())
    ok(err, "list_api_tokens")
    hers = [t for t in tokens if t.user_id == lena.id]
    check(len(hers) == 1, f"Lena owns {len(hers)} API tokens")
    _, err = await call(okta.revoke_api_token(hers[0].id))
    ok(err, "revoke_api_token")
    for _ in range(100):
        _, err = await call(okta.get_api_token(hers[0].id))
        if err is not None:
            break
        await asyncio.sleep(0.1)
    refused(err, 404, "E0000007", "reading a revoked API token")

    # Deactivation: done, then refused a second time.
    _, err = await call(okta.deactivate_user(lena.id, send_email=False))
    ok(err, "deactivate_user")
    gone, err = await call(okta.get_user(lena.id))
    ok(err, "get_user after deactivate")
    check(gone.status.value == "DEPROVISIONED", f"Lena is {gone.status}")
    _, err = await call(okta.deactivate_user(lena.id))
    refused(err, 404, "E0000007", "deactivating a DEPROVISIONED user")
    _, err = await call(okta.suspend_user(lena.id))
    refused(err, 400, "E0000001", "suspending a DEPROVISIONED user")

    # Factors reset in one call, then the account deleted: the first
    # delete of a DEPROVISIONED user removes it for good.
    _, err = await call(okta.reset_factors(lena.id))
    ok(err, "reset_factors")
    apps, err = await call(okta.list_application_users(links[0].app_instance_id))
    ok(err, "list_application_users")
    check(lena.id not in [a.id for a in apps], "a deactivated user holds no app")
    _, err = await call(okta.delete_user(lena.id))
    ok(err, "delete_user")
    _, err = await call(okta.get_user(lena.id))
    refused(err, 404, "E0000007", "reading a deleted user")

    print(f"offboarded {marcus.profile.login} and {lena.profile.login}")


asyncio.run(main())
