#!/usr/bin/env python3
"""Offboards Marcus Reyes from the sandbox's GitHub organisation with
PyGithub, unmodified: the GitHub App's JWT and an installation token, then
the org's members (paged by Link), his team memberships, his Copilot seat,
the org's installations, the outside collaborator's removal, and his
membership, each confirmed by a fresh read. Exits non-zero on any mismatch.

    python3 github_client.py --base-url URL --key-file github-app.key.pem
"""

import argparse
import sys
import time

import github
from github import Auth

ORG = "example-co"
APP_ID = "424242"
INSTALLATION = 7001
LOGIN = "marcus-reyes_exco"


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def eventually(read, what, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if read():
            return
        time.sleep(0.2)
    check(False, what)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--key-file", required=True)
    args = ap.parse_args()
    key = open(args.key_file).read()

    # The app's JWT, then an installation token.
    gi = github.GithubIntegration(auth=Auth.AppAuth(APP_ID, key), base_url=args.base_url)
    token = gi.get_access_token(INSTALLATION)
    check(token.token.startswith("ghs_"), "an installation token")
    g = github.Github(auth=Auth.Token(token.token), base_url=args.base_url, per_page=25)

    rate = g.get_rate_limit()
    check(rate.resources.core.limit > 0, "the rate limit is reported")

    org = g.get_organization(ORG)
    members = [m.login for m in org.get_members()]
    check(len(members) > 25, f"members read across pages: {len(members)}")
    check(LOGIN in members, "Marcus is a member")
    owners = [m.login for m in org.get_members(role="admin")]
    check(LOGIN in owners, "Marcus is an owner")

    marcus = g.get_user(LOGIN)
    check(org.has_in_members(marcus), "membership check")

    teams = []
    for t in org.get_teams():
        try:
            m = t.get_team_membership(LOGIN)
        except github.UnknownObjectException:
            continue
        teams.append((t, m.role))
    check(len(teams) == 2, f"his teams: {[t.slug for t, _ in teams]}")
    for t, _ in teams:
        t.remove_membership(marcus)

    seats = [s for s in org.get_copilot().get_seats() if s.assignee.login == LOGIN]
    check(len(seats) == 1, "his Copilot seat")
    cancelled = org.get_copilot().remove_seats([LOGIN])
    check(cancelled == 1, f"seats cancelled: {cancelled}")

    apps = [i.app_slug for i in org.get_installations()]
    check("marcus-deploy-bot" in apps, f"installations: {apps}")

    lena = g.get_user("lena-k-dev")
    outside = [u.login for u in org.get_outside_collaborators()]
    check("lena-k-dev" in outside, "the contractor is an outside collaborator")
    org.remove_outside_collaborator(lena)

    org.remove_from_membership(marcus)

    def team_gone():
        for t, _ in teams:
            try:
                t.get_team_membership(LOGIN)
                return False
            except github.UnknownObjectException:
                pass
        return True

    eventually(team_gone, "team memberships gone")
    eventually(lambda: not org.has_in_members(marcus), "membership gone")
    eventually(
        lambda: "lena-k-dev" not in [u.login for u in org.get_outside_collaborators()],
        "outside collaborator gone",
    )
    # Unknown things answer in GitHub's shape.
    try:
        g.get_user("no-such-user-x")
        check(False, "an unknown user is 404")
    except github.UnknownObjectException as e:
        check(e.data.get("message") == "Not Found", f"GitHub's 404 body: {e.data}")
    print(f"offboarded {LOGIN} with PyGithub {github.Consts.DEFAULT_USER_AGENT}")


if __name__ == "__main__":
    main()
