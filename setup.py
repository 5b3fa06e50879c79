"""Packages of the nag distribution; all other metadata lives in pyproject.toml.

The configs stay in the repository's top-level ``experiments/`` folder (versioned with the code,
edited in place by a clone or an editable install); a wheel or sdist maps that folder into the
package as ``nag/conf`` (``nag.config_files.config_dir`` finds it there), so an installed nag
runs every experiment from any working directory. pyproject.toml cannot express the mapping of a
folder outside ``nag/`` next to ``packages.find``, hence this file.
"""
from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["nag", "nag.*"]), "nag.conf"],
    package_dir={"nag.conf": "experiments"},
    package_data={"nag": ["assets/**/*"], "nag.conf": ["*.yaml", "**/*.yaml"]},
)
