"""Build hook (the rest of the configuration is in pyproject.toml): wheels carry the editor plugins.

plugins/ (the Krita and GIMP plugins and what they share) lies beside backend/ in the repository, outside
the `impasto` package; a built wheel gets a copy as impasto/_plugins, so that `impasto plugin install`
works from an installed wheel (impasto/cli/plugin_install.py plugins_source()). Editable installs skip the
copy and read plugins/ from the checkout."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PLUGINS = Path(__file__).resolve().parent / "plugins"


class BuildPyWithPlugins(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "impasto" / "_plugins"
        shutil.rmtree(target, ignore_errors=True)  # a rebuild must not keep files deleted from plugins/
        shutil.copytree(PLUGINS, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "_vendor"))


setup(cmdclass={"build_py": BuildPyWithPlugins})
