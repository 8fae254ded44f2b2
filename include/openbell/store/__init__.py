"""openbell's state in Postgres: models, migrations, the step ledger and small helpers."""
