import pytest


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh DAGSTER_HOME, and none of the locations set in the environment."""
    home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for name in ("OPS_KB_URL", "OPS_QDRANT_URL", "OPS_QDRANT_PATH", "OPS_OBJECTS_DIR"):
        monkeypatch.delenv(name, raising=False)
    return home
