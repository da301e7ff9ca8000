"""The event journal: schema, encoding, chain, golden vectors, verification, recovery."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import threading
from pathlib import Path

import pytest

from heidi_engine.errors import JournalError

DATA = Path(__file__).parent / "data"
START = "2026-01-01T00:00:00.000Z"
RUN_ID = "run_20260101_000000"
KEYS = [
    "event_version", "seq", "ts", "run_id", "round", "stage", "level", "event_type",
    "message", "counters_delta", "usage_delta", "artifact_paths", "prev_hash",
]

# The golden sequence: (seconds to advance the clock first, append keyword arguments).
GOLDEN_EVENTS = [
    (0, dict(event_type="pipeline_start", message="mode=full rounds=2")),
    (0, dict(event_type="round_start", message="round 1/2", round=1)),
    (0.25, dict(event_type="stage_start", message="generate round 1", stage="generate", round=1)),
    (1.0005, dict(event_type="progress", stage="generate", round=1,
                  message="caf\u00e9 \u00fcber \u4e2d\u6587 \U0001F600 \U0001F9EA \U0010FFFF",
                  counters_delta={"raw_lines": 3, "neg": -2}, usage_delta={"prompt_tokens": 1234})),
    (0.001, dict(event_type="progress", stage="generate", round=1, level="debug",
                 message='quotes "x" \'y\' backslash \\ path C:\\tmp\\a slash a/b </script>')),
    (0, dict(event_type="progress", stage="generate", round=1, level="warn",
             message="ctl \x00\x01\x07\x08\t\n\x0b\x0c\r\x1b\x1f del \x7f nbsp \xa0 ls \u2028 bom \ufeff")),
    (59.999, dict(event_type="stage_end", message="ok in 61250 ms", stage="generate", round=1,
                  counters_delta={"raw_lines": 50}, artifact_paths=["data/raw_round_1.jsonl", "d\u00e9j\u00e0/\"q\".txt"])),
    (3600, dict(event_type="stage_end", message="failed: exit code 2", stage="validate", round=1,
                level="error", counters_delta={}, usage_delta={}, artifact_paths=[])),
    (0, dict(event_type="pipeline_error", message="", level="critical", round=1)),
    (86400 * 31, dict(event_type="ev\u00e9nt \"custom\"", message="\U0001F600" * 3, stage="eval", round=2,
                      counters_delta={"\u00e9": 1, "k\"ey": 9223372036854775807, "min": -9223372036854775808})),
]


def reference_journal(events, run_id: str = RUN_ID, start: str = START) -> bytes:
    """The journal as json.dumps + hashlib write it, independent of both backends."""
    from datetime import datetime, timedelta, timezone

    now = datetime.strptime(start, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    micros = 0
    prev = hashlib.sha256(run_id.encode()).hexdigest()
    out = []
    for seq, (advance, kwargs) in enumerate(events, start=1):
        micros += int(advance * 1_000_000 + 0.5)
        moment = now + timedelta(microseconds=micros)
        event = {
            "event_version": "1.0",
            "seq": seq,
            "ts": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
            "run_id": run_id,
            "round": kwargs.get("round", 0),
            "stage": kwargs.get("stage", "pipeline"),
            "level": kwargs.get("level", "info"),
            "event_type": kwargs["event_type"],
            "message": kwargs["message"],
            "counters_delta": kwargs.get("counters_delta") or {},
            "usage_delta": kwargs.get("usage_delta") or {},
            "artifact_paths": kwargs.get("artifact_paths") or [],
            "prev_hash": prev,
        }
        line = (json.dumps(event, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")
        prev = hashlib.sha256(line).hexdigest()
        out.append(line)
    return b"".join(out)


def write_events(backend, path, events, *, fsync=True, run_id=RUN_ID, start=START):
    clock = backend.FakeClock(start)
    with backend.JournalWriter(path, run_id, fsync=fsync, clock=clock) as journal:
        for advance, kwargs in events:
            if advance:
                clock.advance(advance)
            kwargs = dict(kwargs)
            journal.append(kwargs.pop("event_type"), kwargs.pop("message"), **kwargs)
        head = journal.head
    return head


def lines_of(path) -> list[bytes]:
    return Path(path).read_bytes().splitlines(keepends=True)


def simple_journal(backend, out_dir, n=6, *, with_state=True):
    path = out_dir / "journal" / "events.jsonl"
    clock = backend.FakeClock(START)
    with backend.JournalWriter(path, RUN_ID, clock=clock) as journal:
        for i in range(n):
            journal.append("progress", f"step {i}", round=i)
        head = journal.head
    if with_state:
        backend.StatusWriter(out_dir / "state" / "run_state.json").write(
            {"journal_head": {"seq": head[0], "hash": head[1]}})
    return path, head


# -- golden vectors ---------------------------------------------------------------------


def test_golden_file_is_the_json_dumps_reference():
    assert reference_journal(GOLDEN_EVENTS) == (DATA / "journal_golden.jsonl").read_bytes()


@pytest.mark.parametrize("fsync", [True, False])
def test_golden_journal_byte_identical(backend, tmp_path, fsync):
    golden = (DATA / "journal_golden.jsonl").read_bytes()
    path = tmp_path / "events.jsonl"
    head = write_events(backend, path, GOLDEN_EVENTS, fsync=fsync)
    assert path.read_bytes() == golden
    assert head == (len(GOLDEN_EVENTS), hashlib.sha256(golden.splitlines(True)[-1]).hexdigest())
    assert backend.verify_journal(path) == backend.VerifyResult(True, len(GOLDEN_EVENTS), 0, "ok")


def test_schema_and_key_order(backend, tmp_path):
    path = tmp_path / "j" / "events.jsonl"
    write_events(backend, path, GOLDEN_EVENTS[:4])
    for seq, raw in enumerate(lines_of(path), start=1):
        assert raw.endswith(b"\n") and raw.isascii()
        event = json.loads(raw, object_pairs_hook=list)
        assert [key for key, _ in event] == KEYS
        assert dict(event)["seq"] == seq


def test_chain(backend, tmp_path):
    path = tmp_path / "events.jsonl"
    write_events(backend, path, GOLDEN_EVENTS)
    previous = hashlib.sha256(RUN_ID.encode()).hexdigest()
    for raw in lines_of(path):
        assert json.loads(raw)["prev_hash"] == previous
        previous = hashlib.sha256(raw).hexdigest()


def test_random_messages_identical_across_backends(native, pure, tmp_path):
    rng = random.Random(7)
    alphabet = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\x00", "\x1f", "\x7f", "\u00e9", "\u2028",
                "\ud7ff", "\ue000", "\uffff", "\U0001F600", "\U0010FFFF", "=", ":", "-", "_", "@",
                "sk-", "token", "Bearer ", "eyJ", "://", "ghp_", "AKIA", "password", ".",
                "sk-ant-", "sk_live_", "rk_test_", "shpat_", "github_pat_", "glpat-", "AIza",
                "GOCSPX-", "xoxb-", "xapp-", "hf_", "hooks.slack.com/services/",
                "discordapp.com/api/webhooks/", "discord.com/api/webhooks/", "whsec_", "npm_",
                "pypi-AgE", "SG.", "dop_v1_", "key-", "0123456789abcdef", "ABCDEFGHIJKLMNOP",
                "secret_access_key", "Secret-Key", "api-key", "PRIVATE_KEY", "'", "+", "&",
                "-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----",
                "-----BEGIN PGP PRIVATE KEY BLOCK-----", "-----END PGP PRIVATE KEY BLOCK-----"]
    events = []
    for i in range(600):
        message = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        other = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        events.append((rng.choice([0, 0.001, 1.5]), dict(
            event_type=f"e{i}{other}", message=message, artifact_paths=[other, message[::-1]],
            counters_delta={message[:5]: i, other: -i, "token=" + other: 1})))
    native_head = write_events(native, tmp_path / "n.jsonl", events, fsync=False)
    pure_head = write_events(pure, tmp_path / "p.jsonl", events, fsync=False)
    assert (tmp_path / "n.jsonl").read_bytes() == (tmp_path / "p.jsonl").read_bytes()
    assert native_head == pure_head


def test_lone_surrogates_written_like_json_dumps(backend, tmp_path):
    path = tmp_path / "events.jsonl"
    with backend.JournalWriter(path, RUN_ID, clock=backend.FakeClock(START)) as journal:
        journal.append("progress", "a\ud800b\udfff")
    assert json.loads(path.read_bytes())["message"] == "a\ud800b\udfff"
    assert b'"a\\ud800b\\udfff"' in path.read_bytes()


# -- append arguments -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(level="fatal"), ValueError, "invalid level 'fatal' (valid: debug, info, warn, error, critical)"),
        (dict(stage="deploy"), ValueError, "invalid stage 'deploy' (valid: pipeline, generate, validate, test, train, eval)"),
        (dict(stage="deploy", level="fatal"), ValueError, "invalid level 'fatal' (valid: debug, info, warn, error, critical)"),
        (dict(round=-1), ValueError, "round must be an integer >= 0"),
        (dict(round=1.0), ValueError, "round must be an integer >= 0"),
        (dict(round=True), ValueError, "round must be an integer >= 0"),
        (dict(counters_delta={"a": 1.5}), ValueError, "counters_delta must map str to int"),
        (dict(counters_delta={"a": True}), ValueError, "counters_delta must map str to int"),
        (dict(counters_delta={1: 1}), ValueError, "counters_delta must map str to int"),
        (dict(counters_delta={"a": 2**63}), ValueError, "counters_delta must map str to int"),
        (dict(usage_delta=[("a", 1)]), ValueError, "usage_delta must map str to int"),
        (dict(artifact_paths="data/x"), ValueError, "artifact_paths must be a list of str"),
        (dict(artifact_paths=[Path("x")]), ValueError, "artifact_paths must be a list of str"),
    ],
)
def test_bad_arguments_write_nothing(backend, tmp_path, kwargs, error, message):
    path = tmp_path / "events.jsonl"
    with backend.JournalWriter(path, RUN_ID) as journal:
        with pytest.raises(error) as info:
            journal.append("progress", "x", **kwargs)
        assert str(info.value) == message
        assert journal.head == (0, hashlib.sha256(RUN_ID.encode()).hexdigest())
    assert path.read_bytes() == b""


def test_closed_writer(backend, tmp_path):
    journal = backend.JournalWriter(tmp_path / "events.jsonl", RUN_ID)
    assert journal.append("progress", "x") == 1
    journal.close()
    journal.close()
    assert journal.closed
    with pytest.raises(JournalError):
        journal.append("progress", "y")
    assert journal.head[0] == 1


def test_buffered_lines_written_by_head_and_close(backend, tmp_path):
    path = tmp_path / "events.jsonl"
    journal = backend.JournalWriter(path, RUN_ID, fsync=False)
    journal.append("progress", "a")
    journal.append("progress", "b")
    seq, digest = journal.head
    assert seq == 2 and digest == hashlib.sha256(lines_of(path)[-1]).hexdigest()
    journal.append("progress", "c")
    journal.close()
    assert len(lines_of(path)) == 3


def test_threads_append_without_tearing(backend, tmp_path):
    path = tmp_path / "events.jsonl"
    journal = backend.JournalWriter(path, RUN_ID, fsync=False)
    seqs = []

    def work(n: int) -> None:
        for i in range(300):
            seqs.append(journal.append("progress", f"t{n} {i}"))
            if i % 50 == 0:
                journal.head  # readers interleave with writers  # noqa: B018

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    journal.close()
    assert sorted(seqs) == list(range(1, 1201))
    assert backend.verify_journal(path).ok


# -- secrets ----------------------------------------------------------------------------

SECRET_CASES = [
    ("key sk-abcdefghijklmnopqrstuv end", "key [REDACTED:openai_key] end"),
    ("anthropic sk-ant-api03-AAAAAAAAAAAAAAAAAAAA", "anthropic [REDACTED:anthropic_key]"),
    ("short sk-ant-abcdefghijklmn", "short [REDACTED:openai_key]"),
    ("task-abcdefghijklmnopqrstuvwxyz stays", "task-abcdefghijklmnopqrstuvwxyz stays"),
    ("seen_xoxb-123456789012-abcdefghij", "seen_[REDACTED:slack_token]"),
    ("sk-short stays", "sk-short stays"),
    ("gh ghp_0123456789abcdefghijABCDEFGHIJ done", "gh [REDACTED:github_token] done"),
    ("github_pat_11ABCDEFG0123456789_abcdefghijklmnop", "[REDACTED:github_token]"),
    ("aws AKIAIOSFODNN7EXAMPLE,", "aws [REDACTED:aws_access_key],"),
    ("slack xoxb-123456789012-abcdefghij", "slack [REDACTED:slack_token]"),
    ("app xapp-1-A0123456789-0123456789-abcdef", "app [REDACTED:slack_token]"),
    ("google AIzaSyA-0123456789abcdefghijklmnopqrstu", "google [REDACTED:google_api_key]"),
    ("oauth GOCSPX-abcdefghijklmnopqrstuvwx", "oauth [REDACTED:google_oauth_secret]"),
    ("hf hf_abcdefghijklmnopqrstuvwxyzABCDEF", "hf [REDACTED:huggingface_token]"),
    ("stripe rk_live_abcdefghijklmnop1234 sk_test_0123456789abcdefXY",
     "stripe [REDACTED:stripe_key] [REDACTED:stripe_key]"),
    ("pk_live_abcdefghijklmnop1234 stays", "pk_live_abcdefghijklmnop1234 stays"),
    ("hook whsec_abcdefghijklmnopqrstuvwxyz12", "hook [REDACTED:stripe_webhook_secret]"),
    ("gl glpat-abcdefghijklmnopqrst", "gl [REDACTED:gitlab_token]"),
    ("shop shpat_0123456789abcdef0123456789ABCDEF", "shop [REDACTED:shopify_token]"),
    ("npm npm_abcdefghijklmnopqrstuvwxyz0123456789", "npm [REDACTED:npm_token]"),
    ("pypi pypi-AgEIcHlwaS5vcmcCJGFiY2RlZmdoLWlqa2wtbW5vcC1xcnN0LXV2d3h5ejAxMjM0",
     "pypi [REDACTED:pypi_token]"),
    ("sg SG.abcdefghijklmnop.qrstuvwxyzABCDEF01", "sg [REDACTED:sendgrid_key]"),
    ("SG.short.x stays", "SG.short.x stays"),
    ("do dop_v1_0123456789abcdef0123456789abcdef", "do [REDACTED:digitalocean_token]"),
    ("mg key-0123456789abcdef0123456789abcdef", "mg [REDACTED:mailgun_key]"),
    ("https://hooks.slack.com/services/T0000/B0000/abcdefghijkl ok",
     "https://[REDACTED:slack_webhook] ok"),
    ("https://discordapp.com/api/webhooks/123456/abcdefghijklmnopqrstu x",
     "https://[REDACTED:discord_webhook] x"),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-nat_ure rest", "jwt [REDACTED:jwt] rest"),
    ("db postgres://bob:hunter2@db:5432/x ok", "db postgres://bob:[REDACTED:url_password]@db:5432/x ok"),
    ("redis://:pw@host", "redis://:[REDACTED:url_password]@host"),
    ("https://example.com/a:b@c", "https://example.com/a:b@c"),
    ("Authorization: Bearer abcdefgh.ijk~+/=", "Authorization: Bearer [REDACTED:bearer_token]"),
    ("bearer short", "bearer short"),
    ('{"password": "hunter2", "user": "bob"}',
     '{"password": "[REDACTED:secret_assignment]", "user": "bob"}'),
    ("API_KEY=abc123 DB_PASSWORD = 'x y' token:t0k",
     "API_KEY=[REDACTED:secret_assignment] DB_PASSWORD = '[REDACTED:secret_assignment] y' "
     "token:[REDACTED:secret_assignment]"),
    ("AWS_SECRET_ACCESS_KEY=abc/def secret-key: x private_key=y",
     "AWS_SECRET_ACCESS_KEY=[REDACTED:secret_assignment] secret-key: [REDACTED:secret_assignment] "
     "private_key=[REDACTED:secret_assignment]"),
    ("max_tokens=512 tokens: 7 secrets: 2", "max_tokens=512 tokens: 7 secrets: 2"),
    ("client_secret=s3cr3t&x=1", "client_secret=[REDACTED:secret_assignment]&x=1"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY----- after",
     "[REDACTED:private_key] after"),
    ("-----BEGIN PGP PRIVATE KEY BLOCK-----\nxcE\n-----END PGP PRIVATE KEY BLOCK-----.",
     "[REDACTED:private_key]."),
    ("x -----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl truncated", "x [REDACTED:private_key]"),
    ("-----BEGIN PUBLIC KEY----- stays", "-----BEGIN PUBLIC KEY----- stays"),
    ("caf\u00e9 password=\u00e9\u00e9\U0001F600 \u00e9", "caf\u00e9 password=[REDACTED:secret_assignment] \u00e9"),
]


@pytest.mark.parametrize(("message", "expected"), SECRET_CASES)
def test_secret_scrubbing(backend, tmp_path, message, expected):
    path = tmp_path / "events.jsonl"
    with backend.JournalWriter(path, RUN_ID) as journal:
        journal.append(message, message, counters_delta={message: 1}, artifact_paths=[message])
    event = json.loads(path.read_bytes())
    assert event["message"] == expected and event["event_type"] == expected
    assert event["counters_delta"] == {expected: 1} and event["artifact_paths"] == [expected]


def test_counter_names_that_scrub_alike_merge(backend, tmp_path):
    path = tmp_path / "events.jsonl"
    big = 2**63 - 1
    with backend.JournalWriter(path, RUN_ID) as journal:
        journal.append("progress", "m", counters_delta={"a": 1, "token=x": 2, "b": 3, "token=y": 4})
        journal.append("progress", "m", counters_delta={"token=x": big, "token=y": 1, "n": -1})
        journal.append("progress", "m", counters_delta={"token=x": -big - 1, "token=y": -1})
    lines = path.read_bytes().splitlines()
    assert b'"counters_delta":{"a":1,"token=[REDACTED:secret_assignment]":6,"b":3}' in lines[0]
    assert b'"counters_delta":{"token=[REDACTED:secret_assignment]":9223372036854775807,"n":-1}' in lines[1]
    assert b'"counters_delta":{"token=[REDACTED:secret_assignment]":-9223372036854775808}' in lines[2]


def test_python_rules_match_cases():
    from heidi_engine._py.secrets import scrub_secrets

    for message, expected in SECRET_CASES:
        assert scrub_secrets(message) == expected


# -- verification -----------------------------------------------------------------------


def test_verify_ok_with_state(backend, out_dir):
    simple_journal(backend, out_dir)
    assert backend.verify_journal(out_dir) == backend.VerifyResult(True, 6, 0, "ok")
    assert backend.verify_journal(out_dir / "journal" / "events.jsonl").ok
    assert repr(backend.verify_journal(out_dir)) == (
        "VerifyResult(ok=True, lines=6, first_bad_line=0, reason='ok')")


def test_verify_missing(backend, tmp_path):
    assert backend.verify_journal(tmp_path) == backend.VerifyResult(False, 0, 0, "journal missing")
    assert backend.verify_journal(tmp_path / "nope.jsonl").reason == "journal missing"


def rewrite(path, lines):
    Path(path).write_bytes(b"".join(lines))


def test_verify_edit(backend, out_dir):
    path, _ = simple_journal(backend, out_dir)
    lines = lines_of(path)
    lines[2] = lines[2].replace(b"step 2", b"step X")
    rewrite(path, lines)
    assert backend.verify_journal(out_dir) == backend.VerifyResult(
        False, 6, 4, "line 4: prev_hash mismatch")


def test_verify_edit_of_head_line(backend, out_dir):
    path, _ = simple_journal(backend, out_dir)
    lines = lines_of(path)
    lines[5] = lines[5].replace(b"step 5", b"step X")
    rewrite(path, lines)
    assert backend.verify_journal(out_dir) == backend.VerifyResult(
        False, 6, 6, "line 6: hash differs from state head")
    # Without a state file the last line's content cannot be checked.
    copy = out_dir / "copy.jsonl"
    copy.write_bytes(path.read_bytes())
    assert backend.verify_journal(copy) == backend.VerifyResult(True, 6, 0, "ok")


def test_verify_insert(backend, out_dir):
    path, _ = simple_journal(backend, out_dir)
    lines = lines_of(path)
    lines.insert(3, lines[2])
    rewrite(path, lines)
    assert backend.verify_journal(out_dir) == backend.VerifyResult(
        False, 7, 4, "line 4: seq 3, expected 4")


def test_verify_delete(backend, out_dir):
    path, _ = simple_journal(backend, out_dir)
    lines = lines_of(path)
    del lines[1]
    rewrite(path, lines)
    assert backend.verify_journal(out_dir) == backend.VerifyResult(
        False, 5, 2, "line 2: seq 3, expected 2")


def test_verify_reorder(backend, out_dir):
    path, _ = simple_journal(backend, out_dir)
    lines = lines_of(path)
    lines[3], lines[4] = lines[4], lines[3]
    rewrite(path, lines)
    assert backend.verify_journal(out_dir) == backend.VerifyResult(
        False, 6, 4, "line 4: seq 5, expected 4")


def test_verify_truncated_lines(backend, out_dir):
    path, _ = simple_journal(backend, out_dir)
    rewrite(path, lines_of(path)[:4])
    assert backend.verify_journal(out_dir) == backend.VerifyResult(
        False, 4, 5, "journal ends at seq 4 before state head seq 6")


def test_verify_truncated_mid_line(backend, out_dir):
    path, _ = simple_journal(backend, out_dir)
    data = path.read_bytes()
    path.write_bytes(data[:-20])
    assert backend.verify_journal(out_dir) == backend.VerifyResult(
        False, 5, 6, "line 6: no trailing newline")


def test_verify_lines_after_head_are_allowed(backend, out_dir):
    path, head = simple_journal(backend, out_dir)
    clock = backend.FakeClock(START)
    with backend.JournalWriter(path, RUN_ID, clock=clock) as journal:
        journal.append("progress", "after head")
    assert backend.verify_journal(out_dir) == backend.VerifyResult(True, 7, 0, "ok")


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda raw: raw.replace(b'"seq":3', b'"seq":"3"'), "line 3: bad keys"),
        (lambda raw: raw.replace(b'"round":2', b'"round":2.0'), "line 3: bad keys"),
        (lambda raw: raw.replace(b'"counters_delta":{}', b'"counters_delta":{"a":true}'), "line 3: bad keys"),
        (lambda raw: raw.replace(b'"artifact_paths":[]', b'"artifact_paths":[1]'), "line 3: bad keys"),
        (lambda raw: raw.replace(b'"ts"', b'"time"'), "line 3: bad keys"),
        (lambda raw: raw.replace(b',"usage_delta":{}', b""), "line 3: bad keys"),
        (lambda raw: raw.replace(b'"seq":3,', b'"seq":3,"seq":3,'), "line 3: bad keys"),
        (lambda raw: b"[" + raw[:-1] + b"]\n", "line 3: bad keys"),
        (lambda raw: raw.replace(b"}\n", b"\n"), "line 3: not valid JSON"),
        (lambda raw: raw.replace(b"step 2", b"step \xff"), "line 3: not valid JSON"),
        (lambda raw: raw.replace(b"step 2", b"step \x01"), "line 3: not valid JSON"),
        (lambda raw: raw.replace(b"step 2", b"step \\x"), "line 3: not valid JSON"),
        (lambda raw: raw.replace(b'"seq":3', b'"seq":03'), "line 3: not valid JSON"),
        (lambda raw: raw.replace(b'"seq":3', b'"seq":-0'), "line 3: seq 0, expected 3"),
        (lambda raw: raw.replace(b'"seq":3', b'"seq":99999999999999999999999'),
         "line 3: seq 99999999999999999999999, expected 3"),
        (lambda raw: raw.replace(RUN_ID.encode(), b"run_other"), "line 3: run_id changed"),
        (lambda raw: raw.replace(b"step 2", b"st\\u0065p 2"), "line 4: prev_hash mismatch"),
        (lambda raw: raw.replace(b'"run_id":"run_', b'"run_id":"\\u0072un_'), "line 4: prev_hash mismatch"),
        (lambda raw: raw.replace(b'{"event_version"', b' \t{ "event_version" '), "line 4: prev_hash mismatch"),
        (lambda raw: raw.replace(b'"message":"step 2"', b'"message":"\\ud83d\\ude00 \xf0\x9f\x98\x80 NaN"'),
         "line 4: prev_hash mismatch"),
        (lambda raw: raw.replace(b'"counters_delta":{}', b'"counters_delta":{"x":-Infinity}'), "line 3: bad keys"),
    ],
)
def test_verify_reasons(backend, out_dir, mutate, reason):
    path, _ = simple_journal(backend, out_dir)
    lines = lines_of(path)
    lines[2] = mutate(lines[2])
    rewrite(path, lines)
    result = backend.verify_journal(out_dir)
    assert (result.ok, result.reason) == (False, reason)
    assert result.first_bad_line == int(reason.split()[1].rstrip(":"))


def test_verify_bad_state_head(backend, out_dir):
    simple_journal(backend, out_dir)
    (out_dir / "state" / "run_state.json").write_text('{"journal_head": {"seq": "6"}}\n')
    assert backend.verify_journal(out_dir) == backend.VerifyResult(
        False, 6, 0, "state file has no valid journal_head")


def test_verify_head_zero_and_empty_journal(backend, out_dir):
    (out_dir / "journal").mkdir()
    (out_dir / "journal" / "events.jsonl").write_bytes(b"")
    backend.StatusWriter(out_dir / "state" / "run_state.json").write(
        {"journal_head": {"seq": 0, "hash": "x"}})
    assert backend.verify_journal(out_dir) == backend.VerifyResult(True, 0, 0, "ok")
    backend.StatusWriter(out_dir / "state" / "run_state.json").write(
        {"journal_head": {"seq": 2, "hash": "x"}})
    assert backend.verify_journal(out_dir) == backend.VerifyResult(
        False, 0, 1, "journal ends at seq 0 before state head seq 2")


# -- continuing and recovery -------------------------------------------------------------


def test_reopen_continues_the_chain(backend, tmp_path):
    path = tmp_path / "events.jsonl"
    write_events(backend, path, GOLDEN_EVENTS[:5])
    clock = backend.FakeClock(START)
    clock.advance(0.25 + 1.0005 + 0.001)
    with backend.JournalWriter(path, RUN_ID, clock=clock) as journal:
        assert journal.head[0] == 5
        for advance, kwargs in GOLDEN_EVENTS[5:]:
            clock.advance(advance)
            kwargs = dict(kwargs)
            assert journal.append(kwargs.pop("event_type"), kwargs.pop("message"), **kwargs) > 5
    assert path.read_bytes() == (DATA / "journal_golden.jsonl").read_bytes()


def test_reopen_other_backend(native, pure, tmp_path):
    path = tmp_path / "events.jsonl"
    write_events(native, path, GOLDEN_EVENTS[:3])
    with pure.JournalWriter(path, RUN_ID, clock=pure.FakeClock(START)) as journal:
        assert journal.append("progress", "from python") == 4
    with native.JournalWriter(path, RUN_ID, clock=native.FakeClock(START)) as journal:
        assert journal.append("progress", "from native") == 5
    assert native.verify_journal(path).ok and pure.verify_journal(path).ok


def test_reopen_refuses_bad_chain_and_other_run(backend, tmp_path):
    path = tmp_path / "events.jsonl"
    write_events(backend, path, GOLDEN_EVENTS[:4])
    with pytest.raises(JournalError) as info:
        backend.JournalWriter(path, "run_other")
    assert str(info.value) == f"cannot continue journal {path}: line 1: run_id changed"
    lines = lines_of(path)
    lines[1] = lines[1].replace(b"round 1/2", b"round 9/9")
    rewrite(path, lines)
    before = path.read_bytes()
    with pytest.raises(JournalError) as info:
        backend.JournalWriter(path, RUN_ID)
    assert str(info.value) == f"cannot continue journal {path}: line 3: prev_hash mismatch"
    assert path.read_bytes() == before  # nothing lost


def test_torn_line_recovery(backend, tmp_path):
    path = tmp_path / "events.jsonl"
    write_events(backend, path, GOLDEN_EVENTS[:3])
    complete = path.read_bytes()
    torn = b'{"event_version":"1.0","seq":4,"ts":"2026-01-01T00:00'
    path.write_bytes(complete + torn)
    clock = backend.FakeClock(START)
    with backend.JournalWriter(path, RUN_ID, clock=clock) as journal:
        assert journal.head[0] == 4
        assert journal.append("progress", "next") == 5
    aside = tmp_path / "events.jsonl.torn-4"
    assert aside.read_bytes() == torn
    lines = lines_of(path)
    assert b"".join(lines[:3]) == complete
    recovered = json.loads(lines[3])
    assert (recovered["event_type"], recovered["level"], recovered["stage"], recovered["round"]) == (
        "journal_recovered", "warn", "pipeline", 0)
    assert recovered["message"] == f"recovered torn line of {len(torn)} bytes"
    assert recovered["counters_delta"] == {"torn_bytes": len(torn)}
    assert backend.verify_journal(path) == backend.VerifyResult(True, 5, 0, "ok")


def test_torn_only_line_and_repeated_torn_file(backend, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"event_ver')
    (tmp_path / "events.jsonl.torn-1").write_bytes(b"old|")
    with backend.JournalWriter(path, RUN_ID, clock=backend.FakeClock(START)) as journal:
        assert journal.head[0] == 1
    assert (tmp_path / "events.jsonl.torn-1").read_bytes() == b'old|{"event_ver'
    assert json.loads(path.read_bytes())["prev_hash"] == hashlib.sha256(RUN_ID.encode()).hexdigest()


def test_writer_creates_directories(backend, tmp_path):
    path = tmp_path / "a" / "b" / "events.jsonl"
    with backend.JournalWriter(str(path), RUN_ID) as journal:
        journal.append("progress", "x")
        assert journal.path == str(path) and journal.run_id == RUN_ID
    assert os.path.exists(path)


# -- large journals (verified on two threads by the native backend) -----------------------


@pytest.fixture(scope="module")
def large_journal(tmp_path_factory):
    """About 3 MB of journal lines: large enough to be checked in two parts."""
    from heidi_engine import backend as backend_mod

    path = tmp_path_factory.mktemp("large") / "events.jsonl"
    engine = backend_mod.load("python")
    with engine.JournalWriter(path, RUN_ID, fsync=False, clock=engine.FakeClock(START)) as journal:
        for i in range(10_000):
            journal.append("progress", f"step {i} " + "x" * (i % 200), round=1)
    return path.read_bytes().splitlines(keepends=True)


def verify_both(native, pure, path):
    results = [engine.verify_journal(path) for engine in (native, pure)]
    found = [(r.ok, r.lines, r.first_bad_line, r.reason) for r in results]
    assert found[0] == found[1]
    return found[0]


def test_large_journal_verifies(native, pure, tmp_path, large_journal):
    path = tmp_path / "events.jsonl"
    rewrite(path, large_journal)
    assert verify_both(native, pure, path) == (True, 10_000, 0, "ok")


@pytest.mark.parametrize("where", ["first", "second", "before_middle", "middle", "after_middle",
                                   "last_but_one", "last"])
def test_large_journal_first_bad_line_anywhere(native, pure, tmp_path, large_journal, where):
    # A two-part check splits after the line holding the middle byte; bad lines on each side
    # of the split, and at both ends, are reported exactly as a one-pass check reports them.
    total = len(large_journal)
    half = sum(map(len, large_journal)) // 2
    ends = itertools.accumulate(map(len, large_journal))
    last_of_first_part = next(number for number, end in enumerate(ends, 1) if end > half)
    number = {"first": 1, "second": 2, "before_middle": last_of_first_part,
              "middle": last_of_first_part + 1, "after_middle": last_of_first_part + 2,
              "last_but_one": total - 1, "last": total}[where]
    path = tmp_path / "events.jsonl"
    edited = list(large_journal)
    edited[number - 1] = edited[number - 1].replace(b'"message":"step', b'"message":"STEP')
    rewrite(path, edited)
    if number == total:  # nothing after the last line: only a state head could catch it
        assert verify_both(native, pure, path) == (True, total, 0, "ok")
    else:
        assert verify_both(native, pure, path) == (
            False, total, number + 1, f"line {number + 1}: prev_hash mismatch")
    broken = list(large_journal)
    broken[number - 1] = b"[" + broken[number - 1][1:]
    rewrite(path, broken)
    assert verify_both(native, pure, path) == (
        False, total, number, f"line {number}: not valid JSON")
    dropped = large_journal[: number - 1] + large_journal[number:]
    rewrite(path, dropped)
    expected = (True, total - 1, 0, "ok") if number == total else (
        False, total - 1, number, f"line {number}: seq {number + 1}, expected {number}")
    assert verify_both(native, pure, path) == expected


def test_large_journal_against_a_state_head(native, pure, out_dir, large_journal):
    path = out_dir / "journal" / "events.jsonl"
    path.parent.mkdir()
    rewrite(path, large_journal)
    state = out_dir / "state" / "run_state.json"
    state.parent.mkdir()
    for seq in (1, 4_000, 6_000, 10_000):
        digest = hashlib.sha256(large_journal[seq - 1]).hexdigest()
        state.write_text(json.dumps({"journal_head": {"seq": seq, "hash": digest}}))
        assert verify_both(native, pure, out_dir) == (True, 10_000, 0, "ok")
        state.write_text(json.dumps({"journal_head": {"seq": seq, "hash": "0" * 64}}))
        assert verify_both(native, pure, out_dir) == (
            False, 10_000, seq, f"line {seq}: hash differs from state head")


def test_verify_chain_checks_bytes_against_a_head(pure, tmp_path):
    from heidi_engine._py.journal import VerifyResult, verify_chain

    path = tmp_path / "events.jsonl"
    with pure.JournalWriter(path, RUN_ID, clock=pure.FakeClock(START)) as journal:
        for i in range(3):
            journal.append("progress", f"step {i}")
        seq, digest = journal.head
    data = path.read_bytes()
    assert verify_chain(data) == VerifyResult(True, 3, 0, "ok")
    assert verify_chain(data, run_id=RUN_ID, head=(seq, digest)) == VerifyResult(True, 3, 0, "ok")
    assert verify_chain(data, run_id="other") == VerifyResult(False, 3, 1, "line 1: run_id changed")
    assert verify_chain(data, head=(4, digest)) == VerifyResult(
        False, 3, 4, "journal ends at seq 3 before state head seq 4")
    assert verify_chain(data, head=(2, digest)) == VerifyResult(
        False, 3, 2, "line 2: hash differs from state head")
