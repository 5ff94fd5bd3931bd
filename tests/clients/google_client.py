#!/usr/bin/env python3
"""An offboarding done by Google's own Python client against the sandbox.

Unmodified google-api-python-client and google-auth: the discovery-driven
service objects (built from the Directory and Licensing discovery
and Data Transfer discovery documents, with only `rootUrl` pointed at the
sandbox), service-account
credentials with domain-wide delegation (only `token_uri` pointed at the
sandbox; the JWT keeps the audience google-auth always signs), partial
responses (`fields`), the client's own paging (`list_next`) and batching
(`new_batch_http_request`).

    google_client.py --base-url http://127.0.0.1:PORT --key-file SA.json \
        [--directory-doc FILE] [--licensing-doc FILE] [--datatransfer-doc FILE]
        [--leaver EMAIL]

Without the document options the copies shipped inside the client library
are used. Exits 0 when every step and every check passed; otherwise prints
what failed and exits 1.
"""

import argparse
import json
import os
import sys
import time

import google_auth_httplib2
import httplib2
from google.auth.exceptions import GoogleAuthError
from google.oauth2 import service_account
from googleapiclient import discovery
from googleapiclient.errors import HttpError

SCOPES = [
    "https://www.googleapis.com/auth/admin.directory.user",
    "https://www.googleapis.com/auth/admin.directory.user.security",
    "https://www.googleapis.com/auth/admin.directory.group",
    "https://www.googleapis.com/auth/admin.directory.group.member",
    "https://www.googleapis.com/auth/admin.directory.customer.readonly",
    "https://www.googleapis.com/auth/apps.licensing",
    "https://www.googleapis.com/auth/admin.datatransfer",
]
ADMIN = "admin@example.com"


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


def only_keys(obj, allowed, what):
    extra = set(obj) - set(allowed)
    check(not extra, f"{what}: fields not asked for came back: {sorted(extra)}")


def bundled(name):
    return os.path.join(
        os.path.dirname(discovery.__file__), "discovery_cache", "documents", name
    )


def service(doc_path, base_url, http):
    with open(doc_path, encoding="utf-8") as f:
        doc = json.load(f)
    doc["rootUrl"] = base_url.rstrip("/") + "/"
    return discovery.build_from_document(doc, http=http)


