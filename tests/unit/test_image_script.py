"""scripts/image's pure parts: which Debian mirror apt uses, the base image's key.

(Building and running the image: tests/integration/test_container_image.py.)"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "image"


@pytest.fixture(scope="module")
def image():
    loader = importlib.machinery.SourceFileLoader("dockhand_scripts_image", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def _etc(tmp_path: Path, sources_list: str = "", **parts: str) -> str:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    if sources_list:
        (etc / "sources.list").write_text(sources_list)
    for name, text in parts.items():
        (etc / "sources.list.d" / name.replace("_", ".")).write_text(text)
    return str(etc)


DEB822 = """\
Types: deb-src
URIs: http://src.mirror.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://security.mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# a comment inside the stanza
URIs: http://mirror.example/debian/ http://second.mirror.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://disabled.mirror.example/debian
Suites: bookworm
Components: main
Enabled: no
"""


def test_deb822_sources_give_the_suites_main_mirror_and_keyring(image, tmp_path):
    etc = _etc(tmp_path, debian_sources=DEB822)
    assert image.find_mirror("bookworm", etc) == ("http://mirror.example/debian",
                                                  "/usr/share/keyrings/debian-archive-keyring.gpg")
    # deb-src and disabled entries are not sources of packages
    assert [e["uris"][0] for e in image.apt_sources(etc)] == ["http://security.mirror.example/debian-security",
                                                              "http://mirror.example/debian/"]


def test_one_line_sources_with_options(image, tmp_path):
    etc = _etc(tmp_path, "# deb http://commented.example/debian bookworm main\n"
                         "deb-src http://src.mirror.example/debian bookworm main\n"
                         "deb [arch=amd64 signed-by=/etc/apt/keyrings/d.gpg] http://mirror.example/debian "
                         "bookworm main non-free  # trailing comment\n")
    assert image.find_mirror("bookworm", etc) == ("http://mirror.example/debian", "/etc/apt/keyrings/d.gpg")


def test_an_inline_signed_by_key_is_no_keyring_path(image, tmp_path):
    inline = DEB822.replace("Components: main contrib\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg",
                            "Components: main contrib\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n "
                            "mQINBF...\n -----END PGP PUBLIC KEY BLOCK-----")
    etc = _etc(tmp_path, debian_sources=inline)
    assert image.find_mirror("bookworm", etc) == ("http://mirror.example/debian", "")


def test_another_suites_mirror_serves_the_suite(image, tmp_path):
    etc = _etc(tmp_path, "deb http://security.mirror.example/debian-security trixie-security main\n"
                         "deb http://mirror.example/debian trixie main\n")
    assert image.find_mirror("bookworm", etc)[0] == "http://mirror.example/debian"


def test_no_debian_mirror_says_how_to_give_one(image, tmp_path):
    etc = _etc(tmp_path, "deb http://mirror.example/other stable contrib\n")
    with pytest.raises(image.Failed, match="--mirror URL"):
        image.find_mirror("bookworm", etc)
    with pytest.raises(image.Failed, match="--mirror URL"):
        image.find_mirror("bookworm", str(tmp_path / "nothing-here"))


def test_the_base_key_follows_what_goes_in(image, monkeypatch):
    key = image.base_key("bookworm", "amd64", "http://mirror.example/debian")
    assert key == image.base_key("bookworm", "amd64", "http://mirror.example/debian")
    assert len(key) == 12
    others = {image.base_key("trixie", "amd64", "http://mirror.example/debian"),
              image.base_key("bookworm", "arm64", "http://mirror.example/debian"),
              image.base_key("bookworm", "amd64", "http://other.mirror.example/debian")}
    assert key not in others and len(others) == 3
    monkeypatch.setattr(image, "BASE_PACKAGES", (*image.BASE_PACKAGES, "tini"))
    assert image.base_key("bookworm", "amd64", "http://mirror.example/debian") != key


def test_the_default_base_is_the_dockerfiles(image):
    assert image.dockerfile_default_base() == "python:3.11-slim"
    assert image.project_version() == image.re.search(
        r'^version\s*=\s*"([^"]+)"', (SCRIPT.parents[1] / "pyproject.toml").read_text(), image.re.M).group(1)


def test_bad_docker_gid_is_a_usage_error(image, capsys):
    with pytest.raises(SystemExit) as exc:
        image.main(["build", "--docker-gid", "docker"])
    assert exc.value.code == 2
    assert "--docker-gid takes a number" in capsys.readouterr().err
