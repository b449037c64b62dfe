"""Fake but well-formed PII values: checksums valid, so recognizers accept them.

Values sit in ranges reserved for documentation or fiction where one exists
(example.com domains, 555-01xx phone lines, 192.0.2.0/24, 2001:db8::/32).
Entity names follow presidio's.
"""

from __future__ import annotations

import hashlib
import random
import string

from tokenmill.sample import words as W

EMAIL_DOMAINS = ["example.com", "example.org", "example.net", "mail.example.com"]
US_AREA_CODES = [212, 312, 415, 617, 206, 303, 512, 702]


def email(rng: random.Random) -> str:
    first, last = rng.choice(W.FIRST_NAMES).lower(), rng.choice(W.LAST_NAMES).lower()
    local = rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}_{last}{rng.randint(1, 99)}"])
    return f"{local}@{rng.choice(EMAIL_DOMAINS)}"


def us_phone(rng: random.Random) -> str:
    area, line = rng.choice(US_AREA_CODES), rng.randint(100, 199)
    fmt = rng.choice(["({a}) 555-0{l}", "{a}-555-0{l}", "+1 {a} 555 0{l}", "{a}.555.0{l}"])
    return fmt.format(a=area, l=line)


# Drama/fiction ranges of national numbering plans, in international format.
INTL_PHONES = ["+44 20 7946 0{:03d}", "+44 161 496 0{:03d}", "+61 2 5550 1{:03d}", "+49 30 1234{:04d}"]


def intl_phone(rng: random.Random) -> str:
    return rng.choice(INTL_PHONES).format(rng.randint(100, 999))


def luhn_check_digit(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:  # these get doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    digits = [c for c in number if c.isdigit()]
    return len(digits) > 1 and luhn_check_digit("".join(digits[:-1])) == digits[-1]


def credit_card(rng: random.Random) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("37", 15)])
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    number = body + luhn_check_digit(body)
    if length == 15:  # Amex: written as one block
        return number
    sep = rng.choice([" ", "-", ""])
    return sep.join(number[i:i + 4] for i in range(0, 16, 4))


def ipv4(rng: random.Random) -> str:
    net = rng.choice(["192.0.2", "198.51.100", "203.0.113"])
    return f"{net}.{rng.randint(1, 254)}"


def ipv6(rng: random.Random) -> str:
    groups = [f"{rng.randint(1, 0xFFFF):x}" for _ in range(rng.choice([2, 6]))]
    if len(groups) == 2:
        return "2001:db8::" + ":".join(groups)
    return "2001:db8:" + ":".join(groups)


IBAN_FORMATS = {"DE": "8n10n", "GB": "4a14n", "NL": "4a10n", "FR": "10n11n2n"}


def _iban_body(rng: random.Random, fmt: str) -> str:
    out, num = [], ""
    for ch in fmt:
        if ch.isdigit():
            num += ch
            continue
        alphabet = string.digits if ch == "n" else string.ascii_uppercase
        out.append("".join(rng.choice(alphabet) for _ in range(int(num))))
        num = ""
    return "".join(out)


def iban_valid(iban: str) -> bool:
    s = iban.replace(" ", "")
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def iban(rng: random.Random) -> str:
    country = rng.choice(sorted(IBAN_FORMATS))
    body = _iban_body(rng, IBAN_FORMATS[country])
    digits = "".join(str(int(c, 36)) for c in body + country + "00")
    check = 98 - int(digits) % 97
    value = f"{country}{check:02d}{body}"
    if rng.random() < 0.5:  # the printed form, in groups of four
        value = " ".join(value[i:i + 4] for i in range(0, len(value), 4))
    return value


def us_ssn(rng: random.Random) -> str:
    # Area 001-665 or 667-899, group 01-99, serial 0001-9999: valid format,
    # and none of the patterns recognizers reject (all same digit, 123-45-6789).
    area = rng.choice([a for a in range(101, 900) if a != 666 and len(set(str(a))) > 1])
    return f"{area:03d}-{rng.randint(10, 99):02d}-{rng.randint(1000, 9999):04d}"


B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def _b58decode(s: str) -> bytes:
    n = 0
    for c in s:
        n = n * 58 + B58.index(c)
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\0" * (len(s) - len(s.lstrip("1"))) + body


def btc_valid(address: str) -> bool:
    raw = _b58decode(address)
    payload, check = raw[:-4], raw[-4:]
    return len(raw) == 25 and hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] == check


def btc_address(rng: random.Random) -> str:
    """Base58Check P2PKH (starts with 1) or P2SH (starts with 3) address."""
    version = rng.choice([b"\x00", b"\x05"])
    payload = version + bytes(rng.randrange(256) for _ in range(20))
    check = hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    return _b58encode(payload + check)


def url(rng: random.Random) -> str:
    host = rng.choice(["www.example.com", "blog.example.org", "shop.example.net", "example.com"])
    path = "/".join(rng.sample(W.CODE_NOUNS, rng.randint(1, 2)))
    tail = rng.choice(["", f"?page={rng.randint(2, 9)}", ".html", "/"])
    return f"https://{host}/{path}{tail}"


# entity -> (generator, sentence templates with {v})
TEMPLATES = {
    "EMAIL_ADDRESS": (email, ["You can write to the organisers at {v} for details.",
                              "Questions about the event should go to {v} this week."]),
    "PHONE_NUMBER": (us_phone, ["Call the office on {v} before noon on weekdays.",
                                "For bookings, phone {v} and ask for the front desk."]),
    "INTL_PHONE": (intl_phone, ["Our partners abroad can be reached by phone at {v} most mornings."]),
    "CREDIT_CARD": (credit_card, ["The receipt showed the card number {v} in full, which worried everyone."]),
    "IPV4": (ipv4, ["The server at {v} stopped answering requests around lunchtime."]),
    "IPV6": (ipv6, ["Traffic from the address {v} was blocked by the firewall."]),
    "IBAN_CODE": (iban, ["Please transfer the deposit to the account with IBAN {v} by Friday."]),
    "US_SSN": (us_ssn, ["Her social security number {v} was printed on the application form."]),
    "CRYPTO": (btc_address, ["Donations are accepted at the bitcoin wallet {v} until the end of the month."]),
    "URL": (url, ["More photographs are posted at {v} for anyone curious."]),
}

# Planted type -> presidio entity name.
ENTITY = {"INTL_PHONE": "PHONE_NUMBER", "IPV4": "IP_ADDRESS", "IPV6": "IP_ADDRESS"}

# How many of each to plant (a document gets one; a few get e-mail + phone).
PLAN = {"EMAIL_ADDRESS": 12, "PHONE_NUMBER": 8, "INTL_PHONE": 4, "CREDIT_CARD": 8, "IPV4": 6,
        "IPV6": 4, "IBAN_CODE": 6, "US_SSN": 6, "CRYPTO": 6, "URL": 8}


def pii_sentence(rng: random.Random, kind: str) -> tuple[str, str, str]:
    """Return (sentence, presidio entity, exact value)."""
    gen, templates = TEMPLATES[kind]
    value = gen(rng)
    return rng.choice(templates).format(v=value), ENTITY.get(kind, kind), value
