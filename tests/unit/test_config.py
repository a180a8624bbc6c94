from __future__ import annotations

import pytest

from postpay.config import ConfigError, Settings

BASE = {
    "PUBLIC_BASE_URL": "https://billing.example.com",
    "TABLE_PREFIX": "postpay-",
    "MAIL_FROM": "billing@example.com",
    "SOLUSVM_URL": "https://solus.example.com/api/v1/",
    "SOLUSVM_TOKEN_SECRET": "postpay/solusvm",
    "SSO_URL_TEMPLATE": "https://panel.example.com/?token={token}",
    "TOKEN_PRICE_PARAMETER": "/postpay/price",
    "CURRENCY_PARAMETER": "/postpay/currency",
    "TOS_URL": "https://example.com/tos",
    "TOS_VERSION": "1",
}


def test_minimal_configuration_has_documented_defaults():
    settings = Settings.from_env(BASE)
    assert settings.verify_token_ttl_hours == 24
    assert settings.signup_emails_per_address_per_hour == 3 and settings.signups_per_ip_per_hour == 20
    assert settings.postpay_terms is None and [d.key for d in settings.terms] == ["tos"]
    assert settings.billing_timezone == "UTC" and settings.solusvm_timeout_seconds == 10
    assert settings.solusvm_page_budget_seconds == 8
    assert settings.url("/verify?token=x") == "https://billing.example.com/verify?token=x"
    assert settings.sso_origin == "https://panel.example.com"


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"PUBLIC_BASE_URL": ""}, "PUBLIC_BASE_URL is required"),
        ({"SOLUSVM_URL": "ftp://x"}, "SOLUSVM_URL must be an http(s) URL"),
        ({"SSO_URL_TEMPLATE": "https://panel.example.com/"}, "SSO_URL_TEMPLATE must contain {token}"),
        ({"VERIFY_TOKEN_TTL_HOURS": "soon"}, "VERIFY_TOKEN_TTL_HOURS must be an integer"),
        ({"SOLUSVM_TIMEOUT_SECONDS": "30"}, "SOLUSVM_TIMEOUT_SECONDS must be between 0 and 10"),
        ({"SOLUSVM_PAGE_BUDGET_SECONDS": "28"}, "SOLUSVM_PAGE_BUDGET_SECONDS must be between 0 and 20"),
        ({"BILLING_TIMEZONE": "Mars/Olympus"}, "BILLING_TIMEZONE must be an IANA time zone"),
        ({"POSTPAY_TERMS_VERSION": "2"}, "POSTPAY_TERMS_VERSION is set but POSTPAY_TERMS_URL is not"),
        ({"MAIL_FROM": "nobody"}, "MAIL_FROM must be an email address"),
        ({"INVOICE_NUMBER_FORMAT": "INV-{n}"}, "INVOICE_NUMBER_FORMAT must format {number}"),
    ],
)
def test_bad_configuration_fails_naming_the_setting(changes, named):
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{")):
        Settings.from_env({**BASE, **changes})


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as error:
        Settings.from_env({})
    assert "PUBLIC_BASE_URL" in str(error.value) and "TOS_URL" in str(error.value)


@pytest.mark.parametrize(
    ("base", "page", "expected_path", "expected_url"),
    [
        ("https://billing.example.com", "/signup", "/signup", "https://billing.example.com/signup"),
        ("https://billing.example.com/", "/", "/", "https://billing.example.com/"),
        (
            "https://abc123.execute-api.eu-west-1.amazonaws.com/live/",
            "/login",
            "/live/login",
            "https://abc123.execute-api.eu-west-1.amazonaws.com/live/login",
        ),
        ("https://x.example.com/live", "/", "/live/", "https://x.example.com/live/"),
    ],
)
def test_links_stay_under_the_base_urls_path(base, page, expected_path, expected_url):
    # Given a site served at a stage URL (its path is the stage) or at a domain root
    settings = Settings.from_env({**BASE, "PUBLIC_BASE_URL": base})
    # Then page links and email links both keep the path
    assert settings.path(page) == expected_path
    assert settings.url(page) == expected_url


@pytest.mark.parametrize(
    ("budget", "workers", "per_invocation"),
    [("100", "20", 5), ("4", "1", 4), ("7", "3", 2), ("20", "20", 1), (None, None, 4)],
)
def test_solusvm_budget_is_split_between_workers_without_ever_exceeding_it(budget, workers, per_invocation):
    env = dict(BASE)
    if budget is not None:
        env |= {"SOLUSVM_MAX_CONCURRENCY": budget, "INVOICE_WORKER_CONCURRENCY": workers}
    settings = Settings.from_env(env)
    assert settings.usage_parallelism == per_invocation
    budget = settings.solusvm_max_concurrency
    assert settings.usage_parallelism * settings.invoice_worker_concurrency <= budget


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"SOLUSVM_MAX_CONCURRENCY": "10", "INVOICE_WORKER_CONCURRENCY": "20"}, "must be at least"),
        ({"SOLUSVM_MAX_CONCURRENCY": "0"}, "SOLUSVM_MAX_CONCURRENCY must be at least 1"),
        ({"INVOICE_WORKER_CONCURRENCY": "many"}, "INVOICE_WORKER_CONCURRENCY must be an integer"),
    ],
)
def test_a_solusvm_budget_smaller_than_the_workers_fails_the_start(changes, named):
    with pytest.raises(ConfigError, match=named):
        Settings.from_env({**BASE, **changes})
