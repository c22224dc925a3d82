"""Write tests/cassettes/<name>.yaml from the definitions in tests/cassette_specs/.

Requests are matched on the endpoint and the identifying parameters (symbol, period, cursor),
not on time windows: the recordings were made with other windows (see tests/conftest.py).
Run `python -m tests.build_cassettes` after changing a definition; the cassettes are committed.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import yaml

import tests.cassette_specs as specs

CASSETTES = Path(__file__).parent / "cassettes"


def main() -> None:
    CASSETTES.mkdir(exist_ok=True)
    for module_info in pkgutil.iter_modules(specs.__path__):
        module = importlib.import_module(f"{specs.__name__}.{module_info.name}")
        for name, interactions in module.CASSETTES.items():
            text = yaml.safe_dump({"interactions": interactions, "version": 1}, sort_keys=False)
            (CASSETTES / f"{name}.yaml").write_text(text)
            print(f"wrote {CASSETTES / name}.yaml")


if __name__ == "__main__":
    main()
