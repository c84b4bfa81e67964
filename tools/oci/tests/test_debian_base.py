"""The Debian base layer: dependency resolution, merged-/usr, and a real build from this host."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from tools.oci import debian_base
from tools.oci.debian_base import Package


def test_parse_relations_drops_versions_arches_and_qualifiers() -> None:
    field = "libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, python3:any (>= 3.9~), foo [amd64] <!nocheck>"
    assert debian_base.parse_relations(field) == (
        ("libc6",),
        ("debconf", "debconf-2.0"),
        ("python3",),
        ("foo",),
    )
    assert debian_base.parse_relations("") == ()


def _pkg(name: str, depends: str = "", provides: str = "") -> Package:
    return Package(
        name=name,
        version="1.0",
        depends=debian_base.parse_relations(depends),
        provides=tuple(n for g in debian_base.parse_relations(provides) for n in g),
    )


FAKE = {
    p.name: p
    for p in [
        _pkg("app", "libc6, not-installed | libfoo, awk"),
        _pkg("libc6", "libgcc-s1"),
        _pkg("libgcc-s1", "libc6"),  # cycles happen (libc6 <-> libgcc-s1 in Debian 12)
        _pkg("libfoo"),
        _pkg("mawk", provides="awk"),
        _pkg("gawk", provides="awk"),
        _pkg("unrelated"),
    ]
}


def test_closure_takes_first_installed_alternative_and_resolves_virtuals() -> None:
    names = [p.name for p in debian_base.closure(["app"], FAKE)]
    # gawk sorts before mawk: the first provider by name is the deterministic pick.
    assert names == ["app", "gawk", "libc6", "libfoo", "libgcc-s1"]


def test_closure_fails_on_unsatisfiable_dependency() -> None:
    broken = dict(FAKE, app=_pkg("app", "missing-a | missing-b"))
    with pytest.raises(SystemExit, match="missing-a"):
        debian_base.closure(["app"], broken)
    with pytest.raises(SystemExit, match="nope"):
        debian_base.closure(["nope"], FAKE)


def test_merged_usr_paths_move_under_usr() -> None:
    merged = ["bin", "lib", "lib64", "sbin"]
    assert debian_base.image_path("/lib/x86_64-linux-gnu/libc.so.6", merged) == "usr/lib/x86_64-linux-gnu/libc.so.6"
    assert debian_base.image_path("/bin", merged) == "usr/bin"
    assert debian_base.image_path("/etc/services", merged) == "etc/services"
    assert debian_base.image_path("/libexec/x", merged) == "libexec/x"
    assert debian_base.image_path("/usr/bin/dash", []) == "usr/bin/dash"


def test_docs_are_dropped_except_copyright() -> None:
    assert debian_base._dropped("usr/share/doc/dash/changelog.gz")
    assert debian_base._dropped("usr/share/man/man1/dash.1.gz")
    assert not debian_base._dropped("usr/share/doc/dash/copyright")
    assert not debian_base._dropped("usr/share/doc/dash")
    assert not debian_base._dropped("usr/share/zoneinfo/UTC")


def _members(blob: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(blob) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_real_build_from_host_packages_is_reproducible(tmp_path: Path) -> None:
    # netbase and libc6 are on every Debian 12 machine here; the closure of netbase is itself.
    roots = ["netbase", "libc6"]
    first = debian_base.build(roots, tmp_path / "one")
    second = debian_base.build(roots, tmp_path / "elsewhere" / "two")
    assert first == second
    blob_one, blob_two = tmp_path / "one" / "layer.tar.gz", tmp_path / "elsewhere" / "two" / "layer.tar.gz"
    assert blob_one.read_bytes() == blob_two.read_bytes()

    manifest = (tmp_path / "one" / "base-packages.txt").read_text().splitlines()
    assert [line.split("=")[0] for line in manifest] == ["gcc-12-base", "libc6", "libgcc-s1", "netbase"]

    members = _members(tmp_path / "one" / "layer.tar.gz")
    assert list(members) == sorted(members)
    for top in debian_base.merged_usr_dirs():
        assert members[top].issym() and members[top].linkname == f"usr/{top}"
        assert not any(name.startswith(top + "/") for name in members), f"files under /{top} must go under usr/"
    assert members["usr/lib64/ld-linux-x86-64.so.2"].issym()
    assert members["etc/services"].isfile()
    assert members["tmp"].mode == 0o1777
    assert (members["home/nonroot"].uid, members["home/nonroot"].mode) == (65532, 0o700)
    assert all(m.uid == 0 and m.gid == 0 for n, m in members.items() if n != "home/nonroot")
    assert all(m.mtime == 0 and m.uname == "" and m.gname == "" for m in members.values())
    assert not any(n.startswith("usr/share/doc/") and not n.endswith("copyright") and n.count("/") > 3 for n in members)
    with tarfile.open(tmp_path / "one" / "layer.tar.gz") as tar:
        passwd = tar.extractfile("etc/passwd").read().decode()  # type: ignore[union-attr]
        assert "nonroot:x:65532:65532:" in passwd and passwd.startswith("root:x:0:0:")
        assert tar.extractfile(debian_base.MANIFEST_PATH).read().decode().splitlines() == manifest  # type: ignore[union-attr]
