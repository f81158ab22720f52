"""The subtree counters' description as the model states it: Tortoise takes a model's
description from the first line of its docstring, and that line (cut mid-sentence) never
matched the one 0006 recorded, so `makemigrations` always found a change. The docstring now
opens with a whole sentence, recorded here. Nothing in the database changes."""

from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0013_usage_report_index")]

    initial = False

    operations = [
        ops.AlterModelOptions(
            name="SubtreeCount",
            options={
                "table": "subtree_count",
                "app": "models",
                "pk_attr": "group_id",
                "table_description": "Companies and computers in one static group's subtree, "
                "kept by every write.",
            },
        ),
    ]
