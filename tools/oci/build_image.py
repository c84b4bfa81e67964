"""Build the layers of a Python OCI image and assemble the image layout (used by py_oci_image).

Three subcommands, one Bazel action each, so that changing app code never recompresses the
third-party layer:
  site-packages  the files of some distributions and their Requires-Dist closure, from the
                 locked venv named by @py_venv//:venv_path.txt, at /app/site-packages
  app            a py_binary's runfiles at /app/runfiles/<repo>/<path> (symlinks followed)
  assemble       base + layers + config -> OCI image layout directory and a .digest file
Every output is deterministic and free of host paths (see layer.py and layout.py): the same
inputs at another checkout path or output base give the same digests.
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import sys
from pathlib import Path

from tools.oci import layer, layout, sitepackages

SITE_PACKAGES_DIR = "app/site-packages"
RUNFILES_DIR = "app/runfiles"
PIP_MANIFEST = "usr/share/causeway/pip-packages.txt"


def _write(entries: list[layer.Entry], out: Path, descriptor: Path, compresslevel: int) -> layer.Descriptor:
    desc = layer.write_layer(entries, out, compresslevel)
    descriptor.write_text(desc.to_json())
    return desc


def site_packages_layer(args: argparse.Namespace) -> int:
    """The third-party layer: only the named distributions and what they require."""
    venv = Path(args.venv_path_file.read_text().strip())
    site = sitepackages.find_site_packages(venv)
    files, pins = sitepackages.closure_files(site, args.requirement, SITE_PACKAGES_DIR)
    rels = [posixpath.relpath(dest, SITE_PACKAGES_DIR) for dest, _ in files]
    for pth in sitepackages.top_level_pth(rels):
        # Python runs .pth files only in site dirs; from PYTHONPATH they are inert.
        print(f"build_image: warning: {pth} will not run from PYTHONPATH", file=sys.stderr)
    entries = [layer.file_entry(dest, src) for dest, src in files]
    entries.append(layer.Entry(PIP_MANIFEST, "file", 0o644, data="".join(p + "\n" for p in pins).encode()))
    _write(entries, args.out, args.descriptor, args.compresslevel)
    return 0


def runfiles_path(short_path: str, workspace_name: str) -> str:
    """Bazel short_path -> path under the runfiles root ('../repo/x' -> 'repo/x', 'x' -> 'ws/x')."""
    if short_path.startswith("../"):
        return short_path[3:]
    return posixpath.join(workspace_name, short_path)


def _pair(value: str) -> tuple[str, str]:
    dest, sep, src = value.partition("\t")
    if not sep or not dest or not src:
        raise argparse.ArgumentTypeError(f"expected '<runfiles path>\\t<source>', got {value!r}")
    return dest, src


def app_layer(args: argparse.Namespace) -> int:
    """The app layer: runfiles files (short_path form), root symlinks and empty files."""
    placed: list[tuple[str, str]] = [(runfiles_path(d, args.workspace_name), s) for d, s in args.file]
    placed += args.root_file
    entries: list[layer.Entry] = []
    for dest, src in placed:
        image_path = posixpath.join(RUNFILES_DIR, dest)
        if os.path.isdir(src):  # a tree artifact: its files, not the directory's identity
            entries += layer.tree_entries(image_path, Path(src), skip=frozenset({"__pycache__"}))
        else:
            entries.append(layer.file_entry(image_path, src))
    for empty in args.empty:
        entries.append(layer.Entry(layer.normalize(posixpath.join(RUNFILES_DIR, empty)), "file", 0o644, data=b""))
    _write(entries, args.out, args.descriptor, args.compresslevel)
    return 0


def assemble(args: argparse.Namespace) -> int:
    """Write the image layout from a JSON spec whose paths are relative to the working dir."""
    spec = json.loads(args.spec.read_text())
    layers = []
    for item in spec["layers"]:
        blob = Path(item["blob"])
        desc_path = item.get("descriptor")
        desc = layer.Descriptor.from_json(Path(desc_path).read_text()) if desc_path else layer.describe_existing(blob)
        layers.append(layout.Layer(blob, desc, item["created_by"]))
    config = layout.ImageConfig(
        entrypoint=spec["entrypoint"],
        cmd=spec.get("cmd", []),
        env=spec.get("env", {}),
        user=spec.get("user", ""),
        workdir=spec.get("workdir", ""),
        exposed_ports=spec.get("exposed_ports", []),
        labels=spec.get("labels", {}),
    )
    digest = layout.write_layout(args.out_dir, config, layers, spec.get("ref_name", "latest"))
    args.digest_out.write_text(digest)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], fromfile_prefix_chars="@")
    sub = p.add_subparsers(dest="command", required=True)

    def layer_command(name: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, fromfile_prefix_chars="@")
        cmd.add_argument("--out", type=Path, required=True, help="the .tar.gz to write")
        cmd.add_argument("--descriptor", type=Path, required=True, help="its descriptor JSON")
        cmd.add_argument("--compresslevel", type=int, default=layer.DEFAULT_COMPRESSLEVEL)
        return cmd

    sp = layer_command("site-packages")
    sp.add_argument("--venv-path-file", type=Path, required=True)
    sp.add_argument("--requirement", action="append", default=[], help="e.g. grpcio or tritonclient[grpc]")
    sp.set_defaults(func=site_packages_layer)

    app = layer_command("app")
    app.add_argument("--workspace-name", required=True)
    app.add_argument("--file", type=_pair, action="append", default=[], help="short_path<TAB>source")
    app.add_argument("--root-file", type=_pair, action="append", default=[], help="runfiles path<TAB>source")
    app.add_argument("--empty", action="append", default=[], help="runfiles path of an empty file")
    app.set_defaults(func=app_layer)

    asm = sub.add_parser("assemble", fromfile_prefix_chars="@")
    asm.add_argument("--spec", type=Path, required=True)
    asm.add_argument("--out-dir", type=Path, required=True)
    asm.add_argument("--digest-out", type=Path, required=True)
    asm.set_defaults(func=assemble)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
