"""A leaked installer token must not take over enrolled computers: an enrolment that names the
hardware of an enrolled computer without its agent token makes a duplicate (`duplicate_of`), so
`unique (instance, company, hardware_id)` becomes a partial unique index over the originals
only. Installers count their enrolments, against an optional cap."""

import re

from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

ORIGINALS_INDEX = "uidx_computer_original_hardware"
_SQLITE_UNIQUE = re.compile(
    r',\s*CONSTRAINT "[^"]+" UNIQUE \("instance_id", "company_id", "hardware_id"\)'
)


async def _rebuild_sqlite_computer_without_unique(client) -> None:
    """SQLite cannot drop a table constraint: rebuild the table from its own DDL without it
    (SQLite's generalized ALTER TABLE procedure), keeping every row and index."""
    table_sql = (
        await client.execute_query_dict(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'computer'"
        )
    )[0]["sql"]
    index_sqls = [
        row["sql"]
        for row in await client.execute_query_dict(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'computer' "
            "AND sql IS NOT NULL"
        )
    ]
    new_sql, found = _SQLITE_UNIQUE.subn("", table_sql, count=1)
    if not found:
        raise RuntimeError("computer: the unique (instance, company, hardware_id) is missing")
    new_sql = new_sql.replace('"computer"', '"computer__new"', 1)
    await client.execute_script(new_sql)
    await client.execute_script('INSERT INTO "computer__new" SELECT * FROM "computer"')
    await client.execute_script('DROP TABLE "computer"')
    await client.execute_script('ALTER TABLE "computer__new" RENAME TO "computer"')
    for sql in index_sqls:
        await client.execute_script(sql)


class RemoveHardwareUniqueness(ops.RemoveConstraint):
    """Tortoise's SQLite editor drops a unique constraint as if it were an index; rebuild."""

    async def database_forward(self, app_label, old_state, new_state, state_editor=None):
        if state_editor and state_editor.client.capabilities.dialect == "sqlite":
            await _rebuild_sqlite_computer_without_unique(state_editor.client)
            return
        await super().database_forward(app_label, old_state, new_state, state_editor)


class Migration(migrations.Migration):
    dependencies = [("models", "0003_sign_in_window")]

    initial = False

    operations = [
        RemoveHardwareUniqueness(
            model_name="Computer",
            name=None,
            fields=["instance", "company", "hardware_id"],
        ),
        ops.AddField(
            model_name="Computer",
            name="duplicate_of",
            field=fields.ForeignKeyField(
                "models.Computer",
                source_field="duplicate_of_id",
                null=True,
                db_constraint=True,
                to_field="id",
                related_name="duplicates",
                on_delete="NO ACTION",
            ),
        ),
        ops.AddIndex(
            model_name="Computer",
            index=Index(fields=["duplicate_of_id"]),
        ),
        # One original computer per hardware id and company. Both databases have partial
        # indexes; Tortoise declares none that SQLite accepts, hence SQL.
        ops.RunSQL(
            f'CREATE UNIQUE INDEX "{ORIGINALS_INDEX}" ON "computer" '
            '("instance_id", "company_id", "hardware_id") WHERE "duplicate_of_id" IS NULL',
            reverse_sql=f'DROP INDEX "{ORIGINALS_INDEX}"',
        ),
        ops.AddField(
            model_name="Installer",
            name="enrolments",
            field=fields.IntField(default=0, db_default=0),
        ),
        ops.AddField(
            model_name="Installer",
            name="max_enrolments",
            field=fields.IntField(null=True),
        ),
    ]
