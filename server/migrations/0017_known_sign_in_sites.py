"""A per-account limit on failed sign-ins from unknown sites: the sites each account signed in
from (known_sign_in_site) and the failures of an account from all other sites, per hour
(sign_in_account_window). Both are keyed by HMAC under the secret key (server.domain.throttle)."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index


class Migration(migrations.Migration):
    dependencies = [("models", "0016_company_instance_keys")]

    initial = False

    operations = [
        ops.CreateModel(
            name="KnownSignInSite",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                ("key_hash", fields.CharField(unique=True, max_length=64)),
                ("day", fields.BigIntField()),
            ],
            options={
                "table": "known_sign_in_site",
                "app": "models",
                "indexes": [Index(fields=["day"])],
                "pk_attr": "id",
                "table_description": "A client site an account signed in from, with the day (since 1970, UTC) of its last success.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="SignInAccountWindow",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                ("key_hash", fields.CharField(max_length=64)),
                ("hour", fields.BigIntField()),
                ("attempts", fields.IntField(default=0)),
            ],
            options={
                "table": "sign_in_account_window",
                "app": "models",
                "unique_together": (("key_hash", "hour"),),
                "indexes": [Index(fields=["hour"])],
                "pk_attr": "id",
                "table_description": "Failed sign-ins of an account from sites not known for it, per key and hour.",
            },
            bases=["Model"],
        ),
    ]
