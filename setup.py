"""Package layout the pyproject table cannot express: the shipped resources.

The repository keeps the target descriptions in ``hardware/`` and the trained models and recipes
in ``models/``; the wheel carries them as the package directories ``eideploy/_hardware`` and
``eideploy/_models`` (read through ``eideploy.resources``). ``package_dir`` maps the two onto the
top-level folders, so git has one copy and no symlinks, and a build from the sdist (which holds
both folders, see MANIFEST.in) gives the same wheel.
"""

from setuptools import find_packages, setup

RESOURCES = {"eideploy._hardware": "hardware", "eideploy._models": "models"}

setup(
    packages=find_packages(include=["eideploy", "eideploy.*"]) + list(RESOURCES),
    package_dir=RESOURCES,
    package_data={
        "eideploy": ["py.typed"],
        "eideploy.data": ["*.npz", "*.txt"],
        "eideploy._hardware": ["*.toml"],
        "eideploy._models": ["*.pt", "recipes/*.yaml"],
    },
    include_package_data=False,
)