def wait_until(what, probe, timeout=30.0):
    """Polls `probe` until it returns a true value (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failed(f"timed out waiting for {what}")
        time.sleep(0.1)


def all_pages(next_page, request, field):
    """Every item of a listing, paged by the client's own `*_next`."""
    out = []
    while request is not None:
        page = request.execute()
        out.extend(page.get(field, []))
        request = next_page(request, page)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--key-file", required=True)
    ap.add_argument("--directory-doc", default=bundled("admin.directory_v1.json"))
    ap.add_argument("--licensing-doc", default=bundled("licensing.v1.json"))
    ap.add_argument(
        "--datatransfer-doc", default=bundled("admin.datatransfer_v1.json")
    )
    ap.add_argument("--leaver", default="dana.whitfield@example.com")
    args = ap.parse_args()
    base = args.base_url.rstrip("/")
    leaver = args.leaver

    with open(args.key_file, encoding="utf-8") as f:
        info = json.load(f)
    info["token_uri"] = base + "/token"
    creds = service_account.Credentials.from_service_account_info(
        info, scopes=SCOPES, subject=ADMIN
    )
    http = google_auth_httplib2.AuthorizedHttp(creds, http=httplib2.Http(timeout=30))
    directory = service(args.directory_doc, base, http)
    licensing = service(args.licensing_doc, base, http)
    datatransfer = service(args.datatransfer_doc, base, http)

    # The customer, and the leaver with only the fields needed.
    customer = directory.customers().get(
        customerKey="my_customer", fields="id,customerDomain"
    ).execute()
    only_keys(customer, ["id", "customerDomain"], "customers.get")
    customer_id = customer["id"]
    user = directory.users().get(
        userKey=leaver, fields="id,primaryEmail,suspended,isEnrolledIn2Sv"
    ).execute()
    only_keys(user, ["id", "primaryEmail", "suspended", "isEnrolledIn2Sv"], "users.get")
    check(user["primaryEmail"] == leaver, f"users.get answered {user['primaryEmail']}")
    check(user["isEnrolledIn2Sv"], "the leaver starts enrolled in 2-Step Verification")

    # OAuth tokens and app passwords, partial.
    tokens = directory.tokens().list(
        userKey=leaver, fields="items(clientId,displayText)"
    ).execute().get("items", [])
    check(tokens, "the leaver has OAuth tokens")
    for t in tokens:
        only_keys(t, ["clientId", "displayText"], "tokens.list item")
    asps = directory.asps().list(userKey=leaver, fields="items/codeId").execute()
    only_keys(asps, ["items"], "asps.list")
    check(asps.get("items"), "the leaver has app passwords")
    for a in asps["items"]:
        only_keys(a, ["codeId"], "asps.list item")

    # Groups: a member search, ordered by email, paged by the client.
    groups_res = directory.groups()
    found = all_pages(
        groups_res.list_next,
        groups_res.list(
            customer="my_customer",
            query=f"memberKey={leaver}",
            orderBy="email",
            maxResults=5,
            fields="nextPageToken,groups(id,email)",
        ),
        "groups",
    )
    emails = [g["email"] for g in found]
    check(len(emails) > 5, f"more than one page of groups: {emails}")
    check(emails == sorted(emails), f"groups ordered by email: {emails}")
    for g in found:
        only_keys(g, ["id", "email"], "groups.list item")
    by_user = all_pages(groups_res.list_next, groups_res.list(userKey=leaver), "groups")
    check(
        sorted(g["email"] for g in by_user) == sorted(emails),
        "userKey= and query=memberKey= list the same groups",
    )
    one = directory.groups().get(groupKey=found[0]["id"], fields="email").execute()
    check(one == {"email": found[0]["email"]}, f"groups.get by id: {one}")
    member = directory.members().get(groupKey=found[0]["email"], memberKey=leaver).execute()
    check(member.get("email") == leaver, f"members.get: {member}")

    # Licences of the customer for the product, paged by the client.
    la = licensing.licenseAssignments()
    product = all_pages(
        la.listForProduct_next,
        la.listForProduct(productId="Google-Apps", customerId=customer_id),
        "items",
    )
    mine = [x for x in product if x["userId"] == leaver]
    check(len(mine) == 1, f"one Google-Apps licence for the leaver: {mine}")
    sku_id = mine[0]["skuId"]
    per_sku = all_pages(
        la.listForProductAndSku_next,
        la.listForProductAndSku(
            productId="Google-Apps",
            skuId=sku_id,
            customerId=customer_id,
            fields="nextPageToken,items/userId",
        ),
        "items",
    )
    check({"userId": leaver} in per_sku, "listForProductAndSku lists the leaver")
    check(len(per_sku) < len(product), "one SKU lists fewer than the product")

    # Revoke: tokens and app passwords one by one, memberships in one batch.
    for t in tokens:
        directory.tokens().delete(userKey=leaver, clientId=t["clientId"]).execute()
    for a in asps["items"]:
        directory.asps().delete(userKey=leaver, codeId=a["codeId"]).execute()
    answers = {}

    def collect(request_id, response, exception):
        answers[request_id] = exception

    batch = directory.new_batch_http_request(callback=collect)
    for g in found:
        batch.add(directory.members().delete(groupKey=g["email"], memberKey=leaver))
    # A part that fails must fail on its own: not a member of this group.
    batch.add(
        directory.members().delete(groupKey="book-club@example.com", memberKey=ADMIN),
        request_id="not-a-member",
    )
    batch.execute()
    failed = {k: e for k, e in answers.items() if e is not None}
    check(len(answers) == len(found) + 1, f"every batch part answered: {answers}")
    check(list(failed) == ["not-a-member"], f"only the bad part failed: {failed}")
    check(failed["not-a-member"].resp.status == 404, "the bad part is a 404")

    # Hand Drive and Calendar over to the admin (Data Transfer API), before
    # the suspension: applications paged by the client, then the transfer.
    apps_res = datatransfer.applications()
    apps = all_pages(
        apps_res.list_next,
        apps_res.list(customerId=customer_id, maxResults=2),
        "applications",
    )
    app_ids = {a["name"]: a["id"] for a in apps}
    check(
        {"Drive and Docs", "Calendar"} <= set(app_ids),
        f"applications.list has Drive and Calendar: {app_ids}",
    )
    drive = apps_res.get(applicationId=app_ids["Drive and Docs"]).execute()
    check(
        drive["transferParams"][0]["key"] == "PRIVACY_LEVEL",
        f"applications.get: {drive}",
    )
    new_owner = directory.users().get(userKey=ADMIN, fields="id").execute()["id"]
    transfer = datatransfer.transfers().insert(
        body={
            "oldOwnerUserId": user["id"],
            "newOwnerUserId": new_owner,
            "applicationDataTransfers": [
                {
                    "applicationId": app_ids["Drive and Docs"],
                    "applicationTransferParams": [
                        {"key": "PRIVACY_LEVEL", "value": ["PRIVATE", "SHARED"]}
                    ],
                },
                {
                    "applicationId": app_ids["Calendar"],
                    "applicationTransferParams": [
                        {"key": "RELEASE_RESOURCES", "value": ["TRUE"]}
                    ],
                },
            ],
        }
    ).execute()
    check(
        transfer.get("overallTransferStatusCode") in ("new", "inProgress"),
        f"transfers.insert answered {transfer}",
    )
    listed = datatransfer.transfers().list(oldOwnerUserId=user["id"]).execute()
    check(
        [t["id"] for t in listed.get("dataTransfers", [])] == [transfer["id"]],
        f"transfers.list by old owner: {listed}",
    )

    # Suspend with users.update (PUT), release the licence, turn off 2SV.
    updated = directory.users().update(userKey=leaver, body={"suspended": True}).execute()
    check(updated.get("suspended") is True, f"users.update answered {updated.get('suspended')}")
    la.delete(productId="Google-Apps", skuId=sku_id, userId=leaver).execute()
    directory.twoStepVerification().turnOff(userKey=leaver).execute()

    # Confirm every removal by fresh reads.
    wait_until(
        "tokens to be gone",
        lambda: "items" not in directory.tokens().list(userKey=leaver).execute(),
    )
    wait_until(
        "app passwords to be gone",
        lambda: "items" not in directory.asps().list(userKey=leaver).execute(),
    )
    wait_until(
        "memberships to be gone",
        lambda: not directory.groups()
        .list(customer="my_customer", query=f"memberKey={leaver}")
        .execute()
        .get("groups"),
    )
    try:
        directory.members().get(groupKey=found[0]["email"], memberKey=leaver).execute()
        raise Failed("members.get still finds the removed membership")
    except HttpError as e:
        check(e.resp.status == 404, f"members.get after removal: {e.resp.status}")
    wait_until(
        "the suspension to show",
        lambda: directory.users().get(userKey=leaver, fields="suspended").execute()
        == {"suspended": True},
    )
    state = directory.users().get(userKey=leaver, fields="isEnrolledIn2Sv").execute()
    check(state == {"isEnrolledIn2Sv": False}, f"2SV after turnOff: {state}")

    def licence_gone():
        try:
            la.get(productId="Google-Apps", skuId=sku_id, userId=leaver).execute()
            return False
        except HttpError as e:
            return e.resp.status == 404

    wait_until("the licence to be released", licence_gone)
    wait_until(
        "the data transfer to complete",
        lambda: datatransfer.transfers()
        .get(dataTransferId=transfer["id"])
        .execute()
        .get("overallTransferStatusCode")
        == "completed",
    )
    print(
        f"offboarded {leaver}: {len(tokens)} tokens, {len(asps['items'])} app passwords, "
        f"{len(found)} groups (batch), licence {sku_id}, Drive and Calendar handed over, "
        "suspended, 2SV off"
    )


if __name__ == "__main__":
    try:
        main()
    except (Failed, HttpError, GoogleAuthError) as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
