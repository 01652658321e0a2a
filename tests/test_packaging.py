"""What a plain ``pip install .`` gets: the wheel built from this tree, opened.

The demo's config and the dashboard's files must be inside it (they are
found next to the modules, not in a source checkout), and every
package-data pattern must match something (a stale one hides a missing file).
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import tempfile
import unittest
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def package_data() -> list[str]:
    """The ``package_data`` patterns setup.py declares for ``flamingo``."""
    import ast

    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "package_data":
            return list(ast.literal_eval(node.value)["flamingo"])
    raise AssertionError("setup.py declares no package_data")


class WheelContents(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        out = Path(tempfile.mkdtemp(prefix="flamingo-wheel-"))
        work = Path(tempfile.mkdtemp(prefix="flamingo-src-"))
        cls.addClassCleanup(shutil.rmtree, out, True)
        cls.addClassCleanup(shutil.rmtree, work, True)
        # Build from a copy: the build leaves build/ behind.
        src = work / "src"
        shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "*.egg-info", "__pycache__", "run", ".hypothesis",
            "_trial_temp*"))
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                        "--no-build-isolation", "-w", str(out), str(src)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        (wheel,) = out.glob("flamingo-*.whl")
        cls.names = set(zipfile.ZipFile(wheel).namelist())

    def test_demo_config_ships_beside_the_demo(self) -> None:
        from flamingo import demo

        self.assertEqual(demo.DEMO_CONFIG.parent, Path(demo.__file__).resolve().parent)
        self.assertIn("flamingo/" + demo.DEMO_CONFIG.name, self.names)

    def test_dashboard_files_ship(self) -> None:
        for name in ("flamingo/web/static/dashboard.html",
                     "flamingo/web/static/vendor/uplot/LICENSE",
                     "twisted/plugins/flamingo_plugin.py"):
            self.assertIn(name, self.names)

    def test_jetstream_dictionary_ships_with_its_licence(self) -> None:
        for name in ("zstd_dictionary", "LICENSE-DUAL", "LICENSE-MIT", "LICENSE-APACHE", "README.md"):
            self.assertIn("flamingo/sources/jetstream_data/" + name, self.names)
        self.assertIn("flamingo/demo_jetstream.yml", self.names)

    def test_type_marker_ships(self) -> None:
        """PEP 561: without py.typed, users' type checkers ignore flamingo's annotations."""
        self.assertIn("flamingo/py.typed", self.names)

    def test_every_package_data_pattern_matches_a_file(self) -> None:
        for pattern in package_data():
            self.assertTrue(fnmatch.filter(self.names, "flamingo/" + pattern),
                            f"package_data {pattern!r} matches nothing")
