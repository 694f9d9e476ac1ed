"""mimir_tui.secrets, the one home of masking: every pattern once, by key, by shape, by value."""

from __future__ import annotations

import pytest

from mimir_tui.secrets import MASK, SecretMasker, is_secret_key, mask_text, mask_tree, mask_url, secret_values


def _masker(*values: str) -> SecretMasker:
    masker = SecretMasker()
    masker.add(set(values))
    return masker


# (what, masking function, text in, text out): each pattern once, and what must stay as it is.
CASES = [
    ("URL password", mask_text, "cannot reach postgres://u:pw@h/db now", "cannot reach postgres://u:***@h/db now"),
    ("URL password, empty user", mask_text, "redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
    ("URL password with a /", mask_text, "at mysql://u:pa/ss@h/db: refused", "at mysql://u:***@h/db: refused"),
    ("URL with a port and an @ in its path", mask_text, "https://example.com:443/@me", "https://example.com:443/@me"),
    ("URL with a port and an @ in its query", mask_text, "http://h:8080/?q=a@b.com", "http://h:8080/?q=a@b.com"),
    ("IPv6 URL with an @ in its path", mask_text, "http://[::1]:8080/a@b", "http://[::1]:8080/a@b"),
    ("URL without a password", mask_text, "see https://user@example.com/x", "see https://user@example.com/x"),
    ("password=", mask_text, "host=h user=u password=secret dbname=d", "host=h user=u password=*** dbname=d"),
    ("pwd= (ODBC style)", mask_text, "Server=x;Uid=u;Pwd=abc;", "Server=x;Uid=u;Pwd=***"),
    ("passwd = with spaces", mask_text, "passwd = hunter2", "passwd = ***"),
    ("quoted DSN value", mask_text, "host=h password='se cret' dbname=d", "host=h password=*** dbname=d"),
    ("no secret at all", mask_text, "max_tokens=5 pwdx=1", "max_tokens=5 pwdx=1"),
    ("connection string, password with /", mask_url, "postgres://u:pa/ss@host/db", "postgres://u:***@host/db"),
    ("connection string, password with @", mask_url, "postgres://u:p@ss@host/db", "postgres://u:***@host/db"),
    ("connection string without a scheme", mask_url, "u:secret@host/db", "u:***@host/db"),
    ("libpq DSN as connection string", mask_url, "host=h password=secret", "host=h password=***"),
    # Connection strings with the password in the query (issue 9: health printed them in clear)
    ("?password=", mask_url, "postgres://u@h/db?password=s3cret", "postgres://u@h/db?password=***"),
    (
        "?password= among other parameters",
        mask_url,
        "postgres://u@h/db?sslmode=require&password=s3cret&connect_timeout=5",
        "postgres://u@h/db?sslmode=require&password=***&connect_timeout=5",
    ),
    ("?passwd= (MySQL drivers)", mask_url, "mysql://root@h/db?passwd=s3cret", "mysql://root@h/db?passwd=***"),
    (
        "&sslpassword= (libpq)",
        mask_url,
        "postgres://u@h/db?sslkey=/k.pem&sslpassword=s3cret",
        "postgres://u@h/db?sslkey=/k.pem&sslpassword=***",
    ),
    (
        "token, api_key, access_token, key, sig",
        mask_url,
        "https://h/x?token=a1&api_key=b2&access_token=c3&key=d4&sig=e5&page=2",
        "https://h/x?token=***&api_key=***&access_token=***&key=***&sig=***&page=2",
    ),
    (
        "userinfo and query passwords both",
        mask_url,
        "postgres://u:pw1@h/db?password=pw2",
        "postgres://u:***@h/db?password=***",
    ),
    ("percent-escaped query value", mask_url, "mysql://r@h/d?password=a%26b%40c", "mysql://r@h/d?password=***"),
    (
        "query parameters that are not secret",
        mask_url,
        "postgres://u@h/db?sslmode=require&max_tokens=5&keyword=x&application_name=mimir",
        "postgres://u@h/db?sslmode=require&max_tokens=5&keyword=x&application_name=mimir",
    ),
    (
        "?password= in free text",
        mask_text,
        "cannot open mysql://root@h/db?password=s3cret&charset=utf8: refused",
        "cannot open mysql://root@h/db?password=***&charset=utf8: refused",
    ),
    ("sslpassword in free text", mask_text, "GET /x?sslpassword=s3cret ok", "GET /x?sslpassword=*** ok"),
    (
        "known value in free text",
        _masker("tok-0123456789").mask,
        "server said: bad key tok-0123456789",
        "server said: bad key ***",
    ),
    ("known value, longest first", _masker("abcd", "abcdefgh").mask, "abcdefgh", "***"),
    ("known value under 4 chars", _masker("abc").mask, "abc abcabc", "abc abcabc"),
    (
        "the value masker masks shapes too",
        _masker("tok-0123456789").mask,
        "mysql://root:pw@db/x password=p",
        "mysql://root:***@db/x password=***",
    ),
]


@pytest.mark.parametrize("what, mask, text, masked", CASES, ids=[c[0] for c in CASES])
def test_every_pattern(what, mask, text, masked):
    assert mask(text) == masked


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Passwords",
        "PassWord",
        "pwd",
        "passphrase",
        "client_secret",
        "api_key",
        "apiKey",
        "X-Api-Key",
        "APIKEY",
        "Authorization",
        "accessToken",
        "access_token",
        "TOKEN",
        "private_key",
        "Set-Cookie",
        "session_id",
        "db credentials",
    ],
)
def test_secret_keys(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["max_tokens", "token_count", "tokens", "title", "keyword", "author", "oauth2_url", 3])
def test_keys_that_are_not_secret(key):
    assert not is_secret_key(key)


