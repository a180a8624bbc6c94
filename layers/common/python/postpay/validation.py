"""Form validation: one message per field, values kept (never the password)."""

from __future__ import annotations

import re
import unicodedata

from postpay.models import SignupForm

NAME_MAX = 100
COMPANY_MAX = 100
EMAIL_MAX = 254
PASSWORD_MIN = 10
PASSWORD_MAX = 128

# A pragmatic address check (RFC 5321 lengths, one @, a dotted domain of LDH labels);
# delivery proves the rest.
_LOCAL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def normalize_email(raw: str) -> str:
    return raw.strip().lower()


def email_problem(email: str) -> str | None:
    if not email:
        return "Enter your email address."
    if len(email) > EMAIL_MAX:
        return f"Use at most {EMAIL_MAX} characters."
    local, at, domain = email.rpartition("@")
    if (
        not at
        or not local
        or len(local) > 64
        or not _LOCAL.match(local)
        or local.startswith(".")
        or local.endswith(".")
        or ".." in local
        or "." not in domain
        or not all(_LABEL.match(label) for label in domain.split("."))
        or domain.rsplit(".", 1)[1].isdigit()
    ):
        return "Enter a valid email address, like name@example.com."
    return None


# zxcvbn's score: 3 is "safely unguessable: moderate protection from offline slow-hash attacks".
PASSWORD_MIN_SCORE = 3
# zxcvbn reads only this much: its cost grows with the square of the length times the l33t substitutions it
# tries (a crafted 128 characters: ~9 s of CPU here, 32: under 0.5 s). What follows can only add strength.
PASSWORD_ESTIMATE_LENGTH = 32


def password_problem(password: str, email: str, *, name: str = "", company: str = "") -> str | None:
    """Length 10-128, and not guessable by zxcvbn (common passwords, repeats, sequences, dictionary words,
    the person's own email, name or company)."""
    if not password:
        return "Choose a password."
    if len(password) < PASSWORD_MIN:
        return f"Use at least {PASSWORD_MIN} characters."
    if len(password) > PASSWORD_MAX:
        return f"Use at most {PASSWORD_MAX} characters."
    if email and password.strip().lower() == email:
        return "Your password must not be your email address."
    personal = [value for value in (email, email.partition("@")[0], name, company) if value]
    personal += [word for value in (name, company) for word in value.split() if len(word) > 2]
    personal += ["".join(value.split()) for value in (name, company) if value]  # "adalovelace1"
    estimated = password[:PASSWORD_ESTIMATE_LENGTH]
    from zxcvbn import zxcvbn  # its dictionaries cost a page's cold start more than the rest of the product

    strength = zxcvbn(estimated, user_inputs=personal, max_length=PASSWORD_ESTIMATE_LENGTH)
    if strength["score"] < PASSWORD_MIN_SCORE:
        warning = (
            strength["feedback"]["warning"] or "It is too close to your name, email or a common pattern."
        )
        return f"This password is too easy to guess: {warning.rstrip('.')}. Try a few unrelated words."
    return None


def _text_problem(value: str, maximum: int, label: str, *, required: bool) -> str | None:
    if required and not value:
        return f"Enter your {label}."
    if len(value) > maximum:
        return f"Use at most {maximum} characters."
    if _CONTROL.search(value):
        return "Remove the control characters."
    return None


def clean_text(value: str) -> str:
    return unicodedata.normalize("NFC", " ".join(value.split()))


def validate_signup(fields: dict[str, str]) -> tuple[SignupForm | None, dict[str, str]]:
    """Returns the cleaned form, or None and a message per invalid field."""
    name = clean_text(fields.get("name", ""))
    company = clean_text(fields.get("company", ""))
    email = normalize_email(fields.get("email", ""))
    password = fields.get("password", "")
    problems = {
        "name": _text_problem(name, NAME_MAX, "name", required=True),
        "company": _text_problem(company, COMPANY_MAX, "company", required=False),
        "email": email_problem(email),
        "password": password_problem(password, email, name=name, company=company),
    }
    errors = {field: message for field, message in problems.items() if message}
    if errors:
        return None, errors
    return SignupForm(name=name, company=company, email=email, password=password), {}


ADDRESS_LINES = 5
ADDRESS_LINE_MAX = 100
TAX_ID_MAX = 20
# Letters, digits and the separators tax ids are written with; spaces and dots are dropped when stored.
_TAX_ID = re.compile(r"^[A-Z0-9][A-Z0-9-]{1,19}$")


def validate_billing_details(
    fields: dict[str, str],
) -> tuple[tuple[str, ...], str, dict[str, str]]:
    """The client's billing address (lines) and tax id, cleaned; or a message per invalid field.

    Both are optional: empty clears them."""
    errors: dict[str, str] = {}
    raw_lines = fields.get("billing_address", "").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = tuple(clean_text(line) for line in raw_lines if line.strip())
    if len(lines) > ADDRESS_LINES:
        errors["billing_address"] = f"Use at most {ADDRESS_LINES} lines."
    elif any(len(line) > ADDRESS_LINE_MAX for line in lines):
        errors["billing_address"] = f"Use at most {ADDRESS_LINE_MAX} characters on a line."
    elif any(_CONTROL.search(line) for line in lines):
        errors["billing_address"] = "Remove the control characters."
    tax_id = re.sub(r"[\s.]", "", fields.get("tax_id", "")).upper()
    if tax_id and (len(tax_id) > TAX_ID_MAX or not _TAX_ID.match(tax_id)):
        errors["tax_id"] = (
            f"Use 2 to {TAX_ID_MAX} letters and digits, for example DE123456789 (dashes are allowed)."
        )
    return lines, tax_id, errors
