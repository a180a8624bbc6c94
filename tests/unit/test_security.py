from __future__ import annotations

from postpay.security import common_passwords, hash_password, new_token, token_hash, verify_password


def test_password_hash_is_salted_scrypt_with_owasp_parameters():
    first, second = hash_password("correct horse battery"), hash_password("correct horse battery")
    assert first != second, "a fresh salt each time"
    assert first.startswith("scrypt$17$8$1$")
    assert verify_password("correct horse battery", first)
    assert not verify_password("correct horse batterY", first)


def test_missing_or_malformed_hash_never_verifies():
    assert not verify_password("anything", None)
    assert not verify_password("anything", "plain-text")
    assert not verify_password("anything", "bcrypt$1$2$3$4$5")


def test_tokens_are_32_random_bytes_and_stored_as_sha256():
    token = new_token()
    assert len(token) == 43 and token != new_token()
    assert len(token_hash(token)) == 64 and token_hash(token) == token_hash(token)


def test_the_common_password_list_has_a_thousand_entries():
    passwords = common_passwords()
    assert len(passwords) >= 990, "1,000 entries, a few the same once lower-cased"
    assert {"123456", "password", "qwerty"} <= passwords
