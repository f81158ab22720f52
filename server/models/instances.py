"""Instances: one console (tenant) each, and every other row belongs to exactly one."""

from typing import TYPE_CHECKING, Any

from tortoise import fields
from tortoise.models import Model

from server.models.enums import Service

if TYPE_CHECKING:  # the relations' targets (the package, whichever module holds them)
    from server.models import Account, User


class Instance(Model):
    """One console, created by an account through one service (`created_via`)."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=255)
    owner: fields.OneToOneRelation["Account"] = fields.OneToOneField(
        "models.Account", related_name="instance", on_delete=fields.CASCADE
    )
    owner_id: int
    created_via = fields.CharEnumField(Service, max_length=8)
    created_at = fields.DatetimeField(auto_now_add=True)
    # The connected MSP Administrator; the password is encrypted with the instance secret.
    upstream_url = fields.CharField(max_length=2048, null=True)
    upstream_username = fields.CharField(max_length=254, null=True)
    upstream_password_encrypted = fields.TextField(null=True)
    upstream_company_id = fields.CharField(max_length=64, null=True)
    connected_at = fields.DatetimeField(null=True)

    class Meta:
        table = "instance"


class AuditEntry(Model):
    """Who did what, on which object, when, with what outcome."""

    id = fields.BigIntField(primary_key=True)
    instance: fields.ForeignKeyRelation["Instance"] = fields.ForeignKeyField(
        "models.Instance", related_name="audit", on_delete=fields.CASCADE
    )
    instance_id: int
    actor: fields.ForeignKeyNullableRelation["User"] = fields.ForeignKeyField(
        "models.User", related_name="audit_entries", null=True, on_delete=fields.SET_NULL
    )
    actor_id: int | None
    actor_email = fields.CharField(max_length=254, default="")
    action = fields.CharField(max_length=64)
    object_type = fields.CharField(max_length=32, default="")
    object_id = fields.CharField(max_length=64, default="")
    group_path = fields.CharField(max_length=2000, default="")  # where it happened, for scoping
    outcome = fields.CharField(max_length=32)
    detail: fields.JSONField[dict[str, Any]] = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "audit_entry"
        indexes = (("instance_id", "created_at"),)
