"""The in-memory company tree the MSP Administrator simulator serves, with knobs tests turn
(add, rename, move, remove, suspend) and a generator of realistic trees."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from typing import Any

from server.upstream.codes import (
    ACTIVE,
    COMPANY_TYPES,
    CUSTOMER,
    DISTRIBUTOR,
    DIVISION,
    HQ,
    MANAGED_MSP,
    MSP,
    MSP_MANAGER,
    STATUSES,
    SUSPENDED,
    WAITING_FOR_ACTIVATION,
)
from server.upstream.simulator.license_book import LicenseBook

# A company as the wire protocol spells it: publicId, name, type, status, parentId, email,
# customIdentifier.
Company = dict[str, Any]

_SURNAMES = (
    "Novák", "Müller", "García", "O'Brien", "Smith", "Kowalski", "Johansson", "Dubois", "Rossi",
    "Nakamura", "Østergaard", "Horváth", "Papadopoulos", "Fernández", "Kovačević", "Lindqvist",
    "Schneider", "Dvořák", "Jensen", "Moreau", "Nowak", "Virtanen", "Yılmaz", "Costa", "Brown",  # noqa: RUF001
    "Wójcik", "Popescu", "Svoboda", "Hughes", "Bauer",
)  # fmt: skip
_CITIES = (
    "Bratislava", "Kraków", "Zürich", "Malmö", "São Paulo", "Reykjavík", "Łódź", "Göteborg",
    "Dubrovnik", "Köln", "Brno", "Lyon", "Porto", "Tampere", "Graz", "Cluj-Napoca", "Bergen",
    "Sevilla", "Plzeň", "Aarhus", "Leeds", "Toronto", "Austin", "Wrocław", "Győr",
)  # fmt: skip
_TRADES = (
    "Bakery", "Dental Clinic", "Logistics", "Consulting", "Law Office", "Auto Repair", "Architects",
    "Pharmacy", "Hotel", "Brewery", "Print Shop", "Veterinary Clinic", "Accounting", "Opticians",
    "Engineering", "Florists", "Insurance Brokers", "Travel Agency", "Bookshop", "Joinery",
    "Physiotherapy", "Real Estate", "Catering", "Kindergarten", "Tax Advisors",
)  # fmt: skip
_LEGAL_FORMS = (
    "Ltd", "GmbH", "s.r.o.", "SA", "AB", "Inc.", "LLC", "Oy", "Sp. z o.o.", "a.s.", "AG", "BV",
    "ApS", "S.L.", "", "", "",
)  # fmt: skip
_NICKNAMES = ("Blue Fox", "Red Kite", "Old Oak", "Golden Lion", "Silver Birch", "Night Owl")
_FOREIGN = (
    "東京デザイン株式会社", "Ελληνική Ναυτιλία ΑΕ", "Ölçü Mühendislik A.Ş.", "Пекарня «Колосок»",  # noqa: RUF001
    "مطبعة النور", "Žluťoučký kůň, s.r.o.", "Café Crème & Co.", "🚀 Rocket Dental",
    "Ærø Fiskeri ApS", "Łąka Ogrodnictwo", "Ferreteria Niño", "서울 물류 주식회사",
)  # fmt: skip
_MSP_STYLES = (
    "{city} IT Services", "{surname} Managed Security", "SecureNet {city}", "{city} Cyber Care",
    "{surname} & Partners IT", "Bits, Bytes & Beyond {city}", "{city} Helpdesk Pros",
)  # fmt: skip


class UpstreamTree:
    """A company tree as an MSP Administrator holds it: HQ > Distributor > (Division) > account."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random(0)
        self.companies: dict[str, Company] = {}
        self._children: dict[str, dict[str, None]] = {}
        self._sorted: dict[str, list[Company]] = {}
        self._removed: dict[str, list[Company]] = {}
        self._ids_ever: set[str] = set()
        self.version = 0
        self.hq_id = ""
        self.distributor_id = ""
        self.division_id: str | None = None
        self.account_id = ""
        self.licenses = LicenseBook()  # what Search/Licenses serves

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def generate(cls, companies: int, seed: int) -> UpstreamTree:
        """Builds a realistic tree whose account subtree holds exactly `companies` companies.

        The count includes the account's own company (the MSP Manager) and excludes HQ, the
        Distributor, an optional Division and a sibling MSP Manager outside the account.
        """
        if companies < 4:
            raise ValueError("a generated tree needs at least 4 companies")
        rng = random.Random(seed)
        tree = cls(rng)
        tree.hq_id = tree._insert(None, "ESET HQ", HQ)
        tree.distributor_id = tree._insert(tree.hq_id, tree._distributor_name(), DISTRIBUTOR)
        above = tree.distributor_id
        if rng.random() < 0.5:
            tree.division_id = tree._insert(above, f"{rng.choice(_CITIES)} Division", DIVISION)
            above = tree.division_id
        other = tree._insert(tree.distributor_id, "Other MSP Manager Group", MSP_MANAGER)
        for _ in range(2):
            tree._insert(other, tree._customer_name(), CUSTOMER, **tree._customer_extras())

        city = rng.choice(_CITIES)
        tree.account_id = tree._insert(above, f"{city} MSP Holdings", MSP_MANAGER)
        rest = companies - 1
        msp_count = max(2, min(100, round(math.sqrt(rest) / 2)))
        customer_count = rest - 1 - msp_count
        msps = [tree._insert(tree.account_id, tree._msp_name(), MSP) for _ in range(msp_count)]
        managed = tree._insert(
            tree.account_id, f"{rng.choice(_SURNAMES)} Managed Services", MANAGED_MSP
        )
        direct = min(150, max(1, customer_count // 40)) if customer_count >= 3 else 0
        parents = [*msps, managed]
        weights = [rng.expovariate(1.0) + 0.05 for _ in parents]
        spread = rng.choices(parents, weights, k=customer_count - direct)
        homes = [tree.account_id] * direct + spread
        for index, parent in enumerate(homes):
            # The first three customers make sure every tree has the awkward names.
            name = tree._customer_name(style=(1, 2, 3)[index] if index < 3 else None)
            tree._insert(parent, name, CUSTOMER, **tree._customer_extras())
        account = (c["publicId"] for c in tree.subtree(tree.account_id))
        tree.licenses = LicenseBook.generate(account, seed)  # its own random stream
        return tree

    def _new_id(self) -> str:
        while True:
            public_id = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
            if public_id not in self._ids_ever:
                self._ids_ever.add(public_id)
                return public_id

    def _insert(
        self,
        parent_id: str | None,
        name: str,
        type: int,
        status: int = ACTIVE,
        email: str | None = None,
        custom_identifier: str | None = None,
    ) -> str:
        public_id = self._new_id()
        self._put(
            {
                "publicId": public_id,
                "name": name,
                "type": type,
                "status": status,
                "parentId": parent_id,
                "email": email,
                "customIdentifier": custom_identifier,
            }
        )
        return public_id

    def _put(self, company: Company) -> None:
        public_id = company["publicId"]
        self.companies[public_id] = company
        self._children.setdefault(public_id, {})
        if company["parentId"] is not None:
            self._children[company["parentId"]][public_id] = None
        self._changed()

    def _changed(self) -> None:
        self.version += 1
        self._sorted.clear()

    def _distributor_name(self) -> str:
        return f"ESET Distribution {self._rng.choice(('Nordics', 'CEE', 'Iberia', 'Benelux'))}"

    def _msp_name(self) -> str:
        style = self._rng.choice(_MSP_STYLES)
        return style.format(city=self._rng.choice(_CITIES), surname=self._rng.choice(_SURNAMES))

    def _customer_name(self, style: int | None = None) -> str:
        rng = self._rng
        if style is None:
            style = rng.choices(range(5), (8, 2, 1, 2, 3))[0]
        if style == 0:
            form = rng.choice(_LEGAL_FORMS)
            name = f"{rng.choice(_SURNAMES)} {rng.choice(_TRADES)}"
            return f"{name} {form}" if form else name
        if style == 1:
            first, second = rng.sample(_SURNAMES, 2)
            return f"{first}, {second} & Partners"
        if style == 2:
            return f'The "{rng.choice(_NICKNAMES)}" {rng.choice(_TRADES)}'
        if style == 3:
            return rng.choice(_FOREIGN)
        return f"{rng.choice(_CITIES)} {rng.choice(_TRADES)}"

    def _customer_extras(self) -> dict[str, Any]:
        rng = self._rng
        roll = rng.random()
        status = ACTIVE if roll < 0.9 else SUSPENDED if roll < 0.96 else WAITING_FOR_ACTIVATION
        number = rng.randrange(100000)
        email = f"it@customer{number}.example" if rng.random() < 0.7 else None
        custom = f"C-{number:05d}" if rng.random() < 0.4 else None
        return {"status": status, "email": email, "custom_identifier": custom}

    # -- reading ----------------------------------------------------------------------------

    def get(self, public_id: str) -> Company:
        """The company with this id; KeyError if there is none."""
        return self.companies[public_id]

    def children_of(self, parent_id: str) -> list[Company]:
        """Children in the stable order the API pages them: by name, then publicId."""
        listing = self._sorted.get(parent_id)
        if listing is None:
            kids = (self.companies[c] for c in self._children.get(parent_id, ()))
            listing = sorted(kids, key=lambda c: (c["name"], c["publicId"]))
            self._sorted[parent_id] = listing
        return listing

    def ancestors_of(self, public_id: str) -> list[Company]:
        """The chain above a company, top first, HQ excluded."""
        chain: list[Company] = []
        parent_id = self.companies[public_id]["parentId"]
        while parent_id is not None:
            parent = self.companies[parent_id]
            if parent["type"] != HQ:
                chain.append(parent)
            parent_id = parent["parentId"]
        chain.reverse()
        return chain

    def is_within(self, public_id: str, root_id: str) -> bool:
        """Whether a company is `root_id` or below it."""
        current: str | None = public_id
        while current is not None:
            if current == root_id:
                return True
            current = self.companies[current]["parentId"]
        return False

    def subtree(self, root_id: str) -> Iterator[Company]:
        """The company and everything below it, parents before children."""
        stack = [root_id]
        while stack:
            public_id = stack.pop()
            yield self.companies[public_id]
            stack.extend(reversed(list(self._children.get(public_id, ()))))

    def snapshot(self, root_id: str | None = None) -> dict[str, tuple[str, int, int, str | None]]:
        """{publicId: (name, type, status, parentId)} of the account's company and below."""
        return {
            c["publicId"]: (c["name"], c["type"], c["status"], c["parentId"])
            for c in self.subtree(root_id or self.account_id)
        }

    def __len__(self) -> int:
        return len(self.companies)

    # -- knobs ------------------------------------------------------------------------------

    def add(self, parent_id: str, name: str, type: int, status: int = ACTIVE) -> str:
        """Adds a company under a parent and returns its publicId."""
        parent = self.companies[parent_id]
        if parent["type"] == CUSTOMER:
            raise ValueError("customers never have children")
        if type not in COMPANY_TYPES:
            raise ValueError(f"not a company type: {type}")
        if status not in STATUSES:
            raise ValueError(f"not a status: {status}")
        return self._insert(parent_id, name, type, status)

    def rename(self, public_id: str, name: str) -> None:
        self.companies[public_id]["name"] = name
        self._changed()

    def move(self, public_id: str, new_parent_id: str) -> None:
        """Moves a company (and its subtree) under another parent."""
        company = self.companies[public_id]
        new_parent = self.companies[new_parent_id]
        if new_parent["type"] == CUSTOMER:
            raise ValueError("customers never have children")
        if self.is_within(new_parent_id, public_id):
            raise ValueError("cannot move a company under itself")
        del self._children[company["parentId"]][public_id]
        company["parentId"] = new_parent_id
        self._children[new_parent_id][public_id] = None
        self._changed()

    def remove(self, public_id: str) -> None:
        """Removes a company and its subtree; `readd` puts them back."""
        company = self.companies[public_id]
        if company["type"] == HQ:
            raise ValueError("HQ cannot be removed")
        taken = list(self.subtree(public_id))
        del self._children[company["parentId"]][public_id]
        for each in taken:
            del self.companies[each["publicId"]]
            del self._children[each["publicId"]]
        self._removed[public_id] = taken
        self._changed()

    def readd(self, public_id: str) -> None:
        """Puts back what `remove` took, under its old parent, which must still exist."""
        taken = self._removed[public_id]
        parent_id = taken[0]["parentId"]
        if parent_id not in self.companies:
            raise KeyError(f"the old parent {parent_id} of {public_id} is gone")
        del self._removed[public_id]
        for company in taken:
            self._put(company)

    restore = readd

    def suspend(self, public_id: str) -> None:
        self.set_status(public_id, SUSPENDED)

    def activate(self, public_id: str) -> None:
        self.set_status(public_id, ACTIVE)

    def set_status(self, public_id: str, status: int) -> None:
        if status not in STATUSES:
            raise ValueError(f"not a status: {status}")
        self.companies[public_id]["status"] = status
        self._changed()

    # -- handy for tests --------------------------------------------------------------------

    def of_type(self, type: int, root_id: str | None = None) -> list[Company]:
        """Companies of a type under the account's company (or `root_id`), in tree order."""
        return [c for c in self.subtree(root_id or self.account_id) if c["type"] == type]
