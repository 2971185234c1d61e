"""A labelled corpus for measuring redaction's detectors, generated (seeded, reproducible).

    redaction-corpus.py --seed N --per-class N --clean-kb N --out DIR

Writes DIR/labelled.jsonl: one sample a line, {"text": ..., "labels": [{"class", "value"}]}, each
a value of a built-in class in realistic surroundings (chat, config files, stack traces, JSON
logs), personal data from Faker in several locales; and DIR/clean.txt: text with no personal
data or secret (prose, source code, UUIDs, hashes, base64 that is not a key, dates, versions,
numbers), where every finding is a false positive. Secrets are generated in their vendors'
published formats from the seeded generator; none is real.
"""

import argparse
import base64
import hashlib
import json
import random
import string
import uuid
from pathlib import Path

from faker import Faker

LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "en_IN"]
# Locales whose Faker IBANs are real ones (checked again below).
IBAN_LOCALES = ["en_GB", "de_DE", "fr_FR", "nl_NL", "es_ES", "it_IT"]
ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
BASE32 = string.ascii_uppercase + "234567"


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)
        self.fakers = {loc: Faker(loc) for loc in LOCALES + IBAN_LOCALES}
        for i, f in enumerate(self.fakers.values()):
            f.seed_instance(seed * 100 + i)

    def faker(self, locales=LOCALES):
        return self.fakers[self.r.choice(locales)]

    def chars(self, alphabet, n):
        return "".join(self.r.choice(alphabet) for _ in range(n))

    def digits(self, n):
        return self.chars(string.digits, n)

    # --- values, one function a class ---------------------------------------------------

    def email(self):
        return self.faker().email()

    def phone(self):
        r = self.r
        country = r.choice(["US", "UK", "DE", "FR", "IN"])
        if r.random() < 0.15:
            # Written without any separator: only a word before it says it is a phone number.
            return r.choice([f"{r.randint(2, 9)}{self.digits(2)}{r.randint(2, 9)}{self.digits(6)}",
                             f"07{r.randint(1, 9)}{self.digits(8)}", f"{r.randint(6, 9)}{self.digits(9)}"])
        if country == "US":
            a, e, n = f"{r.randint(2, 9)}{self.digits(2)}", f"{r.randint(2, 9)}{self.digits(2)}", self.digits(4)
            return r.choice([f"({a}) {e}-{n}", f"{a}-{e}-{n}", f"{a}.{e}.{n}", f"+1 {a} {e} {n}", f"+1{a}{e}{n}"])
        if country == "UK":
            if r.random() < 0.5:
                a, b = self.digits(4), self.digits(4)
                return r.choice([f"020 {a} {b}", f"+44 20 {a} {b}"])
            m = f"7{r.randint(1, 9)}{self.digits(2)}"
            n = self.digits(6)
            return r.choice([f"0{m} {n}", f"+44 {m} {n}", f"+44{m}{n}"])
        if country == "DE":
            if r.random() < 0.5:
                n = self.digits(8)
                return r.choice([f"030 {n}", f"+49 30 {n}", f"030/{n}"])
            m, n = f"15{r.randint(1, 9)}", self.digits(8)
            return r.choice([f"0{m} {n}", f"+49 {m} {n}"])
        if country == "FR":
            groups = [f"{r.randint(1, 9)}"] + [self.digits(2) for _ in range(4)]
            return r.choice(["0" + " ".join(groups), "0" + ".".join(groups), "+33 " + " ".join(groups)])
        m = f"{r.randint(6, 9)}{self.digits(4)}"
        n = self.digits(5)
        return r.choice([f"{m} {n}", f"+91 {m} {n}", f"+91-{m}{n}"])

    def payment_card(self):
        kind = self.r.choice(["visa16", "mastercard", "amex", "discover", "jcb", "diners"])
        number = self.faker().credit_card_number(card_type=kind)
        if self.r.random() < 0.5:
            return number
        sep = self.r.choice([" ", "-"])
        if len(number) == 15:
            return sep.join([number[:4], number[4:10], number[10:]])
        return sep.join(number[i:i + 4] for i in range(0, len(number), 4))

    def iban(self):
        while True:
            value = self.faker(IBAN_LOCALES).iban()
            if iban_valid(value):
                break
        if self.r.random() < 0.5:
            return value
        return " ".join(value[i:i + 4] for i in range(0, len(value), 4))

    def us_ssn(self):
        while True:
            value = self.fakers["en_US"].ssn()
            area, group, serial = value.split("-")
            if area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000":
                return value

    def ipv4(self):
        return self.faker().ipv4_public()

    def ipv6(self):
        return self.faker().ipv6()

    def aws_access_key(self):
        return self.r.choice(["AKIA", "ASIA"]) + self.chars(BASE32, 16)

    def aws_secret_key(self):
        return self.chars(B64, 40)

    def gcp_api_key(self):
        return "AIza" + self.chars(B64URL, 35)

    def gcp_service_account_key(self):
        return self.chars("0123456789abcdef", 40)

    def azure_storage_key(self):
        return self.chars(B64, 86) + "=="

    def azure_client_secret(self):
        return self.chars(ALNUM, 3) + str(self.r.randint(0, 9)) + "Q~" + self.chars(ALNUM + "_~.-", 34)

    def github_token(self):
        if self.r.random() < 0.8:
            return self.r.choice(["ghp_", "gho_", "ghs_"]) + self.chars(ALNUM, 36)
        return "github_pat_" + self.chars(ALNUM + "_", 82)

    def gitlab_token(self):
        return "glpat-" + self.chars(ALNUM + "_-", 20)

    def slack_token(self):
        return f"xoxb-{self.digits(12)}-{self.digits(13)}-{self.chars(ALNUM, 24)}"

    def slack_webhook(self):
        up = string.ascii_uppercase + string.digits
        return f"https://hooks.slack.com/services/T{self.chars(up, 10)}/B{self.chars(up, 10)}/{self.chars(ALNUM, 24)}"

    def stripe_key(self):
        return self.r.choice(["sk_live_", "rk_live_", "sk_test_"]) + self.chars(ALNUM, self.r.randint(24, 99))

    def openai_key(self):
        if self.r.random() < 0.8:
            return "sk-proj-" + self.chars(B64URL, self.r.randint(48, 156))
        return "sk-" + self.chars(ALNUM, 20) + "T3BlbkFJ" + self.chars(ALNUM, 20)

    def anthropic_key(self):
        return "sk-ant-api03-" + self.chars(B64URL, 93) + "AA"

    def jwt(self):
        def part(obj):
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
        header = part({"alg": self.r.choice(["HS256", "RS256", "ES256"]), "typ": "JWT"})
        payload = part({"sub": self.faker().user_name(), "iat": self.r.randint(1_600_000_000, 1_800_000_000)})
        signature = base64.urlsafe_b64encode(self.r.randbytes(self.r.choice([32, 64, 256]))).rstrip(b"=").decode()
        return f"{header}.{payload}.{signature}"

    def pem_private_key(self):
        kind = self.r.choice(["RSA ", "EC ", "", "OPENSSH "])
        body = base64.b64encode(self.r.randbytes(self.r.choice([121, 608, 1190]))).decode()
        lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
        return f"-----BEGIN {kind}PRIVATE KEY-----\n{lines}\n-----END {kind}PRIVATE KEY-----"

    def bearer_token(self):
        return self.chars(ALNUM + "-._~", self.r.randint(24, 64))

    def generic_secret(self):
        return self.chars(ALNUM, self.r.randint(20, 48))

    # --- surroundings ------------------------------------------------------------------

    def sample(self, cls):
        f = self.faker()
        v = getattr(self, cls)()
        name, sentence = f.name(), f.sentence()
        templates = {
            "aws_secret_key": [f"aws_secret_access_key = {v}", f'AWS_SECRET_ACCESS_KEY="{v}"', f"aws_secret_key: {v}"],
            "gcp_service_account_key": [f'{{"type": "service_account", "project_id": "{f.word()}-42", "private_key_id": "{v}", "client_email": "svc@{f.word()}.iam.gserviceaccount.com"}}'],
            "azure_storage_key": [f"DefaultEndpointsProtocol=https;AccountName={f.word()}store;AccountKey={v};EndpointSuffix=core.windows.net"],
            "bearer_token": [f"curl -H 'Authorization: Bearer {v}' https://api.{f.domain_name()}/v1/items", f"Authorization: Bearer {v}\nAccept: */*"],
            "generic_secret": [f'api_key = "{v}"', f"password: {v}", f"CLIENT_SECRET={v}", f'{{"access_token": "{v}", "expires_in": 3600}}'],
        }
        generic = [
            f"Hi, {sentence} You can reach {name} at {v} if anything comes up.",
            f"# config\nservice_name = {f.word()}\nvalue = {v}\nretries = {self.r.randint(1, 9)}\n",
            f'Traceback (most recent call last):\n  File "/srv/app/{f.word()}.py", line {self.r.randint(10, 900)}, in handle\nValueError: rejected input \'{v}\'',
            f"{sentence} {v}. {f.sentence()}",
        ]
        if json.dumps(v)[1:-1] == v:
            # In a JSON log line only where JSON writes the value as it is (labels are verbatim).
            generic.append(json.dumps({"level": "info", "ts": f.iso8601(), "msg": sentence, "detail": v}))
        if cls == "phone" and v.isdigit():
            templates["phone"] = [f"Call me on {v} tomorrow.", f"Tel: {v}", f"{name}, mobile {v}", f"please text me at {v}"]
        # A value that is only recognisable in its context (a bare 40-character AWS secret is
        # any base64) appears only in that context, as it does in real files.
        options = templates[cls] if cls in templates else generic
        text = self.r.choice(options)
        return {"text": text, "labels": [{"class": cls, "value": v}]}

    # --- the clean corpus --------------------------------------------------------------

    def clean_piece(self):
        f = self.faker()
        r = self.r
        kind = r.choice(["prose", "code", "ids", "log", "data"])
        if kind == "prose":
            return f.paragraph(nb_sentences=r.randint(3, 8))
        if kind == "code":
            fn, arg, var = f.word(), f.word(), f.word()
            return (
                f"fn {fn}_{arg}({arg}: &[u8]) -> Result<usize, Error> {{\n"
                f"    let {var} = {arg}.len() * {r.randint(2, 4096)} + 0x{r.randrange(16**6):06x};\n"
                f"    if {var} > {r.randint(10, 10**9)} {{ return Err(Error::TooLarge({var})); }}\n"
                f"    // {f.sentence()}\n"
                f"    let ratio = {r.random():.6f}; let port = {r.randint(1024, 65535)};\n"
                f"    Ok({var} / {r.randint(1, 64)})\n}}\n"
                f"std::vector<int> v{r.randint(0, 99)} = {{{', '.join(str(r.randint(0, 10**6)) for _ in range(8))}}};\n"
            )
        if kind == "ids":
            return " ".join([
                str(uuid.UUID(int=r.getrandbits(128), version=4)),
                hashlib.sha1(r.randbytes(16)).hexdigest(),
                hashlib.sha256(r.randbytes(16)).hexdigest(),
                hashlib.md5(r.randbytes(16)).hexdigest(),
                base64.b64encode(r.randbytes(r.randint(12, 90))).decode(),
                f"commit {hashlib.sha1(r.randbytes(8)).hexdigest()[:12]}",
            ])
        if kind == "log":
            return (
                f"{f.iso8601()} INFO request_id={uuid.UUID(int=r.getrandbits(128), version=4)} "
                f"latency_ms={r.randint(1, 5000)} bytes={r.randint(0, 10**7)} version=v{r.randint(0, 9)}.{r.randint(0, 40)}.{r.randint(0, 99)} "
                f"status={r.choice([200, 201, 404, 500])} path=/api/{f.word()}/{r.randint(1, 10**6)}"
            )
        return json.dumps({
            "id": r.randint(1, 10**12), "sku": f"{f.word().upper()}-{r.randint(1000, 99999)}",
            "price": round(r.uniform(0.5, 9999), 2), "qty": r.randint(0, 500), "date": f.date(),
            "tags": [f.word() for _ in range(3)], "ratio": r.random(),
        })


def iban_valid(value):
    compact = value.replace(" ", "")
    digits = "".join(str(int(c, 36)) for c in compact[4:] + compact[:4])
    return len(compact) >= 15 and int(digits) % 97 == 1


CLASSES = [
    "email", "phone", "payment_card", "iban", "us_ssn", "ipv4", "ipv6", "aws_access_key", "aws_secret_key",
    "gcp_api_key", "gcp_service_account_key", "azure_storage_key", "azure_client_secret", "github_token",
    "gitlab_token", "slack_token", "slack_webhook", "stripe_key", "openai_key", "anthropic_key", "jwt",
    "pem_private_key", "bearer_token", "generic_secret",
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--clean-kb", type=int, default=256)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gen = Gen(args.seed)
    with open(out / "labelled.jsonl", "w") as labelled:
        for cls in CLASSES:
            for _ in range(args.per_class):
                labelled.write(json.dumps(gen.sample(cls), ensure_ascii=False) + "\n")
    size = 0
    with open(out / "clean.txt", "w") as clean:
        while size < args.clean_kb * 1024:
            piece = gen.clean_piece() + "\n"
            clean.write(piece)
            size += len(piece.encode())


if __name__ == "__main__":
    main()
