"""The licenses the MSP Administrator simulator serves (`Search/Licenses`), with knobs tests
turn: quantity and usage changes (overuse), new and removed licenses, suspended, expired and
canceled ones, and the malformed listings a client must refuse (a key under two companies, a
license naming another company)."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable
from typing import Any

ACTIVE, SUSPENDED, EXPIRED, CANCELED = 1, 2, 3, 4
STATES = frozenset({ACTIVE, SUSPENDED, EXPIRED, CANCELED})
PRODUCTS = (
    (101, "ESET PROTECT Entry"),
    (102, "ESET PROTECT Advanced"),
    (103, "ESET PROTECT Complete"),
    (104, "ESET PROTECT Elite"),
    (120, "ESET Mobile Security"),
    (130, "ESET Server Security"),
)

# A license as the wire protocol spells it: publicLicenseKey, companyId, productCode,
# productName, quantity, usage, state, isTrial, expirationDate.
License = dict[str, Any]


class LicenseBook:
    """Licenses by company, served in a stable order (by key)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random(0)
        self.licenses: dict[str, License] = {}
        self._by_company: dict[str, dict[str, None]] = {}
        self._keys_ever: set[str] = set()
        self.duplicates: list[tuple[str, str]] = []  # (key, listed again under company)
        self.wrong_companies: dict[str, str] = {}  # key -> the companyId it reports

    @classmethod
    def generate(
        cls, company_ids: Iterable[str], seed: int, per_company: float = 2.0
    ) -> LicenseBook:
        """About `per_company` licenses per company, mostly active; some suspended, expired
        or canceled, some trials, some overused, some expiring within weeks."""
        rng = random.Random(f"licenses-{seed}")
        book = cls(rng)
        today = dt.date.today()
        for company_id in company_ids:
            count = int(per_company) + (rng.random() < per_company % 1)
            for _ in range(count):
                code, name = rng.choice(PRODUCTS)
                quantity = rng.choice((5, 10, 10, 25, 50, 100, 250))
                roll = rng.random()
                state = (
                    ACTIVE
                    if roll < 0.85
                    else SUSPENDED
                    if roll < 0.92
                    else EXPIRED
                    if roll < 0.97
                    else CANCELED
                )
                usage = rng.randint(0, quantity)
                if rng.random() < 0.08:  # overused
                    usage = quantity + rng.randint(1, max(1, quantity // 5))
                days = rng.choice((-20, 5, 12, 25, 90, 200, 365, 700))
                if state == EXPIRED:
                    days = -rng.randint(1, 60)
                book.add(
                    company_id,
                    code,
                    name,
                    quantity,
                    usage,
                    state=state,
                    trial=rng.random() < 0.05,
                    expires=today + dt.timedelta(days=days),
                )
        return book

    def _new_key(self) -> str:
        while True:
            raw = "".join(self._rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(15))
            key = "-".join(raw[i : i + 3] for i in range(0, 15, 3))
            if key not in self._keys_ever:
                self._keys_ever.add(key)
                return key

    # -- knobs ------------------------------------------------------------------------------

    def add(
        self,
        company_id: str,
        product_code: int = 101,
        product_name: str = "ESET PROTECT Entry",
        quantity: int = 10,
        usage: int = 0,
        *,
        state: int = ACTIVE,
        trial: bool = False,
        expires: dt.date | None = None,
        key: str | None = None,
    ) -> str:
        """A new license of a company; returns its key."""
        if state not in STATES:
            raise ValueError(f"not a license state: {state}")
        key = key or self._new_key()
        if key in self.licenses:
            raise ValueError(f"license {key} exists")
        self._keys_ever.add(key)
        self.licenses[key] = {
            "publicLicenseKey": key,
            "companyId": company_id,
            "productCode": product_code,
            "productName": product_name,
            "quantity": quantity,
            "usage": usage,
            "state": state,
            "isTrial": trial,
            "expirationDate": expires.isoformat() if expires else None,
        }
        self._by_company.setdefault(company_id, {})[key] = None
        return key

    def set_quantity(self, key: str, quantity: int) -> None:
        self.licenses[key]["quantity"] = quantity

    def set_usage(self, key: str, usage: int) -> None:
        """Usage above the quantity makes an overused license."""
        self.licenses[key]["usage"] = usage

    def set_state(self, key: str, state: int) -> None:
        if state not in STATES:
            raise ValueError(f"not a license state: {state}")
        self.licenses[key]["state"] = state

    def suspend(self, key: str) -> None:
        self.set_state(key, SUSPENDED)

    def expire(self, key: str) -> None:
        self.set_state(key, EXPIRED)
        self.licenses[key]["expirationDate"] = (dt.date.today() - dt.timedelta(days=1)).isoformat()

    def cancel(self, key: str) -> None:
        self.set_state(key, CANCELED)

    def move(self, key: str, company_id: str) -> None:
        """The license now belongs to another company."""
        del self._by_company[self.licenses[key]["companyId"]][key]
        self.licenses[key]["companyId"] = company_id
        self._by_company.setdefault(company_id, {})[key] = None

    def remove(self, key: str) -> None:
        del self._by_company[self.licenses[key]["companyId"]][key]
        del self.licenses[key]

    def clear(self) -> None:
        """No license at all (and no listing fault)."""
        self.licenses.clear()
        self._by_company.clear()
        self.duplicates.clear()
        self.wrong_companies.clear()

    def list_twice(self, key: str, under: str) -> None:
        """Malformed: the license is also listed under another company, naming it."""
        self.duplicates.append((key, under))

    def report_company(self, key: str, company_id: str) -> None:
        """Malformed: listed under its company, the license names another one."""
        self.wrong_companies[key] = company_id

    # -- reading ----------------------------------------------------------------------------

    def of_company(self, company_id: str) -> list[License]:
        """A company's licenses as served, by key, with the listing faults applied."""
        found = [self.licenses[key] for key in sorted(self._by_company.get(company_id, ()))]
        found = [
            {**lic, "companyId": self.wrong_companies[lic["publicLicenseKey"]]}
            if lic["publicLicenseKey"] in self.wrong_companies
            else lic
            for lic in found
        ]
        for key, under in self.duplicates:
            if under == company_id and key in self.licenses:
                found.append({**self.licenses[key], "companyId": company_id})
        return found

    def __len__(self) -> int:
        return len(self.licenses)


def licenses_page(book: LicenseBook, visible: bool, body: Any) -> tuple[int, dict[str, Any]]:
    """`Search/Licenses` as the simulator answers it: (status, JSON body). `visible` says
    whether the caller may see the company asked for."""
    if not isinstance(body, dict) or not isinstance(body.get("companyId"), str):
        return 400, {"code": 3, "subCode": 1, "message": "companyId is required"}
    skip, take = body.get("skip"), body.get("take")
    if not isinstance(skip, int) or isinstance(skip, bool) or skip < 0:
        return 400, {"code": 3, "subCode": 1, "message": "skip must be an integer of at least 0"}
    if not isinstance(take, int) or isinstance(take, bool) or not 1 <= take <= 100:
        return 400, {"code": 3, "subCode": 1, "message": "take must be an integer from 1 to 100"}
    if not visible:
        return 404, {"code": 4, "subCode": 1, "message": f"company {body['companyId']} not found"}
    listing = book.of_company(body["companyId"])
    return 200, {"licenses": listing[skip : skip + take], "totalCount": len(listing)}
