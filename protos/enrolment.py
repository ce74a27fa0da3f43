"""The one-line enrolment string: `wardwatch-enrol:v1:` + base64url(JSON). Part of the contract.

It carries the collector's mTLS address, its enrolment address, the token and the SHA-256 pin of the collector's
CA certificate, so a technician pastes one line and the agent can refuse an impostor collector.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

PREFIX = "wardwatch-enrol:v1:"
_HOSTPORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-_]+):(\d{1,5})$")
_PIN = re.compile(r"^[0-9a-f]{64}$")


class EnrolmentStringError(ValueError):
    """Not a usable enrolment string; the message says why in one line."""


@dataclass(frozen=True)
class EnrolmentString:
    address: str        # HOST:PORT of the mutual-TLS gateway
    enrol_address: str  # HOST:PORT of the enrolment endpoint
    token: str          # "<id>.<secret>"
    ca_pin: str         # sha256 hex of the CA certificate DER
    site: str = ""

    def encode(self) -> str:
        body = {"a": self.address, "e": self.enrol_address, "t": self.token, "p": self.ca_pin, "s": self.site}
        raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> EnrolmentString:
        text = text.strip()
        if not text.startswith(PREFIX):
            raise EnrolmentStringError(
                f"not a WardWatch enrolment string (it should start with {PREFIX!r}; "
                "copy the whole line printed by 'wardwatch-collector token create')")
        payload = text[len(PREFIX):]
        try:
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
            body = json.loads(raw)
        except (binascii.Error, ValueError) as exc:
            raise EnrolmentStringError("the enrolment string is damaged (was it cut short when copied?)") from exc
        if not isinstance(body, dict):
            raise EnrolmentStringError("the enrolment string is damaged")
        try:
            es = cls(address=str(body["a"]), enrol_address=str(body["e"]), token=str(body["t"]),
                     ca_pin=str(body["p"]).lower(), site=str(body.get("s", "")))
        except KeyError as exc:
            raise EnrolmentStringError(f"the enrolment string lacks its {exc.args[0]!r} field") from exc
        for what, value in (("collector address", es.address), ("enrolment address", es.enrol_address)):
            if not _HOSTPORT.match(value):
                raise EnrolmentStringError(f"the enrolment string's {what} {value!r} is not HOST:PORT")
        if not _PIN.match(es.ca_pin):
            raise EnrolmentStringError("the enrolment string's CA pin is not a SHA-256 hex digest")
        if "." not in es.token:
            raise EnrolmentStringError("the enrolment string's token is malformed")
        return es
