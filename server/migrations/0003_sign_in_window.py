"""Sign-in throttling in the database, shared by every worker and host."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index


class Migration(migrations.Migration):
    dependencies = [("models", "0002_byte_order_text")]

    initial = False

    operations = [
        ops.CreateModel(
            name="SignInWindow",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                ("key_hash", fields.CharField(max_length=64)),
                ("minute", fields.BigIntField()),
                ("attempts", fields.IntField(default=0)),
            ],
            options={
                "table": "sign_in_window",
                "app": "models",
                "unique_together": (("key_hash", "minute"),),
                "indexes": [Index(fields=["minute"])],
                "pk_attr": "id",
                "table_description": "Sign-in attempts per throttled key and minute, shared by every worker and host.",
            },
            bases=["Model"],
        ),
    ]
