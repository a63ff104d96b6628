"""The product suite's fixtures (fer_csv, fer_data, ...) for the research tests."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from conftest import *  # noqa: E402,F401,F403
