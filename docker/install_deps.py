"""Install the project's declared dependencies, pinned by constraints.txt, into the image.

Used by the Dockerfile (before the source is copied, so this layer is cached until
pyproject.toml or constraints.txt change). Rules:

* every requirement of ``[project.dependencies]`` plus the requested extras is installed with
  ``pip install -c constraints.txt`` (the same pins as the development environment and CI);
* if the base image already has TensorFlow (e.g. ``tensorflow/tensorflow:2.21.0-gpu``) and it
  satisfies the project's range, TensorFlow is NOT reinstalled;
* otherwise TensorFlow is installed as ``tensorflow[<tf-extras>]`` — ``and-cuda`` brings the
  CUDA/cuDNN runtime as NVIDIA wheels (GPU image), an empty value gives a CPU-only install;
* the project itself (``airbnb-dl``) and editable lines are dropped from the constraints.

Usage: python install_deps.py --pyproject pyproject.toml --constraints constraints.txt \
           [--extras test,docs] [--tf-extras and-cuda] [--dry-run]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path

PROJECT = "airbnb-dl"


def _name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else ""


def _preinstalled_tensorflow(spec: str) -> str | None:
    """Version of an installed TensorFlow satisfying ``spec`` (e.g. ``tensorflow>=2.21,<2.22``)."""
    for dist in ("tensorflow", "tensorflow-cpu", "tf-nightly"):
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        try:
            from packaging.requirements import Requirement
        except ImportError:  # not installed: pip always vendors a copy
            from pip._vendor.packaging.requirements import Requirement
        if not Requirement(spec).specifier.contains(version, prereleases=True):
            print(f"base image has {dist} {version}, outside {spec}: installing the pinned one")
            return None
        return f"{dist} {version}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    parser.add_argument("--constraints", type=Path, default=Path("constraints.txt"))
    parser.add_argument("--extras", default="", help="comma-separated optional-dependency groups")
    parser.add_argument("--tf-extras", default="", help="TensorFlow extras, e.g. and-cuda")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)

    project = tomllib.loads(args.pyproject.read_text())["project"]
    requirements = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    # Extras may name other extras of the project itself, e.g. dev = ["airbnb-dl[test,docs]"].
    pending = [e.strip() for e in args.extras.split(",") if e.strip()]
    seen: set[str] = set()
    while pending:
        extra = pending.pop(0)
        if extra in seen:
            continue
        seen.add(extra)
        if extra not in optional:
            print(f"note: extra {extra!r} is not declared in {args.pyproject}; skipped")
            continue
        for requirement in optional[extra]:
            if _name(requirement) == PROJECT:
                inner = re.search(r"\[([^\]]*)\]", requirement)
                pending += [e.strip() for e in inner.group(1).split(",")] if inner else []
            else:
                requirements.append(requirement)

    final: list[str] = []
    for requirement in requirements:
        name = _name(requirement)
        if name == PROJECT:
            continue
        if name == "tensorflow":
            found = _preinstalled_tensorflow(requirement)
            if found:
                print(f"TensorFlow comes from the base image ({found}): not reinstalled")
                continue
            if args.tf_extras.strip():
                requirement = re.sub(r"^\s*tensorflow(\[[^\]]*\])?", f"tensorflow[{args.tf_extras.strip()}]", requirement)
        final.append(requirement)

    constraints = [
        line
        for line in args.constraints.read_text().splitlines()
        if line.strip()
        and not line.lstrip().startswith(("-e", "#"))
        and _name(line) != PROJECT
        and "file://" not in line
    ]
    with tempfile.NamedTemporaryFile("w", suffix="-constraints.txt", delete=False) as handle:
        handle.write("\n".join(constraints) + "\n")
    command = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "-c", handle.name, *final]
    print("+", " ".join(command), flush=True)
    try:
        return 0 if args.dry_run else subprocess.call(command)
    finally:
        Path(handle.name).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
