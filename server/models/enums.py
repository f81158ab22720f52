"""Enumerations shared by the models, the domain and the API (their values are the API's names)."""

from enum import Enum, IntEnum


class Service(str, Enum):
    """A portal an account is registered with."""

    EBA = "EBA"
    EMA2 = "EMA2"


class CompanyType(str, Enum):
    DISTRIBUTOR = "DISTRIBUTOR"
    DIVISION = "DIVISION"
    MSP_MANAGER = "MSP_MANAGER"
    MSP = "MSP"
    MANAGED_MSP = "MANAGED_MSP"
    CUSTOMER = "CUSTOMER"


class CustomerStatus(str, Enum):
    """Derived from a customer's setup state and unlink time, never stored."""

    NOT_SET_UP = "NOT_SET_UP"
    NORMAL = "NORMAL"
    UNLINKED = "UNLINKED"


class SetupState(str, Enum):
    PENDING = "pending"
    DONE = "done"
    SKIPPED = "skipped"


class UnlinkReason(str, Enum):
    UPSTREAM = "upstream"  # vanished upstream: the next sync that finds it relinks it
    USER = "user"  # unlinked by a console user: stays unlinked until relinkCustomer


class GroupKind(str, Enum):
    ALL = "all"
    COMPANIES = "companies"
    COMPANY = "company"
    CUSTOM = "custom"
    SHARED_OBJECTS = "shared_objects"


class SyncState(str, Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class ConnectionStatus(str, Enum):
    CONNECTED = "CONNECTED"
    DELAYED = "DELAYED"
    NOT_CONNECTED = "NOT_CONNECTED"
    NEVER_CONNECTED = "NEVER_CONNECTED"


class ProtectionStatus(str, Enum):
    OK = "OK"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"


class Area(str, Enum):
    """A functional area a permission set grants a level on."""

    COMPANIES = "COMPANIES"
    COMPUTERS = "COMPUTERS"
    GROUPS = "GROUPS"
    INSTALLERS = "INSTALLERS"
    USERS = "USERS"
    SYNC = "SYNC"
    AUDIT = "AUDIT"
    LICENSES = "LICENSES"


class LicenseState(str, Enum):
    """A license's state in the MSP Administrator (upstream codes 1 to 4)."""

    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    EXPIRED = "EXPIRED"
    CANCELED = "CANCELED"


class Level(IntEnum):
    """Access levels, each including the ones below it."""

    READ = 1
    USE = 2
    WRITE = 3


class DuplicateResolution(str, Enum):
    """Which of two computers claiming one hardware id a console user keeps."""

    KEEP_NEW = "KEEP_NEW"  # the duplicate takes the enrolled computer's place
    KEEP_EXISTING = "KEEP_EXISTING"  # the duplicate goes
