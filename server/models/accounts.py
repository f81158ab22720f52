"""Portal accounts, console users and their sessions."""

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

from server.models.enums import Service

if TYPE_CHECKING:  # the relations' targets (the package, whichever module holds them)
    from server.models import Company, Instance, StaticGroup


class Account(Model):
    """A business identity registered with one or both portals (`services`, comma-separated)."""

    id = fields.IntField(primary_key=True)
    email = fields.CharField(max_length=254, unique=True)
    password_hash = fields.CharField(max_length=255)
    services = fields.CharField(max_length=32)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "account"

    @property
    def service_list(self) -> list[Service]:
        return [Service(s) for s in self.services.split(",") if s]


class User(Model):
    """A console user of one instance: the account owner (`account` set) or a native user."""

    id = fields.IntField(primary_key=True)
    instance: fields.ForeignKeyRelation["Instance"] = fields.ForeignKeyField(
        "models.Instance", related_name="users", on_delete=fields.CASCADE
    )
    instance_id: int
    account: fields.OneToOneNullableRelation["Account"] = fields.OneToOneField(
        "models.Account", related_name="console_user", null=True, on_delete=fields.CASCADE
    )
    account_id: int | None
    email = fields.CharField(max_length=254, unique=True)
    password_hash = fields.CharField(max_length=255, null=True)  # owners sign in with the account's
    enabled = fields.BooleanField(default=True)
    home_group: fields.ForeignKeyRelation["StaticGroup"] = fields.ForeignKeyField(
        "models.StaticGroup", related_name="home_users", on_delete=fields.RESTRICT
    )
    home_group_id: int
    session_timeout = fields.IntField(null=True)  # seconds of idleness; null: the default
    description = fields.CharField(max_length=500, default="")
    tag = fields.CharField(max_length=255, default="")
    disabled_by_unlink: fields.ForeignKeyNullableRelation["Company"] = fields.ForeignKeyField(
        "models.Company", related_name="disabled_users", null=True, on_delete=fields.SET_NULL
    )
    disabled_by_unlink_id: int | None
    created_by: fields.ForeignKeyNullableRelation["User"] = fields.ForeignKeyField(
        "models.User", related_name="created_users", null=True, on_delete=fields.SET_NULL
    )
    created_by_id: int | None
    created_at = fields.DatetimeField(auto_now_add=True)
    permission_sets: fields.ManyToManyRelation["PermissionSet"] = fields.ManyToManyField(
        "models.PermissionSet", related_name="users", through="user_permission_set"
    )

    class Meta:
        table = "console_user"

    @property
    def is_owner(self) -> bool:
        return self.account_id is not None


class Session(Model):
    """A login: only the SHA-256 of its random token is stored."""

    id = fields.IntField(primary_key=True)
    token_hash = fields.CharField(max_length=64, unique=True)
    account: fields.ForeignKeyNullableRelation["Account"] = fields.ForeignKeyField(
        "models.Account", related_name="sessions", null=True, on_delete=fields.CASCADE
    )
    account_id: int | None
    user: fields.ForeignKeyNullableRelation["User"] = fields.ForeignKeyField(
        "models.User", related_name="sessions", null=True, on_delete=fields.CASCADE
    )
    user_id: int | None
    via = fields.CharEnumField(Service, max_length=8, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    last_seen_at = fields.DatetimeField()

    class Meta:
        table = "session"


class PermissionSet(Model):
    """Grants a level per area on a set of static groups and their subtrees."""

    id = fields.IntField(primary_key=True)
    instance: fields.ForeignKeyRelation["Instance"] = fields.ForeignKeyField(
        "models.Instance", related_name="permission_sets", on_delete=fields.CASCADE
    )
    instance_id: int
    name = fields.CharField(max_length=255)
    description = fields.CharField(max_length=500, default="")
    levels: fields.JSONField[dict[str, str]] = fields.JSONField(
        default=dict
    )  # {"COMPANIES": "WRITE", ...}
    groups: fields.ManyToManyRelation["StaticGroup"] = fields.ManyToManyField(
        "models.StaticGroup", related_name="permission_sets", through="permission_set_group"
    )
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "permission_set"
        unique_together = (("instance", "name"),)


class SignInWindow(Model):
    """Sign-in attempts per throttled key and minute, shared by every worker and host.

    A key is an HMAC, under the secret key, of an account's email and client site or of a
    client site (server.domain.throttle)."""

    id = fields.IntField(primary_key=True)
    key_hash = fields.CharField(max_length=64)
    minute = fields.BigIntField()
    attempts = fields.IntField(default=0)

    class Meta:
        table = "sign_in_window"
        unique_together = (("key_hash", "minute"),)
        indexes = (("minute",),)


class SignInAccountWindow(Model):
    """Failed sign-ins of an account from sites not known for it, per key and hour.

    The key is an HMAC of the account's email under the secret key (server.domain.throttle)."""

    id = fields.IntField(primary_key=True)
    key_hash = fields.CharField(max_length=64)
    hour = fields.BigIntField()
    attempts = fields.IntField(default=0)

    class Meta:
        table = "sign_in_account_window"
        unique_together = (("key_hash", "hour"),)
        indexes = (("hour",),)


class KnownSignInSite(Model):
    """A client site an account signed in from, with the day (since 1970, UTC) of its last success.

    The key is an HMAC of the account's email and the site under the secret key, so no email
    or address is stored (server.domain.throttle)."""

    id = fields.IntField(primary_key=True)
    key_hash = fields.CharField(max_length=64, unique=True)
    day = fields.BigIntField()

    class Meta:
        table = "known_sign_in_site"
        indexes = (("day",),)
