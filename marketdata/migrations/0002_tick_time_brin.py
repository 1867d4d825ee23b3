"""Index Tick.exchange_timestamp with BRIN on PostgreSQL, a B-tree elsewhere (see Tick.Meta)."""

from django.db import migrations


def create_time_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("CREATE INDEX tick_time_idx ON marketdata_tick USING brin (exchange_timestamp)")
    else:
        schema_editor.execute("CREATE INDEX tick_time_idx ON marketdata_tick (exchange_timestamp)")


def drop_time_index(apps, schema_editor):
    schema_editor.execute("DROP INDEX tick_time_idx")


class Migration(migrations.Migration):
    dependencies = [("marketdata", "0001_initial")]

    operations = [
        migrations.RemoveIndex(model_name="tick", name="tick_time_idx"),
        # Not in the model state: Django's Index cannot say "BRIN on one database only".
        migrations.RunPython(create_time_index, drop_time_index),
    ]