def test_mask_tree_masks_by_key_at_any_depth_and_by_shape_in_strings():
    data = {
        "a": {"password": "p", "list": [{"secret": "s", "n": 1}], "empty_token": ""},
        "max_tokens": 5,
        "pair": ("postgres://u:pw@h/db", 2),
        "headers": {"Authorization": "Bearer abc123", "Accept": "text/plain"},
    }
    assert mask_tree(data) == {
        "a": {"password": MASK, "list": [{"secret": MASK, "n": 1}], "empty_token": ""},
        "max_tokens": 5,
        "pair": ["postgres://u:***@h/db", 2],
        "headers": {"Authorization": MASK, "Accept": "text/plain"},
    }


def test_mask_tree_with_a_masker_masks_known_values_too():
    masker = _masker("tok-0123456789")
    assert mask_tree({"echo": ["got tok-0123456789"]}, masker) == {"echo": ["got ***"]}
    assert mask_tree({"echo": ["got tok-0123456789"]}) == {"echo": ["got tok-0123456789"]}


def test_secret_values_collects_what_is_under_secret_keys():
    config = {
        "url": "https://x",
        "headers": {"Authorization": "Bearer abc123"},
        "steps": [{"api_key": 12345}],
        "verbose": True,
        "token": True,
    }
    assert secret_values(config) == {"Bearer abc123", "abc123", "12345"}


def test_url_passwords_are_found_as_the_pattern_finds_them():
    """The linear scan masks exactly what ``URL_PASSWORD.sub`` masks (random texts of the
    characters that matter)."""
    import random

    from mimir_tui.secrets import URL_PASSWORD, _mask_url_passwords

    rng = random.Random(9)
    pieces = ["://", "u", ":", "@", " ", "/", "1", "?", "p", "[", "#"]
    for _ in range(20_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        assert _mask_url_passwords(text) == URL_PASSWORD.sub(r"\1***@", text), text


def test_hostile_output_cannot_stall_masking():
    """Attack: a step's output (an API response) of ``://a:`` repeated with no ``@``. Every
    string of a step's output is masked before it is stored; the pattern rescanned the rest of
    the text from each ``://a:`` (100 KB: 17 s with the GIL held; this 1 MB: hours). In a
    process of its own, so that a regression fails instead of freezing the suite."""
    import subprocess
    import sys

    code = "from mimir_tui.secrets import mask_text; print(len(mask_text('://a:' * 200_000 + ' x://u:pw@h')))"
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == str(len("://a:" * 200_000 + " x://u:***@h"))
