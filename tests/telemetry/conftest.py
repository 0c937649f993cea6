from tests.oracle_service.conftest import engine, postgres_url  # noqa: F401 - the same SQLite/PostgreSQL fixtures
