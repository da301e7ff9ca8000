"""Labelled corpora for the secret detector, generated (seeded) for tests and benchmarks.

``secret_corpus()`` embeds synthetic credentials in the exact formats of their providers
(with the CRC32 checksums GitHub and npm tokens carry, real HS256 signatures for JWTs,
base64 key material of the right size) in the shapes code holds them: assignments, dict
literals, keyword arguments, URLs, headers, config and ``.env`` lines, comments,
f-strings, YAML/INI/JSON text. ``clean_corpus()`` is realistic code with no credential
but full of look-alikes: public keys and certificates, hashes and digests, git SHAs,
UUIDs, ARNs, base64 of plain data, environment lookups, templated URLs, placeholders,
the providers' own published documentation example keys, and test fixtures.

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
from collections.abc import Callable

ALNUM = string.ascii_letters + string.digits
B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
HEX = "0123456789abcdef"
UPPER_DIGITS = string.ascii_uppercase + string.digits


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


def _b64(rng: random.Random, n_bytes: int) -> str:
    return base64.b64encode(rng.randbytes(n_bytes)).decode()


def _jwt(rng: random.Random) -> str:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps({"sub": str(rng.randrange(10**9)), "name": "Ada",
                                  "iat": rng.randrange(1_600_000_000, 1_800_000_000)}).encode())
    key = rng.randbytes(32)
    signature = _b64url(hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


def _password(rng: random.Random) -> str:
    """A human-made-strong password: letters, digits, a few symbols."""
    return _rand(rng, ALNUM, rng.randrange(10, 20)) + _rand(rng, "!#%^*-_.~", 2) + _rand(rng, string.digits, 2)


# ---- credential formats -----------------------------------------------------------------
# Each returns the credential as it is pasted into code (the token).

TOKEN_FORMATS: dict[str, Callable[[random.Random], str]] = {
    "aws_access_key": lambda r: rng_choice(r, ["AKIA", "ASIA"]) + _rand(r, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16),
    "github_token": lambda r: _checksummed(r, rng_choice(r, ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]), 30),
    "github_fine_grained_token": lambda r: "github_pat_" + _rand(r, ALNUM, 22) + "_" + _rand(r, ALNUM, 59),
    "gitlab_token": lambda r: "glpat-" + _rand(r, ALNUM + "-_", 20),
    "openai_key": lambda r: rng_choice(r, [
        "sk-" + _rand(r, ALNUM, 20) + "T3BlbkFJ" + _rand(r, ALNUM, 20),
        "sk-proj-" + _rand(r, ALNUM + "-_", 74) + "T3BlbkFJ" + _rand(r, ALNUM + "-_", 74)]),
    "anthropic_key": lambda r: "sk-ant-api03-" + _rand(r, ALNUM + "-_", 93) + "AA",
    "huggingface_token": lambda r: "hf_" + _rand(r, string.ascii_letters, 34),
    "google_api_key": lambda r: "AIza" + _rand(r, ALNUM + "-_", 35),
    "google_oauth_secret": lambda r: "GOCSPX-" + _rand(r, ALNUM + "-_", 28),
    "slack_token": lambda r: (rng_choice(r, ["xoxb-", "xoxp-"]) + str(r.randrange(10**11, 10**12)) + "-"
                              + str(r.randrange(10**12, 10**13)) + "-" + _rand(r, ALNUM, 24)),
    "slack_webhook": lambda r: ("https://hooks.slack.com/services/T" + _rand(r, UPPER_DIGITS, 8)
                                + "/B" + _rand(r, UPPER_DIGITS, 10) + "/" + _rand(r, ALNUM, 24)),
    "discord_webhook": lambda r: (f"https://{rng_choice(r, ['discord.com', 'discordapp.com'])}/api/webhooks/"
                                  f"{r.randrange(10**17, 10**19)}/{_rand(r, ALNUM + '-_', 68)}"),
    "stripe_secret_key": lambda r: "sk_live_" + _rand(r, ALNUM, rng_choice(r, [24, 99])),
    "stripe_restricted_key": lambda r: "rk_live_" + _rand(r, ALNUM, rng_choice(r, [24, 99])),
    "stripe_webhook_secret": lambda r: "whsec_" + _rand(r, ALNUM, 32),
    "twilio_api_key": lambda r: "SK" + _rand(r, HEX, 32),
    "sendgrid_key": lambda r: "SG." + _rand(r, ALNUM + "-_", 22) + "." + _rand(r, ALNUM + "-_", 43),
    "mailgun_key": lambda r: "key-" + _rand(r, HEX, 32),
    "npm_token": lambda r: _checksummed(r, "npm_", 30),
    "pypi_token": lambda r: "pypi-AgEIcHlwaS5vcmc" + _rand(r, ALNUM + "-_", 120),
    "digitalocean_token": lambda r: rng_choice(r, ["dop_v1_", "doo_v1_"]) + _rand(r, HEX, 64),
    "shopify_token": lambda r: rng_choice(r, ["shpat_", "shpss_"]) + _rand(r, HEX, 32),
    "telegram_bot_token": lambda r: f"{r.randrange(10**8, 10**10)}:AA{_rand(r, ALNUM + '-_', 33)}",
    "jwt": _jwt,
}


def rng_choice(rng: random.Random, items: list):
    return items[rng.randrange(len(items))]


def _token_shapes(rng: random.Random, token: str) -> str:
    """Code that holds a provider token, in one of many shapes."""
    var = rng_choice(rng, ["TOKEN", "client_token", "credential", "auth", "KEY", "value", "bot",
                           "webhook", "conn"])
    return rng_choice(rng, [
        f'{var} = "{token}"\n',
        f"{var.upper()} = '{token}'  # prod\n",
        f'headers = {{"Authorization": "Bearer {token}", "Accept": "application/json"}}\n',
        f"headers = {{'X-Api-Key': '{token}'}}\n",
        f"client = Client(api_key='{token}', timeout=30)\n",
        f"# temporary: {token}\nclient = Client.from_env()\n",
        f'config = json.loads(\'{{"service": "billing", "key": "{token}"}}\')\n',
        f"export {var.upper()}={token}\n",
        f'def connect():\n    return requests.get(URL, auth=("bot", "{token}"))\n',
        f'log.info(f"calling {{endpoint}} with {token} as {{user}}")\n',
        f'SETTINGS = dict(name="svc", token="{token}", retries=3)\n',
        f'CONFIG_YAML = """\nservice:\n  name: billing\n  key: {token}\n"""\n',
        f'url = "https://api.example.com/v1/send?key={token}&q=1"\n',
        f"os.environ.setdefault('SERVICE_TOKEN', '{token}')\n",
        f"    return {{'token': '{token}', 'expires': 3600}}\n",
    ])


def _gen_token(fmt: str) -> Callable[[random.Random], tuple[str, str, str]]:
    def gen(rng: random.Random) -> tuple[str, str, str]:
        token = TOKEN_FORMATS[fmt](rng)
        return fmt, token, _token_shapes(rng, token)
    return gen


def _gen_aws_secret(rng):
    key_id = TOKEN_FORMATS["aws_access_key"](rng)
    secret = _rand(rng, ALNUM + "/+", 40)
    code = rng_choice(rng, [
        f'session = boto3.Session(\n    aws_access_key_id="{key_id}",\n'
        f'    aws_secret_access_key="{secret}",\n    region_name="eu-west-1",\n)\n',
        f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n",
        f'AWS_CONFIG = {{"access_key": "{key_id}", "aws_secret": "{secret}"}}\n',
        f"export AWS_SECRET_ACCESS_KEY={secret}\n",
        f"s3 = boto3.client('s3', aws_secret_access_key='{secret}')\n",
    ])
    return "aws_secret_access_key", secret, code


def _pem(rng: random.Random, label: str, escaped: bool, n_bytes: int) -> str:
    body = _b64(rng, n_bytes)
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    sep = "\\n" if escaped else "\n"
    return sep.join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"])


def _private_key_gen(labels: list[str], fmt: str):
    def gen(rng):
        label = rng_choice(rng, labels)
        escaped = rng.random() < 0.4
        pem = _pem(rng, label, escaped, rng_choice(rng, [120, 400, 900]))
        if escaped:
            code = ('SERVICE_ACCOUNT = {"type": "service_account", "project_id": "demo",\n'
                    f'    "private_key": "{pem}\\n"}}\n')
        else:
            code = rng_choice(rng, [
                f'SIGNING_KEY = """{pem}\n"""\n\n\ndef sign(data):\n    return rsa_sign(SIGNING_KEY, data)\n',
                f"# deploy key\n# {pem.replace(chr(10), chr(10) + '# ')}\n",
                f"KEY = '''\n{pem}\n'''\n",
            ])
        return fmt, pem.split("-----")[2].strip("\\n\n# ")[:40], code
    return gen


DB_SCHEMES = [("postgres", 5432), ("postgresql", 5432), ("postgresql+psycopg2", 5432),
              ("mysql", 3306), ("mysql+pymysql", 3306), ("mariadb", 3306),
              ("mongodb", 27017), ("mongodb+srv", None), ("redis", 6379), ("rediss", 6380),
              ("amqp", 5672), ("amqps", 5671), ("mssql", 1433), ("mssql+pyodbc", 1433),
              ("oracle", 1521), ("clickhouse", 9000), ("cockroachdb", 26257), ("nats", 4222),
              ("kafka", 9092), ("ldap", 389), ("ftp", 21), ("sftp", 22), ("smtp", 587)]


def _gen_db_url(rng):
    password = _password(rng) if rng.random() < 0.6 else _rand(rng, ALNUM, rng.randrange(8, 24))
    scheme, port = rng_choice(rng, DB_SCHEMES)
    host = rng_choice(rng, ["db.internal", "10.0.3.7", "cluster0.ab1cd.mongodb.net", "localhost",
                            "prod-db-1.cz7q.eu-west-1.rds.amazonaws.com"])
    user = rng_choice(rng, ["app_user", "admin", "root", "svc-billing", "guest"])
    url = f"{scheme}://{user}:{password}@{host}" + (f":{port}" if port else "") + "/prod"
    code = rng_choice(rng, [
        f'DATABASE_URL = "{url}"\n', f"engine = create_engine('{url}', pool_size=5)\n",
        f"DATABASES:\n  default: {url}\n", f"BROKER_URL={url}\n",
        f'settings = {{"db": "{url}", "debug": False}}\n', f"# local: {url}\n",
        f'conn = connect(os.getenv("DB_URL", "{url}"))\n',
        f'dsn = f"{url}?application_name={{app}}"\n',
    ])
    return "database_url_password", password, code


def _gen_basic_auth_url(rng):
    password = _password(rng)
    url = f"https://{rng_choice(rng, ['deploy', 'ci-bot', 'alice'])}:{password}@" \
          f"{rng_choice(rng, ['git.example.com/org/repo.git', 'registry.internal/v2/', 'api.example.net'])}"
    code = rng_choice(rng, [f'REMOTE = "{url}"\n', f"subprocess.run(['git', 'clone', '{url}'])\n",
                            f"requests.get('{url}')\n", f"pip install --index-url {url} pkg\n"])
    return "basic_auth_url", password, code


def _gen_azure(rng):
    key = _b64(rng, 64)
    conn = ("DefaultEndpointsProtocol=https;AccountName=demostore"
            f";AccountKey={key};EndpointSuffix=core.windows.net")
    code = rng_choice(rng, [f'blob = BlobServiceClient.from_connection_string("{conn}")\n',
                            f"AZURE_STORAGE_CONNECTION_STRING={conn}\n"])
    return "azure_storage_key", key, code


def _gen_assignment(rng):
    value = _password(rng) if rng.random() < 0.5 else _rand(rng, ALNUM + "-_", rng.randrange(24, 48))
    name = rng_choice(rng, ["password", "DB_PASSWORD", "secret", "client_secret", "api_key",
                            "API_KEY", "auth_token", "access_token", "SECRET_KEY", "smtp_pass",
                            "passphrase", "encryption_key", "refresh_token", "signing_secret"])
    code = rng_choice(rng, [
        f'{name} = "{value}"\n', f'settings["{name}"] = "{value}"\n',
        f"{name}: {value}\n", f"{name.upper()}={value}\n",
        f'login(user="admin", {name.lower()}="{value}")\n',
        f'self.{name.lower()} = "{value}"\n', f"{{'{name}': '{value}', 'user': 'admin'}}\n",
        f'<add key="{name}" value="{value}" />\n',
    ])
    return "high_entropy_assignment", value, code


def _gen_basic_auth_header(rng):
    raw = f"{rng_choice(rng, ['admin', 'api', 'svc'])}:{_password(rng)}"
    encoded = base64.b64encode(raw.encode()).decode()
    code = rng_choice(rng, [f'headers = {{"Authorization": "Basic {encoded}"}}\n',
                            f"curl -H 'Authorization: Basic {encoded}' https://api.example.com\n"])
    return "basic_auth_header", encoded, code


GENERATORS: dict[str, Callable[[random.Random], tuple[str, str, str]]] = {
    **{fmt: _gen_token(fmt) for fmt in TOKEN_FORMATS},
    "aws_secret_access_key": _gen_aws_secret,
    "rsa_private_key": _private_key_gen(["RSA PRIVATE KEY", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY"],
                                        "rsa_private_key"),
    "ec_private_key": _private_key_gen(["EC PRIVATE KEY", "DSA PRIVATE KEY"], "ec_private_key"),
    "openssh_private_key": _private_key_gen(["OPENSSH PRIVATE KEY"], "openssh_private_key"),
    "pgp_private_key": _private_key_gen(["PGP PRIVATE KEY BLOCK"], "pgp_private_key"),
    "database_url_password": _gen_db_url,
    "basic_auth_url": _gen_basic_auth_url,
    "azure_storage_key": _gen_azure,
    "high_entropy_assignment": _gen_assignment,
    "basic_auth_header": _gen_basic_auth_header,
}

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
    """(format, secret value, code) triples over every format of ``GENERATORS``."""
    rng = random.Random(seed)
    rows = [gen(rng) for _ in range(per_format) for gen in GENERATORS.values()]
    return [(fmt, value, rng_choice(rng, CONTEXT) + code + rng_choice(rng, TRAILER))
            for fmt, value, code in rows]


# ---- clean code with look-alikes ----------------------------------------------------------

# The providers' own published documentation examples: not credentials.
PUBLISHED_EXAMPLES = [
    'aws_access_key_id = "AKIAIOSFODNN7EXAMPLE"\n'
    'aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"\n',
    'stripe.api_key = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"\n',
    'STRIPE_PUBLISHABLE_KEY = "pk_test_TYooMQauvdEDq54NiTphI7jx"\n',
    '# from jwt.io\nTOKEN = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6'
    'IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"\n',
    'SLACK_WEBHOOK = "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"\n',
    'account_sid = "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"\nauth_token = "your_auth_token"\n',
    'GITHUB_TOKEN = "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"\n',
    'OPENAI_API_KEY = "sk-..."  # set your key\n',
    'api_key = "YOUR_API_KEY"\nclient = OpenAI(api_key="<your-api-key>")\n',
    'DATABASE_URL = "postgres://user:password@localhost:5432/mydb"\n',
    'REDIS_URL = "redis://:password@localhost:6379/0"  # docs example\n',
    'MONGO_URI = "mongodb://username:password@host:27017/db"\n',
    'url = "https://user:pass@example.com/path"\n',
    'print("Set HF_TOKEN=hf_xxx before running")\n',
    'password = "changeme"  # replace in production\n',
    'SECRET_KEY = "django-insecure-change-me"\n',
]


def clean_corpus(seed: int = 11, n: int = 1000) -> list[str]:
    """Realistic code with no credential, but many things that look random."""
    rng = random.Random(seed)

    def sha1():
        return hashlib.sha1(rng.randbytes(16)).hexdigest()

    def sha256():
        return hashlib.sha256(rng.randbytes(16)).hexdigest()

    def md5():
        return hashlib.md5(rng.randbytes(16)).hexdigest()

    def b64():
        return _b64(rng, rng.randrange(24, 120))

    def uid():
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def color():
        return "#" + _rand(rng, HEX, 6)

    def account():
        return str(rng.randrange(10**11, 10**12))

    def ssh_pub():
        kind, blob = rng_choice(rng, [("ssh-rsa", "AAAAB3NzaC1yc2EAAAADAQABAAABAQ" + _b64(rng, 250)),
                                      ("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAI" + _b64(rng, 32)[:43]),
                                      ("ecdsa-sha2-nistp256", "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAI" + _b64(rng, 90))])
        return f"{kind} {blob} {rng_choice(rng, ['deploy@ci', 'alice@laptop', 'bot'])}"

    def public_pem(label):
        return _pem(rng, label, False, rng_choice(rng, [162, 294, 600]))

    templates = [
        lambda: f'REQUEST_ID = "{uid()}"\n',
        lambda: f"def test_ids():\n    assert parse('{uid()}').version == 4\n",
        lambda: f'idempotency_key = "{uid()}"\nsession_key = "{uid()}"\n',
        lambda: f'COMMIT = "{sha1()}"\nSHORT = COMMIT[:7]\n',
        lambda: f"# fixed in {sha1()[:10]} (see {sha1()})\ndef fix():\n    return None\n",
        lambda: f'{{"sha": "{sha1()}", "parent": "{sha1()}", "tree": "{sha1()}"}}\n',
        lambda: f'EXPECTED_SHA256 = "{sha256()}"\nassert hashlib.sha256(data).hexdigest() == EXPECTED_SHA256\n',
        lambda: f'expected_key_hash = "{sha256()}"\ncache_key = "{md5()}"\n',
        lambda: f'content_hash = "{md5()}"\netag = "{md5()}"\nobject_key = "uploads/{md5()}.png"\n',
        lambda: f'key = "{md5()}"  # cache entry\n',
        lambda: f'token_hash = "{sha256()}"\n',
        lambda: f'PAYLOAD = "{b64()}"\nraw = base64.b64decode(PAYLOAD)\n',
        lambda: f"def test_decode():\n    data = b'{b64()}'\n    assert decode(data)\n",
        lambda: f'img = "data:image/png;base64,{b64()}"\n',
        lambda: f'"integrity": "sha512-{b64()}",\n',
        lambda: f'THEME = {{"primary": "{color()}", "accent": "{color()}", "bg": "{color()}"}}\n',
        lambda: f'AUTHORIZED_KEY = "{ssh_pub()}"\n',
        lambda: f"authorized_keys = [\n    '{ssh_pub()}',\n]\n",
        lambda: f"public_key: {ssh_pub()}\n",
        lambda: f'PUBLIC_KEY = """{public_pem("PUBLIC KEY")}\n"""\n',
        lambda: f'CA_CERT = """{public_pem("CERTIFICATE")}\n"""\n',
        lambda: f'role_arn = "arn:aws:iam::{account()}:role/deploy-{rng.randrange(100)}"\n',
        lambda: f'TOPIC = "arn:aws:sns:eu-west-1:{account()}:alerts"\nBUCKET = "arn:aws:s3:::logs-{account()}"\n',
        lambda: f'kms_key_arn = "arn:aws:kms:us-east-1:{account()}:key/{uid()}"\n',
        lambda: 'openai.api_key = os.environ["OPENAI_API_KEY"]\n',
        lambda: 'token = os.getenv("GITHUB_TOKEN")\nheaders = {"Authorization": f"Bearer {token}"}\n',
        lambda: "password = getpass.getpass('Password: ')\n",
        lambda: "SECRET_KEY = os.environ.get('SECRET_KEY', '')\n",
        lambda: "aws_secret_access_key = os.environ['AWS_SECRET_ACCESS_KEY']\n",
        lambda: "db_password = config.get('database', 'password')\n",
        lambda: 'api_key = request.headers.get("X-Api-Key")\n',
        lambda: 'DATABASE_URL = "postgresql://localhost:5432/app"\n',
        lambda: 'DSN = f"postgres://{user}:{password}@{host}/{db}"\n',
        lambda: 'REDIS_URL = "redis://:${REDIS_PASSWORD}@cache:6379/0"\n',
        lambda: 'url = "mysql://%s:%s@%s/%s" % (user, pw, host, name)\n',
        lambda: "BROKER = 'amqp://{user}:{password}@rabbit:5672//'.format(**cfg)\n",
        lambda: 'MONGO = "mongodb+srv://cluster0.ab1cd.mongodb.net/?retryWrites=true"\n',
        lambda: "if pem.startswith('-----BEGIN PRIVATE KEY-----'):\n    kind = 'pkcs8'\n",
        lambda: 'tokenizer = AutoTokenizer.from_pretrained("gpt2")\ntokenizer.pad_token = "<|endoftext|>"\n',
        lambda: "max_tokens = 512\nkey = (user_id, item_id)\nsort_key = 'created_at'\n",
        lambda: 'password_field = "pw1"\nsecret_name = "prod/db-credentials"\napi_key_env = "OPENAI_API_KEY"\n',
        lambda: f"cache_key = f\"user:{{uid}}:{rng.randrange(100)}\"\n",
        lambda: f"etag = '\"{sha1()[:16]}\"'\nnonce = '{_rand(rng, HEX, 24)}'\n",
        lambda: "token_type = 'Bearer'\nauth_scheme = 'Basic'\n",
        lambda: f"session_id = '{uuid.UUID(int=rng.getrandbits(128), version=4).hex}'\n",
        lambda: f"ID = 'task_{rng.randrange(10**6)}_{_rand(rng, string.ascii_lowercase, 6)}'\n",
        lambda: "def skip(xs):\n    return [x for x in xs if not x.startswith('sk-')]\n",
        lambda: f"WEIGHTS = {[round(rng.random(), 4) for _ in range(8)]}\n",
        lambda: 'KEY_TYPES = ["rsa", "ed25519", "ecdsa"]\ntoken = Token(kind="ident", text=name)\n',
        lambda: f"hash_value = 0x{_rand(rng, HEX, 16)}\n",
        lambda: f"test_vector = bytes.fromhex('{_rand(rng, HEX, 64)}')\n",
        lambda: "url = f'https://{host}:{port}/health'\nresp = session.get(url, timeout=5)\n",
        lambda: f"access_key_id = credentials.access_key  # {sha1()[:8]}\n",
        lambda: "def check_password(password: str) -> bool:\n    return len(password) >= 12\n",
        lambda: 'def test_login(client):\n    resp = client.post("/login", data={"password": "wrong"})\n'
                "    assert resp.status_code == 401\n",
        lambda: "token = response.json()['access_token']\nself.token = token\n",
        lambda: "secret = secrets.token_hex(16)\nkey = Fernet.generate_key()\n",
        lambda: "items.sort(key=lambda item: item[1])\nauth = (user, password)\n",
        lambda: 'TOKEN_URL = "https://oauth2.googleapis.com/token"\nAUTH_URL = "https://github.com/login/oauth/authorize"\n',
        lambda: f'STRIPE_PUBLISHABLE_KEY = "pk_live_{_rand(rng, ALNUM, 24)}"\n',
        lambda: f'GOOGLE_CLIENT_ID = "{rng.randrange(10**11, 10**12)}-{_rand(rng, string.ascii_lowercase + string.digits, 32)}.apps.googleusercontent.com"\n',
        lambda: f'password_hash = "$2b$12${_rand(rng, ALNUM + "./", 53)}"\n',
        lambda: f'fingerprint = "SHA256:{_b64(rng, 32)[:43]}"\n',
        lambda: f"SENTRY_DSN = \"https://{_rand(rng, HEX, 32)}@o{rng.randrange(10**5, 10**6)}.ingest.sentry.io/{rng.randrange(10**6)}\"\n",
        lambda: f'font_url = "https://fonts.gstatic.com/s/roboto/v30/{_rand(rng, ALNUM, 40)}.woff2"\n',
        lambda: f'video = "https://www.youtube.com/watch?v={_rand(rng, ALNUM + "-_", 11)}"\n',
        lambda: f'IMAGE = "python@sha256:{sha256()}"\n',
        lambda: f'sig = hmac.new(key, msg, "sha256").hexdigest()  # e.g. {sha256()}\n',
        lambda: f"from_email = 'noreply@example.com'\nhost = '10.{rng.randrange(255)}.{rng.randrange(255)}.1'\n",
        lambda: f'CSS_CLASS = "btn-{_rand(rng, string.ascii_lowercase, 8)} col-md-{rng.randrange(12)}"\n',
        lambda: rng_choice(rng, PUBLISHED_EXAMPLES),
        lambda: rng_choice(rng, PUBLISHED_EXAMPLES),
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
        parts = [rng_choice(rng, CONTEXT)]
        for _ in range(rng.randrange(1, 4)):
            parts.append(rng_choice(rng, templates)())
        parts.append(rng_choice(rng, code_bodies))
        parts.append(rng_choice(rng, TRAILER))
        rows.append("".join(parts))
    return rows


def covers(value: str, text: str, spans: list[tuple[int, int]]) -> bool:
    """Whether the secret ``value`` (somewhere in ``text``) lies inside a reported span,
    or a reported span lies inside it (a finding covers part of a key block)."""
    for start, end in spans:
        found = text[start:end]
        if value in found or (found and found in value):
            return True
    return False
