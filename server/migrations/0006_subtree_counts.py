"""Maintained subtree counters (`subtree_count`), filled from the companies already there, so a
count over a subtree costs one row; and the indexes that let a page of the company tree stop
after its rows: children in tree order (`parent_id`, `sort_key`), computers by name."""

from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


STATUS = (
    ("customers_unlinked", "c.unlinked_at IS NOT NULL"),
    ("customers_not_set_up", "c.unlinked_at IS NULL AND c.setup_state = 'pending'"),
    ("customers_normal", "c.unlinked_at IS NULL AND c.setup_state <> 'pending'"),
)
TYPES = (
    ("distributors", "DISTRIBUTOR"),
    ("divisions", "DIVISION"),
    ("msp_managers", "MSP_MANAGER"),
    ("msps", "MSP"),
    ("managed_msps", "MANAGED_MSP"),
)


def fill_sql() -> str:
    """One statement counting, for every group, the companies in its path range: what
    `domain.counters.recount` keeps right afterwards (written out here: a migration stays as it
    was when the code around it changes)."""
    sums = [f"SUM(CASE WHEN c.type = '{kind}' THEN 1 ELSE 0 END)" for _, kind in TYPES] + [
        f"SUM(CASE WHEN c.type = 'CUSTOMER' AND {condition} THEN 1 ELSE 0 END)"
        for _, condition in STATUS
    ]
    columns = [name for name, _ in TYPES] + [name for name, _ in STATUS]
    return (
        f"INSERT INTO subtree_count (group_id, instance_id, {', '.join(columns)}) "
        f"SELECT g.id, g.instance_id, {', '.join(sums)} FROM static_group g "
        "JOIN company c ON c.instance_id = g.instance_id AND c.path >= g.path "
        "AND c.path < substr(g.path, 1, length(g.path) - 1) || '0' GROUP BY g.id, g.instance_id"
    )


async def fill(apps, schema_editor) -> None:
    await schema_editor.client.execute_script(fill_sql())


class Migration(migrations.Migration):
    dependencies = [("models", "0005_audit_byte_order")]

    initial = False

    operations = [
        ops.CreateModel(
            name="SubtreeCount",
            fields=[
                (
                    "group_id",
                    fields.IntField(generated=False, primary_key=True, unique=True, db_index=True),
                ),
                (
                    "instance",
                    fields.ForeignKeyField(
                        "models.Instance",
                        source_field="instance_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="subtree_counts",
                        on_delete="CASCADE",
                    ),
                ),
                ("distributors", fields.IntField(default=0)),
                ("divisions", fields.IntField(default=0)),
                ("msp_managers", fields.IntField(default=0)),
                ("msps", fields.IntField(default=0)),
                ("managed_msps", fields.IntField(default=0)),
                ("customers_not_set_up", fields.IntField(default=0)),
                ("customers_normal", fields.IntField(default=0)),
                ("customers_unlinked", fields.IntField(default=0)),
            ],
            options={
                "table": "subtree_count",
                "app": "models",
                "pk_attr": "group_id",
                "table_description": "Companies in one static group's subtree, by type and customer status.",
            },
            bases=["Model"],
        ),
        # pages order by (sort key, id): an index ending with id reads them in order and stops
        ops.RemoveIndex(model_name="Company", fields=["instance_id", "sort_key"]),
        ops.AddIndex(model_name="Company", index=Index(fields=["instance_id", "sort_key", "id"])),
        ops.RemoveIndex(model_name="Company", fields=["instance_id", "type", "sort_name"]),
        ops.AddIndex(
            model_name="Company", index=Index(fields=["instance_id", "type", "sort_name", "id"])
        ),
        ops.AddIndex(model_name="Company", index=Index(fields=["parent_id", "sort_key", "id"])),
        ops.AddIndex(model_name="StaticGroup", index=Index(fields=["parent_id", "sort_key", "id"])),
        ops.AddIndex(model_name="Computer", index=Index(fields=["instance_id", "sort_name", "id"])),
        ops.RemoveIndex(model_name="Computer", fields=["instance_id", "group_id", "sort_name"]),
        ops.AddIndex(
            model_name="Computer",
            index=Index(fields=["instance_id", "group_id", "sort_name", "id"]),
        ),
        ops.RunPython(fill, reverse_code=ops.RunPython.noop),
    ]
