"""Secret detection of the validate stage: recall and false positives on a labelled corpus.

The corpus is generated here, seeded: synthetic credentials in the exact formats of
their providers (with the CRC32 checksums GitHub and npm tokens carry, real HS256
signatures for JWTs) embedded in realistic code, and clean code full of look-alikes
(UUIDs, git and SHA-256 hashes, base64 test data, hex colours, placeholders).
None of the generated values is a real credential.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import string
import uuid
import zlib

import pytest

from heidi_engine.validation.secrets import MASK, find_secrets, mask_secrets, shannon_entropy

ALNUM = string.ascii_letters + string.digits
B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
HEX = "0123456789abcdef"


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rem = divmod(number, 62)
        digits.append(B62[rem])
    return "".join(reversed(digits)).rjust(width, "0")


def _checksummed(rng: random.Random, prefix: str, body_len: int) -> str:
    """GitHub/npm token layout: prefix, random body, base62 CRC32 of the body (6 chars)."""
    body = _rand(rng, ALNUM, body_len)
    return prefix + body + _base62(zlib.crc32(body.encode()), 6)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(rng: random.Random) -> str:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps({"sub": str(rng.randrange(10**9)), "name": "Ada",
                                  "iat": rng.randrange(1_600_000_000, 1_800_000_000)}).encode())
    key = rng.randbytes(32)
    signature = _b64url(hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


def _pem(rng: random.Random, label: str, escaped: bool) -> str:
    body = base64.b64encode(rng.randbytes(rng.choice((120, 400, 900)))).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    sep = "\\n" if escaped else "\n"
    return sep.join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"])


# Each generator returns (kind, secret value, code containing it).
def _gen_aws(rng):
    key_id = rng.choice(["AKIA", "ASIA"]) + _rand(rng, string.ascii_uppercase + "234567", 16)
    secret = _rand(rng, ALNUM + "/+", 40)
    code = rng.choice([
        f'session = boto3.Session(\n    aws_access_key_id="{key_id}",\n'
        f'    aws_secret_access_key="{secret}",\n    region_name="eu-west-1",\n)\n',
        f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n",
        f'AWS_CONFIG = {{"key": "{key_id}", "aws_secret": "{secret}"}}\n',
    ])
    return [("aws_access_key_id", key_id, code), ("aws_secret_access_key", secret, code)]


def _gen_github(rng):
    token = _checksummed(rng, rng.choice(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]), 30)
    return token


def _gen_github_pat(rng):
    return "github_pat_" + _rand(rng, ALNUM, 22) + "_" + _rand(rng, ALNUM, 59)


def _gen_openai(rng):
    if rng.random() < 0.5:
        return "sk-" + _rand(rng, ALNUM, 20) + "T3BlbkFJ" + _rand(rng, ALNUM, 20)
    return "sk-proj-" + _rand(rng, ALNUM + "-_", 74) + "T3BlbkFJ" + _rand(rng, ALNUM + "-_", 74)


def _gen_anthropic(rng):
    return "sk-ant-api03-" + _rand(rng, ALNUM + "-_", 93) + "AA"


def _gen_hf(rng):
    return "hf_" + _rand(rng, string.ascii_letters, 34)


def _gen_google(rng):
    return "AIza" + _rand(rng, ALNUM + "-_", 35)


def _gen_slack(rng):
    if rng.random() < 0.5:
        return (rng.choice(["xoxb-", "xoxp-"]) + str(rng.randrange(10**11, 10**12)) + "-"
                + str(rng.randrange(10**12, 10**13)) + "-" + _rand(rng, ALNUM, 24))
    return ("https://hooks.slack.com/services/T" + _rand(rng, string.ascii_uppercase + string.digits, 8)
            + "/B" + _rand(rng, string.ascii_uppercase + string.digits, 10) + "/" + _rand(rng, ALNUM, 24))


def _gen_stripe(rng):
    return rng.choice(["sk_live_", "rk_live_"]) + _rand(rng, ALNUM, rng.choice((24, 99)))


def _gen_twilio(rng):
    return rng.choice(["SK", "AC"]) + _rand(rng, HEX, 32)


def _gen_sendgrid(rng):
    return "SG." + _rand(rng, ALNUM + "-_", 22) + "." + _rand(rng, ALNUM + "-_", 43)


def _gen_npm(rng):
    return _checksummed(rng, "npm_", 30)


def _gen_gitlab(rng):
    return "glpat-" + _rand(rng, ALNUM + "-_", 20)


def _gen_jwt(rng):
    return _jwt(rng)


def _gen_password(rng):
    return _rand(rng, ALNUM + "!@#%^&*-_", rng.randrange(12, 28))


def _provider_code(rng, token: str) -> str:
    var = rng.choice(["TOKEN", "client_token", "credential", "auth", "KEY", "value"])
    return rng.choice([
        f'{var} = "{token}"\n',
        f"headers = {{\"Authorization\": \"token {token}\", \"Accept\": \"application/json\"}}\n",
        f"client = Client(api_key='{token}', timeout=30)\n",
        f"# temporary: {token}\nclient = Client.from_env()\n",
        f'config = json.loads(\'{{"service": "billing", "key": "{token}"}}\')\n',
        f"export {var.upper()}={token}\n",
        f"def connect():\n    return requests.get(URL, auth=(\"bot\", \"{token}\"))\n",
    ])


SIMPLE_FORMATS = {
    "github_token": _gen_github, "github_fine_grained_token": _gen_github_pat,
    "openai_key": _gen_openai, "anthropic_key": _gen_anthropic,
    "huggingface_token": _gen_hf, "google_api_key": _gen_google, "slack": _gen_slack,
    "stripe_key": _gen_stripe, "twilio": _gen_twilio, "sendgrid_key": _gen_sendgrid,
    "npm_token": _gen_npm, "gitlab_token": _gen_gitlab, "jwt": _gen_jwt,
}


def _gen_private_key(rng):
    label = rng.choice(["RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY",
                        "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY"])
    escaped = rng.random() < 0.5
    pem = _pem(rng, label, escaped)
    if escaped:
        code = ('SERVICE_ACCOUNT = {"type": "service_account", "project_id": "demo",\n'
                f'    "private_key": "{pem}\\n"}}\n')
    else:
        code = f'SIGNING_KEY = """{pem}\n"""\n\n\ndef sign(data):\n    return rsa_sign(SIGNING_KEY, data)\n'
    return "private_key", pem.split("-----")[2].strip("\\n\n ")[:40], code


def _gen_connection_string(rng):
    password = _rand(rng, ALNUM, rng.randrange(10, 24))
    scheme, port = rng.choice([("postgres", 5432), ("postgresql", 5432), ("mysql", 3306),
                               ("mongodb+srv", None), ("redis", 6379), ("amqp", 5672)])
    host = rng.choice(["db.internal", "10.0.3.7", "cluster0.ab1cd.mongodb.net", "localhost"])
    url = f"{scheme}://app_user:{password}@{host}" + (f":{port}" if port else "") + "/prod"
    code = rng.choice([f'DATABASE_URL = "{url}"\n', f"engine = create_engine('{url}', pool_size=5)\n",
                       f"DATABASES:\n  default: {url}\n"])
    return "connection_string_password", password, code


def _gen_azure(rng):
    key = base64.b64encode(rng.randbytes(64)).decode()
    conn = ("DefaultEndpointsProtocol=https;AccountName=demostore"
            f";AccountKey={key};EndpointSuffix=core.windows.net")
    return "azure_storage_key", key, f'blob = BlobServiceClient.from_connection_string("{conn}")\n'


def _gen_assignment(rng):
    value = _gen_password(rng)
    name = rng.choice(["password", "DB_PASSWORD", "secret", "client_secret", "api_key",
                       "API_KEY", "auth_token", "access_token", "SECRET_KEY", "smtp_pass"])
    code = rng.choice([f'{name} = "{value}"\n', f'settings["{name}"] = "{value}"\n',
                       f"{name}: {value}\n", f"{name.upper()}={value}\n",
                       f'login(user="admin", {name.lower()}="{value}")\n'])
    return "high_entropy_assignment", value, code


def _gen_aws_entry(rng):
    return rng.choice(_gen_aws(rng))


CONTEXT = [
    "import json\nimport requests\n\nURL = 'https://api.example.org/v1/items'\n\n",
    "from dataclasses import dataclass\n\n\n@dataclass\nclass Settings:\n    debug: bool = False\n\n",
    "def load(path):\n    with open(path) as fh:\n        return fh.read()\n\n",
    "#!/usr/bin/env python3\n\"\"\"Nightly sync job.\"\"\"\nimport os\nimport sys\n\n",
    "",
]
TRAILER = [
    "\n\ndef main():\n    print(fetch_all())\n\n\nif __name__ == '__main__':\n    main()\n",
    "\nlogging.basicConfig(level=logging.INFO)\n",
    "",
]


def secret_corpus(seed: int = 7, per_format: int = 30) -> list[tuple[str, str, str]]:
    """(format, secret value, code) triples; at least 15 formats."""
    rng = random.Random(seed)
    rows = []
    for _ in range(per_format):
        for fmt, gen in SIMPLE_FORMATS.items():
            token = gen(rng)
            rows.append((fmt, token, _provider_code(rng, token)))
        for gen in (_gen_private_key, _gen_connection_string, _gen_azure, _gen_assignment,
                    _gen_aws_entry):
            rows.append(gen(rng))
    return [(fmt, value, rng.choice(CONTEXT) + code + rng.choice(TRAILER))
            for fmt, value, code in rows]


def clean_corpus(seed: int = 11, n: int = 600) -> list[str]:
    """Realistic code with no credential, but many things that look random."""
    rng = random.Random(seed)

    def sha1():
        return hashlib.sha1(rng.randbytes(16)).hexdigest()

    def sha256():
        return hashlib.sha256(rng.randbytes(16)).hexdigest()

    def b64():
        return base64.b64encode(rng.randbytes(rng.randrange(24, 120))).decode()

    def color():
        return "#" + _rand(rng, HEX, 6)

    templates = [
        lambda: f'REQUEST_ID = "{uuid.UUID(int=rng.getrandbits(128), version=4)}"\n',
        lambda: f"def test_ids():\n    assert parse('{uuid.UUID(int=rng.getrandbits(128), version=4)}').version == 4\n",
        lambda: f'COMMIT = "{sha1()}"\nSHORT = COMMIT[:7]\n',
        lambda: f"# fixed in {sha1()[:10]} (see {sha1()})\ndef fix():\n    return None\n",
        lambda: f'EXPECTED_SHA256 = "{sha256()}"\nassert hashlib.sha256(data).hexdigest() == EXPECTED_SHA256\n',
        lambda: f'expected_key_hash = "{sha256()}"\n',
        lambda: f'PAYLOAD = "{b64()}"\nraw = base64.b64decode(PAYLOAD)\n',
        lambda: f"def test_decode():\n    data = b'{b64()}'\n    assert decode(data)\n",
        lambda: f'THEME = {{"primary": "{color()}", "accent": "{color()}", "bg": "{color()}"}}\n',
        lambda: 'client = OpenAI(api_key="YOUR_API_KEY")\n',
        lambda: 'API_KEY = "<your-api-key>"  # replace with your own key\n',
        lambda: 'openai.api_key = os.environ["OPENAI_API_KEY"]\n',
        lambda: 'token = os.getenv("GITHUB_TOKEN")\nheaders = {"Authorization": f"Bearer {token}"}\n',
        lambda: "password = getpass.getpass('Password: ')\n",
        lambda: "SECRET_KEY = os.environ.get('SECRET_KEY', '')\n",
        lambda: 'aws_access_key_id = "AKIAIOSFODNN7EXAMPLE"\n'
                'aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"\n',
        lambda: 'DATABASE_URL = "postgresql://localhost:5432/app"\n',
        lambda: 'DSN = f"postgres://{user}:{password}@{host}/{db}"\n',
        lambda: 'REDIS_URL = "redis://:${REDIS_PASSWORD}@cache:6379/0"\n',
        lambda: "if pem.startswith('-----BEGIN PRIVATE KEY-----'):\n    kind = 'pkcs8'\n",
        lambda: 'tokenizer = AutoTokenizer.from_pretrained("gpt2")\ntokenizer.pad_token = "<|endoftext|>"\n',
        lambda: "max_tokens = 512\nkey = (user_id, item_id)\nsort_key = 'created_at'\n",
        lambda: 'password_field = "pw1"\nsecret_name = "prod/db-credentials"\napi_key_env = "OPENAI_API_KEY"\n',
        lambda: f"cache_key = f\"user:{{uid}}:{rng.randrange(100)}\"\n",
        lambda: f"etag = '\"{sha1()[:16]}\"'\nnonce = '{_rand(rng, HEX, 24)}'\n",
        lambda: "token_type = 'Bearer'\nauth_scheme = 'Basic'\n",
        lambda: f"session_id = '{uuid.UUID(int=rng.getrandbits(128), version=4).hex}'\n",
        lambda: f'"integrity": "sha512-{b64()}",\n',
        lambda: f"ID = 'task_{rng.randrange(10**6)}_{_rand(rng, string.ascii_lowercase, 6)}'\n",
        lambda: "def skip(xs):\n    return [x for x in xs if not x.startswith('sk-')]\n",
        lambda: f"WEIGHTS = {[round(rng.random(), 4) for _ in range(8)]}\n",
        lambda: 'KEY_TYPES = ["rsa", "ed25519", "ecdsa"]\ntoken = Token(kind="ident", text=name)\n',
        lambda: f"hash_value = 0x{_rand(rng, HEX, 16)}\n",
        lambda: f"test_vector = bytes.fromhex('{_rand(rng, HEX, 64)}')\n",
        lambda: "url = f'https://{host}:{port}/health'\nresp = session.get(url, timeout=5)\n",
        lambda: 'print("Set HF_TOKEN=hf_xxx before running")\n',
        lambda: f'img = "data:image/png;base64,{b64()}"\n',
        lambda: f"access_key_id = credentials.access_key  # {sha1()[:8]}\n",
    ]
    code_bodies = [
        "def merge(a, b):\n    out = dict(a)\n    out.update(b)\n    return out\n",
        "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, x):\n"
        "        self.items.append(x)\n",
        "for i, line in enumerate(lines):\n    if not line.strip():\n        continue\n"
        "    print(i, line)\n",
        "",
    ]
    rows = []
    for _ in range(n):
        parts = [rng.choice(CONTEXT)]
        for _ in range(rng.randrange(1, 4)):
            parts.append(rng.choice(templates)())
        parts.append(rng.choice(code_bodies))
        parts.append(rng.choice(TRAILER))
        rows.append("".join(parts))
    return rows


def test_corpus_has_at_least_fifteen_formats():
    assert len({fmt for fmt, _, _ in secret_corpus(per_format=1)}) >= 15


def test_recall_is_at_least_99_percent():
    corpus = secret_corpus()
    missed = [(fmt, code) for fmt, value, code in corpus
              if not any(value in code[f.start:f.end] or code[f.start:f.end] in value
                         for f in find_secrets(code))]
    recall = 1 - len(missed) / len(corpus)
    assert recall >= 0.99, f"recall {recall:.3f}; missed formats: {sorted({m[0] for m in missed})}"


def test_false_positives_at_most_one_percent():
    corpus = clean_corpus()
    flagged = [code for code in corpus if find_secrets(code)]
    rate = len(flagged) / len(corpus)
    kinds = sorted({f.kind for code in flagged for f in find_secrets(code)})
    assert rate <= 0.01, f"false-positive rate {rate:.3f} ({kinds})"


def test_masking_removes_every_secret():
    for fmt, value, code in secret_corpus(seed=3, per_format=4):
        masked = mask_secrets(code)
        assert value not in masked, fmt
        assert MASK in masked


def test_findings_never_carry_the_secret():
    token = _gen_github(random.Random(1))
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
])
def test_truncated_and_unusual_layouts_are_caught(text):
    assert find_secrets(text)


def test_entropy():
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == 2.0
