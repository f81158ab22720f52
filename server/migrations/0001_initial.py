from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from server.models.enums import (
    CompanyType,
    ConnectionStatus,
    GroupKind,
    ProtectionStatus,
    Service,
    SetupState,
    SyncState,
    UnlinkReason,
)
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index


class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name="Account",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                ("email", fields.CharField(unique=True, max_length=254)),
                ("password_hash", fields.CharField(max_length=255)),
                ("services", fields.CharField(max_length=32)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "account",
                "app": "models",
                "pk_attr": "id",
                "table_description": "A business identity registered with one or both portals (`services`, comma-separated).",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Instance",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                ("name", fields.CharField(max_length=255)),
                (
                    "owner",
                    fields.OneToOneField(
                        "models.Account",
                        source_field="owner_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="instance",
                        on_delete="CASCADE",
                    ),
                ),
                (
                    "created_via",
                    fields.CharEnumField(
                        description="EBA: EBA\nEMA2: EMA2", enum_type=Service, max_length=8
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("upstream_url", fields.CharField(null=True, max_length=2048)),
                ("upstream_username", fields.CharField(null=True, max_length=254)),
                ("upstream_password_encrypted", fields.TextField(null=True, unique=False)),
                ("upstream_company_id", fields.CharField(null=True, max_length=64)),
                (
                    "connected_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
            ],
            options={
                "table": "instance",
                "app": "models",
                "pk_attr": "id",
                "table_description": "One console, created by an account through one service (`created_via`).",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Company",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                (
                    "instance",
                    fields.ForeignKeyField(
                        "models.Instance",
                        source_field="instance_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="companies",
                        on_delete="CASCADE",
                    ),
                ),
                ("public_id", fields.CharField(max_length=64)),
                ("name", fields.CharField(max_length=255)),
                ("sort_name", fields.CharField(max_length=255)),
                (
                    "type",
                    fields.CharEnumField(
                        description="DISTRIBUTOR: DISTRIBUTOR\nDIVISION: DIVISION\nMSP_MANAGER: MSP_MANAGER\nMSP: MSP\nMANAGED_MSP: MANAGED_MSP\nCUSTOMER: CUSTOMER",
                        enum_type=CompanyType,
                        max_length=16,
                    ),
                ),
                (
                    "parent",
                    fields.ForeignKeyField(
                        "models.Company",
                        source_field="parent_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="children",
                        on_delete="RESTRICT",
                    ),
                ),
                ("path", fields.CharField(max_length=400)),
                ("sort_key", fields.CharField(max_length=2000)),
                ("depth", fields.IntField()),
                ("upstream_status", fields.SmallIntField(default=1)),
                ("email", fields.CharField(null=True, max_length=254)),
                ("custom_identifier", fields.CharField(null=True, max_length=255)),
                ("read_only", fields.BooleanField(default=False)),
                (
                    "setup_state",
                    fields.CharEnumField(
                        default=SetupState.PENDING,
                        description="PENDING: pending\nDONE: done\nSKIPPED: skipped",
                        enum_type=SetupState,
                        max_length=8,
                    ),
                ),
                ("setup_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                (
                    "unlinked_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
                (
                    "unlink_reason",
                    fields.CharEnumField(
                        null=True,
                        description="UPSTREAM: upstream\nUSER: user",
                        enum_type=UnlinkReason,
                        max_length=8,
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "company",
                "app": "models",
                "unique_together": (("instance", "public_id"),),
                "indexes": [
                    Index(fields=["instance_id", "path"]),
                    Index(fields=["instance_id", "sort_key"]),
                    Index(fields=["instance_id", "type", "sort_name"]),
                ],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="StaticGroup",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                (
                    "instance",
                    fields.ForeignKeyField(
                        "models.Instance",
                        source_field="instance_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="groups",
                        on_delete="CASCADE",
                    ),
                ),
                ("name", fields.CharField(max_length=255)),
                (
                    "kind",
                    fields.CharEnumField(
                        description="ALL: all\nCOMPANIES: companies\nCOMPANY: company\nCUSTOM: custom\nSHARED_OBJECTS: shared_objects",
                        enum_type=GroupKind,
                        max_length=16,
                    ),
                ),
                (
                    "parent",
                    fields.ForeignKeyField(
                        "models.StaticGroup",
                        source_field="parent_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="children",
                        on_delete="RESTRICT",
                    ),
                ),
                (
                    "company",
                    fields.ForeignKeyField(
                        "models.Company",
                        source_field="company_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="groups",
                        on_delete="RESTRICT",
                    ),
                ),
                ("path", fields.CharField(max_length=400)),
                ("sort_key", fields.CharField(max_length=2000)),
                ("depth", fields.IntField()),
                ("description", fields.CharField(default="", max_length=500)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "static_group",
                "app": "models",
                "unique_together": (("company", "kind"),),
                "indexes": [
                    Index(fields=["instance_id", "path"]),
                    Index(fields=["instance_id", "sort_key"]),
                ],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="PermissionSet",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                (
                    "instance",
                    fields.ForeignKeyField(
                        "models.Instance",
                        source_field="instance_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="permission_sets",
                        on_delete="CASCADE",
                    ),
                ),
                ("name", fields.CharField(max_length=255)),
                ("description", fields.CharField(default="", max_length=500)),
                ("levels", fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                (
                    "groups",
                    fields.ManyToManyField(
                        "models.StaticGroup",
                        unique=True,
                        db_constraint=True,
                        through="permission_set_group",
                        forward_key="staticgroup_id",
                        backward_key="permission_set_id",
                        related_name="permission_sets",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "permission_set",
                "app": "models",
                "unique_together": (("instance", "name"),),
                "pk_attr": "id",
                "table_description": "Grants a level per area on a set of static groups and their subtrees.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="SyncRun",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                (
                    "instance",
                    fields.ForeignKeyField(
                        "models.Instance",
                        source_field="instance_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="sync_runs",
                        on_delete="CASCADE",
                    ),
                ),
                (
                    "state",
                    fields.CharEnumField(
                        default=SyncState.QUEUED,
                        description="QUEUED: QUEUED\nRUNNING: RUNNING\nSUCCEEDED: SUCCEEDED\nFAILED: FAILED",
                        enum_type=SyncState,
                        max_length=16,
                    ),
                ),
                ("trigger", fields.CharField(max_length=32)),
                ("phase", fields.CharField(null=True, max_length=32)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("started_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                (
                    "finished_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
                ("companies_seen", fields.IntField(default=0)),
                ("created", fields.IntField(default=0)),
                ("updated", fields.IntField(default=0)),
                ("moved", fields.IntField(default=0)),
                ("unlinked", fields.IntField(default=0)),
                ("relinked", fields.IntField(default=0)),
                ("error", fields.TextField(null=True, unique=False)),
            ],
            options={
                "table": "sync_run",
                "app": "models",
                "indexes": [Index(fields=["instance_id", "state"])],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="User",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                (
                    "instance",
                    fields.ForeignKeyField(
                        "models.Instance",
                        source_field="instance_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="users",
                        on_delete="CASCADE",
                    ),
                ),
                (
                    "account",
                    fields.OneToOneField(
                        "models.Account",
                        source_field="account_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="console_user",
                        on_delete="CASCADE",
                    ),
                ),
                ("email", fields.CharField(unique=True, max_length=254)),
                ("password_hash", fields.CharField(null=True, max_length=255)),
                ("enabled", fields.BooleanField(default=True)),
                (
                    "home_group",
                    fields.ForeignKeyField(
                        "models.StaticGroup",
                        source_field="home_group_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="home_users",
                        on_delete="RESTRICT",
                    ),
                ),
                ("session_timeout", fields.IntField(null=True)),
                ("description", fields.CharField(default="", max_length=500)),
                ("tag", fields.CharField(default="", max_length=255)),
                (
                    "disabled_by_unlink",
                    fields.ForeignKeyField(
                        "models.Company",
                        source_field="disabled_by_unlink_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="disabled_users",
                        on_delete="SET NULL",
                    ),
                ),
                (
                    "created_by",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="created_by_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="created_users",
                        on_delete="SET NULL",
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                (
                    "permission_sets",
                    fields.ManyToManyField(
                        "models.PermissionSet",
                        unique=True,
                        db_constraint=True,
                        through="user_permission_set",
                        forward_key="permissionset_id",
                        backward_key="console_user_id",
                        related_name="users",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
            ],
            options={
                "table": "console_user",
                "app": "models",
                "pk_attr": "id",
                "table_description": "A console user of one instance: the account owner (`account` set) or a native user.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="AuditEntry",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                (
                    "instance",
                    fields.ForeignKeyField(
                        "models.Instance",
                        source_field="instance_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="audit",
                        on_delete="CASCADE",
                    ),
                ),
                (
                    "actor",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="actor_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="audit_entries",
                        on_delete="SET NULL",
                    ),
                ),
                ("actor_email", fields.CharField(default="", max_length=254)),
                ("action", fields.CharField(max_length=64)),
                ("object_type", fields.CharField(default="", max_length=32)),
                ("object_id", fields.CharField(default="", max_length=64)),
                ("group_path", fields.CharField(default="", max_length=2000)),
                ("outcome", fields.CharField(max_length=32)),
                ("detail", fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "audit_entry",
                "app": "models",
                "indexes": [Index(fields=["instance_id", "created_at"])],
                "pk_attr": "id",
                "table_description": "Who did what, on which object, when, with what outcome.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Installer",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                (
                    "instance",
                    fields.ForeignKeyField(
                        "models.Instance",
                        source_field="instance_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="installers",
                        on_delete="CASCADE",
                    ),
                ),
                (
                    "company",
                    fields.ForeignKeyField(
                        "models.Company",
                        source_field="company_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="installers",
                        on_delete="RESTRICT",
                    ),
                ),
                (
                    "group",
                    fields.ForeignKeyField(
                        "models.StaticGroup",
                        source_field="group_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="installers",
                        on_delete="RESTRICT",
                    ),
                ),
                ("name", fields.CharField(max_length=255)),
                ("token_hash", fields.CharField(unique=True, max_length=64)),
                (
                    "created_by",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="created_by_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="installers",
                        on_delete="SET NULL",
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("expires_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("revoked_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "installer",
                "app": "models",
                "pk_attr": "id",
                "table_description": "An enrolment token for a company group, stored as its SHA-256 only.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Computer",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                (
                    "instance",
                    fields.ForeignKeyField(
                        "models.Instance",
                        source_field="instance_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="computers",
                        on_delete="CASCADE",
                    ),
                ),
                (
                    "group",
                    fields.ForeignKeyField(
                        "models.StaticGroup",
                        source_field="group_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="computers",
                        on_delete="RESTRICT",
                    ),
                ),
                (
                    "company",
                    fields.ForeignKeyField(
                        "models.Company",
                        source_field="company_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="computers",
                        on_delete="RESTRICT",
                    ),
                ),
                (
                    "installer",
                    fields.ForeignKeyField(
                        "models.Installer",
                        source_field="installer_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="computers",
                        on_delete="SET NULL",
                    ),
                ),
                ("name", fields.CharField(max_length=255)),
                ("sort_name", fields.CharField(max_length=255)),
                ("hardware_id", fields.CharField(max_length=255)),
                ("os", fields.CharField(null=True, max_length=255)),
                ("agent_version", fields.CharField(null=True, max_length=64)),
                (
                    "protection_status",
                    fields.CharEnumField(
                        null=True,
                        description="OK: OK\nWARNING: WARNING\nCRITICAL: CRITICAL",
                        enum_type=ProtectionStatus,
                        max_length=8,
                    ),
                ),
                ("agent_token_hash", fields.CharField(null=True, unique=True, max_length=64)),
                ("enrolled_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                (
                    "last_connected_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
                (
                    "announced_status",
                    fields.CharEnumField(
                        default=ConnectionStatus.NEVER_CONNECTED,
                        description="CONNECTED: CONNECTED\nDELAYED: DELAYED\nNOT_CONNECTED: NOT_CONNECTED\nNEVER_CONNECTED: NEVER_CONNECTED",
                        enum_type=ConnectionStatus,
                        max_length=16,
                    ),
                ),
            ],
            options={
                "table": "computer",
                "app": "models",
                "unique_together": (("instance", "company", "hardware_id"),),
                "indexes": [
                    Index(fields=["instance_id", "group_id", "sort_name"]),
                    Index(fields=["instance_id", "last_connected_at"]),
                    Index(fields=["announced_status", "last_connected_at"]),
                ],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Session",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                ("token_hash", fields.CharField(unique=True, max_length=64)),
                (
                    "account",
                    fields.ForeignKeyField(
                        "models.Account",
                        source_field="account_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="sessions",
                        on_delete="CASCADE",
                    ),
                ),
                (
                    "user",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="user_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="sessions",
                        on_delete="CASCADE",
                    ),
                ),
                (
                    "via",
                    fields.CharEnumField(
                        null=True,
                        description="EBA: EBA\nEMA2: EMA2",
                        enum_type=Service,
                        max_length=8,
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("expires_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("last_seen_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "session",
                "app": "models",
                "pk_attr": "id",
                "table_description": "A login: only the SHA-256 of its random token is stored.",
            },
            bases=["Model"],
        ),
    ]
