"""Double submit, two tabs, retries: exactly one SolusVM user and one acceptance per version."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

from postpay.adapters.tables import AcceptanceItem, AccountItem
from tests.integration.conftest import PASSWORD, emulator_users, follow, new_email, sign_up, verify_link


def test_many_concurrent_submits_of_one_link_enroll_exactly_once(concurrent_browser, stack):
    # Given one link opened in two tabs of one browser and in three other browsers
    email = new_email()
    browser = concurrent_browser()
    sign_up(browser, email)
    link = verify_link(stack, email)
    browsers = [browser, browser, concurrent_browser(), concurrent_browser(), concurrent_browser()]
    pages = [b.get(link) for b in browsers]
    token = pages[0].field("token")

    def submit(index: int):
        fields = {"token": token, "password": PASSWORD, "accept_tos": "yes", "accept_postpay_terms": "yes"}
        answer = browsers[index].post("/verify", fields, csrf_from=pages[index])
        return answer, follow(browsers[index], answer)  # post-redirect-get: the page that says the outcome

    # When all submit at once
    with ThreadPoolExecutor(max_workers=len(browsers)) as pool:
        answers, results = zip(*pool.map(submit, range(len(browsers))), strict=True)
    # Then exactly one SolusVM user and one acceptance per document
    assert len(emulator_users(stack, email)) == 1
    account = AccountItem.get(email)
    assert account.status == "enrolled"
    assert sorted(a.document for a in AcceptanceItem.query(account.client_id)) == ["postpay", "tos"]
    # and the browser that won sees its account (its other tab too, once signed in, or "already used: log
    # in"); the others are told the link was used, and no used link started a session anywhere
    outcomes: dict[int, set[tuple[int, bool]]] = {}
    for index, page in enumerate(results):
        outcomes.setdefault(id(browsers[index]), set()).add((page.status, page.has("Log in to SolusVM")))
    winners = [o for o in outcomes.values() if (200, True) in o]
    assert len(winners) == 1 and winners[0] <= {(200, True), (410, False)}, outcomes
    assert sum(o == {(410, False)} for o in outcomes.values()) == len(outcomes) - 1, outcomes
    assert sum(any(c.startswith("__Host-session=") for c in answer.cookies) for answer in answers) == 1


def test_concurrent_signups_for_one_address_are_separate_attempts(concurrent_browser, new_browser, stack):
    email = new_email()
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: sign_up(concurrent_browser(), email), range(3)))
    assert [r.status for r in results] == [303, 303, 303]
    assert AccountItem.count(email) == 0, "no account until a link is followed"
    # each sign-up mailed its own link; each opens its own terms page
    links = [re.search(r'href="([^"]+/verify[^"]+)"', m.html).group(1) for m in stack.mails_to(email)]
    assert len(links) == 3
    assert [new_browser().get(link).status for link in links] == [200, 200, 200]
