"""A new index's schema is made in one step from the models and stamped at head: it must be exactly
the schema the Alembic migrations build, on SQLite and on PostgreSQL."""

from sqlalchemy import inspect

from simsearch import store


def _schema(engine) -> dict:
    found = {}
    with engine.connect() as conn:
        insp = inspect(conn)
        for table in sorted(insp.get_table_names()):
            found[table] = {
                "columns": [(c["name"], str(c["type"]), c["nullable"], str(c.get("default"))) for c in
                            insp.get_columns(table)],
                "primary_key": insp.get_pk_constraint(table)["constrained_columns"],
                "foreign_keys": sorted((tuple(f["constrained_columns"]), f["referred_table"],
                                        tuple(f["referred_columns"])) for f in insp.get_foreign_keys(table)),
                "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                                  for i in insp.get_indexes(table)),
                "unique": sorted((u["name"], tuple(u["column_names"])) for u in insp.get_unique_constraints(table)),
            }
        found["version"] = store._current_revisions(conn)
    return found


def _both(url_made, url_migrated) -> tuple[dict, dict]:
    made, migrated = store.make_engine(url_made), store.make_engine(url_migrated)
    store.upgrade(made)  # a new database: made from the models
    store._migrate(migrated, set())  # the same, through every migration
    try:
        return _schema(made), _schema(migrated)
    finally:
        made.dispose()
        migrated.dispose()


def test_a_new_sqlite_index_has_the_migrated_schema(tmp_path):
    made, migrated = _both(f"sqlite:///{tmp_path / 'made.db'}", f"sqlite:///{tmp_path / 'migrated.db'}")
    assert made["version"] == {store.HEAD_REVISION} and "images" in made
    assert made == migrated


def test_a_new_postgres_index_has_the_migrated_schema(postgres):
    made, migrated = _both(postgres(), postgres())
    assert made == migrated
