"""Secret detection of the validate stage: recall and false positives on labelled corpora.

The corpora are generated, seeded, by ``secrets_corpus.py`` (credentials in 30+ provider
formats in many code shapes; clean code full of look-alikes). None of the generated
values is a real credential.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from heidi_engine.validation.secrets import (
    find_secrets,
    marker,
    mask_secrets,
    mask_secrets_many,
    shannon_entropy,
)
from secrets_corpus import TOKEN_FORMATS, clean_corpus, covers, secret_corpus


def test_corpus_has_at_least_thirty_formats():
    assert len({fmt for fmt, _, _ in secret_corpus(per_format=1)}) >= 30


def test_recall_is_at_least_99_percent():
    corpus = secret_corpus()
    missed = Counter(fmt for fmt, value, code in corpus
                     if not covers(value, code, [(f.start, f.end) for f in find_secrets(code)]))
    recall = 1 - sum(missed.values()) / len(corpus)
    print(f"recall {recall:.4f} over {len(corpus)} credentials "
          f"in {len({fmt for fmt, _, _ in corpus})} formats")
    assert recall >= 0.99, f"recall {recall:.3f}; missed: {dict(missed)}"


def test_false_positives_at_most_one_percent():
    corpus = clean_corpus()
    flagged = [code for code in corpus if find_secrets(code)]
    rate = len(flagged) / len(corpus)
    print(f"false-positive rate {rate:.4f} over {len(corpus)} clean snippets")
    kinds = sorted({f.kind for code in flagged for f in find_secrets(code)})
    assert rate <= 0.01, f"false-positive rate {rate:.3f} ({kinds})"


def test_masking_removes_every_secret_and_names_its_kind():
    corpus = secret_corpus(seed=3, per_format=4)
    for (fmt, value, code), batch_masked in zip(corpus, mask_secrets_many([c for _, _, c in corpus])):
        masked = mask_secrets(code)
        assert masked == batch_masked
        assert value not in masked, fmt
        assert "[REDACTED:" in masked


def test_masking_is_readable_and_idempotent():
    key = "AKIA" + "Q7RZ2M4X6W3V5T7Y"
    masked = mask_secrets(f'aws_key = "{key}"')
    assert masked == f'aws_key = "{marker("aws_access_key")}"'
    assert mask_secrets(masked) == masked


def test_a_redaction_marker_is_a_finding_of_its_kind():
    """A text masked at rest still counts as having carried a secret (fail-closed)."""
    assert [f.kind for f in find_secrets("key = '[REDACTED:github_token]'")] == ["github_token"]
    assert [f.kind for f in find_secrets("x [REDACTED] y")] == ["secret"]


@pytest.mark.parametrize("text", [
    'stripe.api_key = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"',
    'DATABASE_URL = "postgres://user:password@localhost:5432/mydb"',
    'role = "arn:aws:iam::123456789012:role/deploy"',
    'cache_key = "0356f64e2a8393d9f847db2be100381d"',
    'PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK7dN7dXuYmYnONFVXiFxwpnEnVlQFr2AEmqPNQcLXj0 bot"',
])
def test_documented_examples_and_public_values_are_not_secrets(text):
    assert find_secrets(text) == []


def test_every_token_format_is_caught_bare():
    rng = random.Random(5)
    for fmt, gen in TOKEN_FORMATS.items():
        token = gen(rng)
        assert find_secrets(f"value {token} end"), fmt


def test_findings_never_carry_the_secret():
    token = TOKEN_FORMATS["github_token"](random.Random(1))
    findings = find_secrets(f'TOKEN = "{token}"')
    assert "github_token" in {f.kind for f in findings}
    assert token not in repr(findings)


def test_clean_text_is_unchanged_by_masking():
    for code in clean_corpus(n=50):
        if not find_secrets(code):
            assert mask_secrets(code) == code


@pytest.mark.parametrize("text", [
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtz",
    "mongodb+srv://svc:Q7w9ErTy1uIo@cluster0.x1y2z.mongodb.net/db",
    "amqp://guest:s3cretPass99@rabbit:5672/",
    'token = "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"',  # an older GitHub token: 40 hex
    "seen_xoxb-123456789012-4567890123-abcdefghijklmnopqrstuvwx",  # glued after "_"
    "key = '[REDACTED:aws_access_key]'",  # masked at rest: still a secret
])
def test_truncated_and_unusual_layouts_are_caught(text):
    assert find_secrets(text)


def test_entropy():
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == 2.0
