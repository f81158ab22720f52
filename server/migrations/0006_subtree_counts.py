"""Maintained subtree counters (`subtree_count`), filled from the companies already there, so a
count over a subtree costs one row; and the indexes that let a page of the company tree stop
after its rows: children in tree order (`parent_id`, `sort_key`), computers by name."""

from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


async def fill(apps, schema_editor) -> None:
    from server.domain import counters

    client = schema_editor.client
    rows = await client.execute_query_dict("SELECT id FROM instance")
    for row in rows:
        await counters.recount(row["id"], connection=client)


class Migration(migrations.Migration):
    dependencies = [("models", "0005_audit_byte_order")]

    initial = False

    operations = [
        ops.CreateModel(
            name="SubtreeCount",
            fields=[
                ("group_id", fields.IntField(generated=False, primary_key=True, unique=True, db_index=True)),
                ("instance", fields.ForeignKeyField("models.Instance", source_field="instance_id", db_constraint=True, to_field="id", related_name="subtree_counts", on_delete="CASCADE")),
                ("distributors", fields.IntField(default=0)),
                ("divisions", fields.IntField(default=0)),
                ("msp_managers", fields.IntField(default=0)),
                ("msps", fields.IntField(default=0)),
                ("managed_msps", fields.IntField(default=0)),
                ("customers_not_set_up", fields.IntField(default=0)),
                ("customers_normal", fields.IntField(default=0)),
                ("customers_unlinked", fields.IntField(default=0)),
            ],
            options={"table": "subtree_count", "app": "models", "pk_attr": "group_id", "table_description": "Companies in one static group's subtree, by type and customer status."},
            bases=["Model"],
        ),
        ops.AddIndex(model_name="Company", index=Index(fields=["parent_id", "sort_key"])),
        ops.AddIndex(model_name="StaticGroup", index=Index(fields=["parent_id", "sort_key"])),
        ops.AddIndex(model_name="Computer", index=Index(fields=["instance_id", "sort_name"])),
        ops.RunPython(fill, reverse_code=ops.RunPython.noop),
    ]
