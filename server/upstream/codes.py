"""The numbers the MSP Administrator API uses for company types and statuses: the one place
they are written (the client validates with them, the simulator serves them, the sync maps them
to the console's company types)."""

from __future__ import annotations

from typing import Final

from server.models.enums import CompanyType

HQ: Final = 1001
DISTRIBUTOR: Final = 1002
DIVISION: Final = 1003
MSP_MANAGER: Final = 1004
MSP: Final = 1005
MANAGED_MSP: Final = 1006
CUSTOMER: Final = 1007

ACTIVE: Final = 1
SUSPENDED: Final = 2
WAITING_FOR_ACTIVATION: Final = 3

COMPANY_TYPE: Final = {
    DISTRIBUTOR: CompanyType.DISTRIBUTOR,
    DIVISION: CompanyType.DIVISION,
    MSP_MANAGER: CompanyType.MSP_MANAGER,
    MSP: CompanyType.MSP,
    MANAGED_MSP: CompanyType.MANAGED_MSP,
    CUSTOMER: CompanyType.CUSTOMER,
}
"""The console's type of each upstream company type; ESET HQ (1001) is not a company."""
COMPANY_TYPES: Final = frozenset(COMPANY_TYPE)
"""Types a company can have."""
TYPE_CODE: Final = {kind: code for code, kind in COMPANY_TYPE.items()}
"""The upstream code of each console company type."""
TYPE_NAMES: Final = {
    HQ: "ESET HQ",
    DISTRIBUTOR: "Distributor",
    DIVISION: "Division",
    MSP_MANAGER: "MSP Manager",
    MSP: "MSP",
    MANAGED_MSP: "Managed MSP",
    CUSTOMER: "MSP Customer",
}
"""How the MSP Administrator names its types (in messages)."""
IMPORTABLE: Final = frozenset({MSP_MANAGER, MSP, MANAGED_MSP})
"""Types of the company an account may belong to for the console to import its tree."""
STATUSES: Final = frozenset({ACTIVE, SUSPENDED, WAITING_FOR_ACTIVATION})
