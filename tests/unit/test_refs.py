"""Table-driven tests for handlers.refs.

Cases follow distribution/reference's reference_test.go and normalize_test.go
(adapted: we always normalise, as ParseNormalizedNamed does), plus the parts
that are ours: messages, hints, ID handling and prefix resolution.
"""

from __future__ import annotations

import pytest

from handlers.errors import AmbiguousImageId, InvalidReference, UsageError
from handlers.refs import (
    ImageId,
    MIN_ID_PREFIX_LEN,
    REFERENCE_SHAPE,
    Reference,
    parse_image_arg,
    parse_normalized,
    quote_input,
    resolve_id_prefix,
    validate_digest,
    validate_tag,
)

F64 = "f" * 64
D256 = "sha256:" + F64
HEX64 = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"
REDIS_DGST = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"


def err_of(s: str) -> InvalidReference:
    with pytest.raises(InvalidReference) as info:
        parse_normalized(s)
    return info.value


# ---------------------------------------------------------------------------
# Successful parses: input -> (domain, path, tag, digest)
# (reference_test.go TestReferenceParse, normalised)
# ---------------------------------------------------------------------------
VALID = [
    ("test_com", "docker.io", "library/test_com", "", ""),
    ("test.com:tag", "docker.io", "library/test.com", "tag", ""),
    ("test.com:5000", "docker.io", "library/test.com", "5000", ""),
    ("test.com/repo:tag", "test.com", "repo", "tag", ""),
    ("test:5000/repo", "test:5000", "repo", "", ""),
    ("test:5000/repo:tag", "test:5000", "repo", "tag", ""),
    ("test:5000/repo@" + D256, "test:5000", "repo", "", D256),
    ("test:5000/repo:tag@" + D256, "test:5000", "repo", "tag", D256),
    ("lowercase:Uppercase", "docker.io", "library/lowercase", "Uppercase", ""),
    ("a/" * 127 + "a:tag-puts-this-over-max", "docker.io", "a/" * 127 + "a", "tag-puts-this-over-max", ""),
    ("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com", "bar/baz/quux", "", ""),
    ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", "sub-dom1.foo.com", "bar/baz/quux", "some-long-tag", ""),
    ("b.gcr.io/test.example.com/my-app:test.example.com", "b.gcr.io", "test.example.com/my-app", "test.example.com", ""),
    ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com", "myimage", "xn--n3h.com", ""),
    ("xn--7o8h.com/myimage:xn--7o8h.com@" + D256, "xn--7o8h.com", "myimage", "xn--7o8h.com", D256),
    ("foo_bar.com:8080", "docker.io", "library/foo_bar.com", "8080", ""),
    ("foo/foo_bar.com:8080", "docker.io", "foo/foo_bar.com", "8080", ""),
    ("192.168.1.1", "docker.io", "library/192.168.1.1", "", ""),
    ("192.168.1.1:tag", "docker.io", "library/192.168.1.1", "tag", ""),
    ("192.168.1.1:5000", "docker.io", "library/192.168.1.1", "5000", ""),
    ("192.168.1.1/repo", "192.168.1.1", "repo", "", ""),
    ("192.168.1.1:5000/repo", "192.168.1.1:5000", "repo", "", ""),
    ("192.168.1.1:5000/repo:5050", "192.168.1.1:5000", "repo", "5050", ""),
    ("[2001:db8::1]/repo", "[2001:db8::1]", "repo", "", ""),
    ("[2001:db8:1:2:3:4:5:6]/repo:tag", "[2001:db8:1:2:3:4:5:6]", "repo", "tag", ""),
    ("[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "repo", "", ""),
    ("[2001:db8::1]:5000/repo:tag", "[2001:db8::1]:5000", "repo", "tag", ""),
    ("[2001:db8::1]:5000/repo@" + D256, "[2001:db8::1]:5000", "repo", "", D256),
    ("[2001:db8::1]:5000/repo:tag@" + D256, "[2001:db8::1]:5000", "repo", "tag", D256),
    ("[2001:db8::]:5000/repo", "[2001:db8::]:5000", "repo", "", ""),
    ("[::1]:5000/repo", "[::1]:5000", "repo", "", ""),
    ("example.com/" + "a" * 255 + ":tag", "example.com", "a" * 255, "tag", ""),
    # the brief's examples
    ("ubuntu", "docker.io", "library/ubuntu", "", ""),
    ("ubuntu:16.04", "docker.io", "library/ubuntu", "16.04", ""),
    ("user/repo", "docker.io", "user/repo", "", ""),
    ("localhost:5000/x", "localhost:5000", "x", "", ""),
    ("127.0.0.1:5000/a/b:tag", "127.0.0.1:5000", "a/b", "tag", ""),
    ("[::1]:5000/x", "[::1]:5000", "x", "", ""),
    ("name@" + D256, "docker.io", "library/name", "", D256),
    ("name:tag@" + D256, "docker.io", "library/name", "tag", D256),
    # normalisation of the Docker Hub domain
    ("index.docker.io/foo", "docker.io", "library/foo", "", ""),
    ("index.docker.io/user/foo:1", "docker.io", "user/foo", "1", ""),
    ("docker.io/foo", "docker.io", "library/foo", "", ""),
    ("docker.io/library/foo/bar", "docker.io", "library/foo/bar", "", ""),
    # domain detection: localhost, ".", ":", uppercase
    ("localhost/foo", "localhost", "foo", "", ""),
    ("localhost:5000", "docker.io", "library/localhost", "5000", ""),  # Docker's FIXME: a single component
    ("localhost", "docker.io", "library/localhost", "", ""),
    ("Foo/bar", "Foo", "bar", "", ""),
    ("LOCALDOMAIN/library/debian", "LOCALDOMAIN", "library/debian", "", ""),
    ("test-com:8080/foo", "test-com:8080", "foo", "", ""),
    ("docker/migrator", "docker.io", "docker/migrator", "", ""),
    # separators and tags
    ("docker---rules/docker", "docker.io", "docker---rules/docker", "", ""),
    ("dock__er/docker", "docker.io", "dock__er/docker", "", ""),
    ("ubuntu:" + "A" * 128, "docker.io", "library/ubuntu", "A" * 128, ""),
    ("ubuntu:_x", "docker.io", "library/ubuntu", "_x", ""),
    ("ubuntu@sha384:" + "0" * 96, "docker.io", "library/ubuntu", "", "sha384:" + "0" * 96),
    ("ubuntu@sha512:" + "f" * 128, "docker.io", "library/ubuntu", "", "sha512:" + "f" * 128),
    ("docker.io/" + HEX64, "docker.io", "library/" + HEX64, "", ""),
    (HEX64 + ":tag", "docker.io", "library/" + HEX64, "tag", ""),
    ("thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "docker.io",
     "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "", ""),
]


@pytest.mark.parametrize("text,domain,path,tag,digest", VALID, ids=[v[0][:60] for v in VALID])
def test_valid_references(text, domain, path, tag, digest):
    ref = parse_normalized(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    assert ref.name == f"{domain}/{path}"
    expected = ref.name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    assert str(ref) == expected
    # The full form and the familiar form both parse back to the same thing.
    assert parse_normalized(str(ref)) == ref
    assert parse_normalized(ref.familiar()) == ref


# ---------------------------------------------------------------------------
# Errors: input -> message prefix (Docker's words), then the quoted input
# ---------------------------------------------------------------------------
INVALID = [
    ("", "invalid reference format"),
    (":justtag", "invalid reference format"),
    ("@" + D256, "invalid reference format"),
    ("repo@sha256:" + "f" * 34, "invalid checksum digest length"),
    ("repo@sha256:abc", "invalid checksum digest length"),
    ("repo@sha256:" + "f" * 65, "invalid checksum digest length"),
    ("validname@invaliddigest:" + F64, "unsupported digest algorithm"),
    ("validname@md5:" + "0" * 32, "unsupported digest algorithm"),
    ("repo@sha256:" + "F" * 64, "invalid checksum digest format"),
    ("repo@SHA256:" + F64, "invalid checksum digest format"),
    ("repo@sha256", "invalid checksum digest format"),
    ("repo@sha256:", "invalid checksum digest format"),
    ("repo@", "invalid checksum digest format"),
    ("repo@sha256:" + F64 + "@" + D256, "invalid checksum digest format"),
    ("Uppercase:tag", "repository name must be lowercase"),
    ("test:5000/Uppercase/lowercase:tag", "repository name must be lowercase"),
    ("docker/Docker", "repository name must be lowercase"),
    ("docker.io/docker/Docker", "repository name must be lowercase"),
    ("domain/" + "a" * 256 + ":tag", "repository name must not be more than 255 characters"),
    ("a" * 248, "repository name must not be more than 255 characters"),  # + "library/" = 256
    ("_".join(["this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255"] * 4) + "/docker",
     "repository name must not be more than 255 characters"),
    ("aa/asdf$$^/aa", "invalid reference format"),
    ("[2001:db8::1]", "invalid reference format"),
    ("[2001:db8::1]:5000", "invalid reference format"),
    ("[2001:db8::1]:tag", "invalid reference format"),
    ("[fe80::1%eth0]:5000/repo", "invalid reference format"),
    ("[fe80::1%@invalidzone]:5000/repo", "invalid reference format"),
    ("[2001:db8:3:4::192.0.2.33]:5000/debian", "invalid reference format"),
    ("fc00::1:5000/debian", "invalid reference format"),
    ("[fc00::1]", "invalid reference format"),
    ("[fc00::1]:5000", "invalid reference format"),
    ("https://github.com/docker/docker", "invalid reference format"),
    ("-docker", "invalid reference format"),
    ("-docker/docker", "invalid reference format"),
    ("-docker.io/docker/docker", "invalid reference format"),
    ("docker-/docker", "invalid reference format"),
    ("-docker-/docker", "invalid reference format"),
    ("docker///docker", "invalid reference format"),
    ("docker.io/docker///docker", "invalid reference format"),
    ("____/____", "invalid reference format"),
    ("_docker/_docker", "invalid reference format"),
    ("dock..er/docker", "invalid reference format"),
    ("dock_.er/docker", "invalid reference format"),
    ("dock-.er/docker", "invalid reference format"),
    ("docker/", "invalid reference format"),
    ("foo_bar.com/x", "invalid reference format"),  # Go: domain-less fallback; we refuse
    ("localhost:port/x", "invalid reference format"),
    ("ubuntu:-x", "invalid tag format"),
    ("ubuntu:.x", "invalid tag format"),
    ("ubuntu:", "invalid tag format"),
    ("ubuntu:" + "a" * 129, "invalid tag format"),
    ("ubuntu:a:b", "invalid tag format"),
    ("ubuntu:tag/x", "invalid reference format"),
    (" ubuntu", "invalid reference format"),
    ("ubuntu ", "invalid reference format"),
    ("ubuntu\n", "invalid reference format"),
    ("ubu ntu", "invalid reference format"),
    ("ubuntu;rm -rf /", "invalid reference format"),
    ("ubuntu:ta\u0261", "invalid tag format"),
    ("ubuntu:täg", "invalid tag format"),  # Go's \w is ASCII
    ("ubüntu", "invalid reference format"),
]


@pytest.mark.parametrize("text,reason", INVALID, ids=[repr(v[0][:50]) for v in INVALID])
def test_invalid_references(text, reason):
    e = err_of(text)
    assert isinstance(e, UsageError)
    assert e.message.startswith(reason), e.message
    assert len(e.message) < 300
    assert e.message.isprintable()
    assert e.hint and e.hint.isprintable()
    # The input is quoted (bounded) in the message.
    assert quote_input(text) in e.message or text == ""


@pytest.mark.parametrize("text", [HEX64, "a" * 64, "0" * 64])
def test_64_hex_is_refused_as_a_name(text):
    e = err_of(text)
    assert e.message == (f'invalid repository name ("{text}"), '
                         "cannot specify 64-byte hexadecimal strings")
    assert "ID" in e.hint


def test_empty_reference():
    e = err_of("")
    assert e.message == 'invalid reference format: the image reference is empty ("")'
    assert REFERENCE_SHAPE in e.hint


def test_lowercase_message_and_hint():
    e = err_of("Ubuntu")
    assert e.message == 'repository name must be lowercase: "Ubuntu"'
    assert 'Try "ubuntu"' in e.hint
    # Only the path is lowercased in the suggestion: domain and tag keep case.
    e = err_of("Registry.Example.com/Team/App:Latest")
    assert e.message.startswith("repository name must be lowercase")
    assert 'Try "Registry.Example.com/team/app:Latest"' in e.hint


def test_uppercase_plus_other_problem_is_reported_as_format_error():
    # Lowercasing would not fix it, so "must be lowercase" would mislead.
    assert err_of("FOO BAR").message.startswith("invalid reference format")
    assert err_of("Foo$/bar").message.startswith("invalid reference format")


def test_format_hints_are_specific():
    assert "spaces" in err_of(" ubuntu").hint
    assert "scheme" in err_of("https://example.com/app").hint
    assert "registry host" in err_of("foo_bar.com/x").hint
    assert REFERENCE_SHAPE in err_of("aa/asdf$$^/aa").hint
    assert "tag" in err_of("ubuntu:-x").hint
    assert "sha256" in err_of("ubuntu@sha256:abc").hint


def test_too_long_message():
    e = err_of("x" * 10_000)
    assert e.message.startswith("repository name must not be more than 255 characters: ")
    assert e.message.endswith('…"')
    assert len(e.message) < 300
    assert "10008" in e.hint  # the normalised path includes "library/"


def test_length_counts_the_path_not_the_domain():
    # distribution/reference since 2024: the domain is excluded.
    long_domain = ".".join(["a" * 60] * 5)  # 304 chars
    ref = parse_normalized(f"{long_domain}/{'b' * 255}")
    assert len(ref.path) == 255
    assert err_of(f"{long_domain}/{'b' * 256}").message.startswith("repository name must not")


def test_normalised_path_length_limit():
    assert parse_normalized("a" * 247).path == "library/" + "a" * 247  # 255
    err_of("a" * 248)


# ---------------------------------------------------------------------------
# normalize_test.go
# ---------------------------------------------------------------------------
VALID_REPO_NAMES = [
    "docker/docker", "library/debian", "debian", "localhost/library/debian", "localhost/debian",
    "LOCALDOMAIN/library/debian", "LOCALDOMAIN/debian", "docker.io/docker/docker",
    "docker.io/library/debian", "docker.io/debian", "index.docker.io/docker/docker",
    "index.docker.io/library/debian", "index.docker.io/debian", "127.0.0.1:5000/docker/docker",
    "127.0.0.1:5000/library/debian", "127.0.0.1:5000/debian", "192.168.0.1", "192.168.0.1:80",
    "192.168.0.1:8/debian", "192.168.0.2:25000/debian",
    "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
    "[fc00::1]:5000/docker", "[fc00::1]:5000/docker/docker", "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
    "docker.io/" + HEX64, "Docker/docker", "DOCKER/docker",
    "docker-rules/docker", "docker---rules/docker", "doc/docker", "d/docker", "jess/t", "dock__er/docker",
]


@pytest.mark.parametrize("name", VALID_REPO_NAMES)
def test_validate_reference_name_valid(name):
    parse_normalized(name)


@pytest.mark.parametrize("name", [
    "https://github.com/docker/docker", "docker/Docker", "-docker", "-docker/docker",
    "-docker.io/docker/docker", "docker///docker", "docker.io/docker/Docker",
    "docker.io/docker///docker", "[fc00::1]", "[fc00::1]:5000", "fc00::1:5000/debian",
    "[fe80::1%eth0]:5000/debian", "[2001:db8:3:4::192.0.2.33]:5000/debian", HEX64,
])
def test_validate_reference_name_invalid(name):
    err_of(name)


# TestParseRepositoryInfo: (remote name, familiar name, full name, ambiguous name, domain)
REPO_INFO = [
    ("fooo", "localhost/fooo", "localhost/fooo", "localhost/fooo", "localhost"),
    ("fooo/bar", "localhost/fooo/bar", "localhost/fooo/bar", "localhost/fooo/bar", "localhost"),
    ("fooo", "LOCALDOMAIN/fooo", "LOCALDOMAIN/fooo", "LOCALDOMAIN/fooo", "LOCALDOMAIN"),
    ("fooo/bar", "LOCALDOMAIN/fooo/bar", "LOCALDOMAIN/fooo/bar", "LOCALDOMAIN/fooo/bar", "LOCALDOMAIN"),
    ("fooo/bar", "fooo/bar", "docker.io/fooo/bar", "index.docker.io/fooo/bar", "docker.io"),
    ("library/ubuntu", "ubuntu", "docker.io/library/ubuntu", "library/ubuntu", "docker.io"),
    ("nonlibrary/ubuntu", "nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu", "", "docker.io"),
    ("other/library", "other/library", "docker.io/other/library", "", "docker.io"),
    ("private/moonbase", "127.0.0.1:8000/private/moonbase", "127.0.0.1:8000/private/moonbase", "", "127.0.0.1:8000"),
    ("privatebase", "127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase", "", "127.0.0.1:8000"),
    ("private/moonbase", "example.com/private/moonbase", "example.com/private/moonbase", "", "example.com"),
    ("privatebase", "example.com/privatebase", "example.com/privatebase", "", "example.com"),
    ("private/moonbase", "example.com:8000/private/moonbase", "example.com:8000/private/moonbase", "", "example.com:8000"),
    ("privatebasee", "example.com:8000/privatebasee", "example.com:8000/privatebasee", "", "example.com:8000"),
    ("library/ubuntu-12.04-base", "ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base",
     "index.docker.io/library/ubuntu-12.04-base", "docker.io"),
    ("library/foo", "foo", "docker.io/library/foo", "docker.io/foo", "docker.io"),
    ("library/foo/bar", "library/foo/bar", "docker.io/library/foo/bar", "", "docker.io"),
    ("store/foo/bar", "store/foo/bar", "docker.io/store/foo/bar", "", "docker.io"),
    ("bar", "Foo/bar", "Foo/bar", "", "Foo"),
    ("bar", "FOO/bar", "FOO/bar", "", "FOO"),
]


@pytest.mark.parametrize("remote,familiar,full,ambiguous,domain", REPO_INFO)
def test_parse_repository_info(remote, familiar, full, ambiguous, domain):
    for text in filter(None, (familiar, full, ambiguous)):
        ref = parse_normalized(text)
        assert ref.familiar_name == familiar
        assert ref.familiar() == familiar
        assert str(ref) == full
        assert ref.name == full
        assert ref.domain == domain
        assert ref.path == remote


def test_reference_with_tag_and_digest():
    short = "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
    ref = parse_normalized(short)
    assert str(ref) == "docker.io/library/" + short
    assert ref.is_tagged and ref.is_canonical and not ref.is_name_only
    assert ref.familiar() == short


@pytest.mark.parametrize("text,domain,path", [
    ("test.com/foo", "test.com", "foo"),
    ("test_com/foo", "docker.io", "test_com/foo"),
    ("docker/migrator", "docker.io", "docker/migrator"),
    ("test.com:8080/foo", "test.com:8080", "foo"),
    ("test-com:8080/foo", "test-com:8080", "foo"),
    ("foo", "docker.io", "library/foo"),
    ("xn--n3h.com/foo", "xn--n3h.com", "foo"),
    ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
    ("docker.io/foo", "docker.io", "library/foo"),
    ("docker.io/library/foo", "docker.io", "library/foo"),
    ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
])
def test_normalized_split_hostname(text, domain, path):
    ref = parse_normalized(text)
    assert (ref.domain, ref.path) == (domain, path)


# TestParseDockerRef -> Reference.docker_ref()
@pytest.mark.parametrize("text,expected", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:latest", "docker.io/library/busybox:latest"),
    ("busybox@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582",
     "docker.io/library/busybox@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/library/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/busybox:latest", "docker.io/library/busybox:latest"),
    ("library/busybox:latest", "docker.io/library/busybox:latest"),
    ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest"),
    ("gcr.io/library/busybox", "gcr.io/library/busybox:latest"),
    ("gcr.io/library/busybox:latest@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582",
     "gcr.io/library/busybox@sha256:e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582"),
])
def test_docker_ref(text, expected):
    out = parse_normalized(text).docker_ref()
    assert str(out) == expected
    assert parse_normalized(expected) == out


# ---------------------------------------------------------------------------
# Reference behaviour
# ---------------------------------------------------------------------------
def test_with_default_tag():
    assert str(parse_normalized("ubuntu").with_default_tag()) == "docker.io/library/ubuntu:latest"
    tagged = parse_normalized("ubuntu:22.04")
    assert tagged.with_default_tag() is tagged
    digested = parse_normalized("ubuntu@" + D256)
    assert digested.with_default_tag() is digested  # TagNameOnly: a digest is enough
    assert parse_normalized("ubuntu").with_default_tag().familiar() == "ubuntu:latest"


def test_trimmed():
    assert str(parse_normalized("a.io/x:1@" + D256).trimmed()) == "a.io/x"


@pytest.mark.parametrize("text,familiar", [
    ("docker.io/library/ubuntu:22.04", "ubuntu:22.04"),
    ("docker.io/user/repo", "user/repo"),
    ("docker.io/library/foo/bar", "library/foo/bar"),
    ("127.0.0.1:5000/x/y", "127.0.0.1:5000/x/y"),
    ("localhost/x", "localhost/x"),
    # Kept long: the short form would mean another registry / an ID.
    ("docker.io/a.b/c", "docker.io/a.b/c"),
    ("docker.io/localhost/c", "docker.io/localhost/c"),
    ("docker.io/library/" + HEX64, "docker.io/library/" + HEX64),
])
def test_familiar_forms_reparse(text, familiar):
    ref = parse_normalized(text)
    assert ref.familiar() == familiar
    assert parse_normalized(familiar) == ref


def test_direct_construction_is_validated_and_normalised():
    assert Reference("docker.io", "ubuntu") == parse_normalized("ubuntu")
    assert Reference("index.docker.io", "ubuntu", "1") == parse_normalized("ubuntu:1")
    for bad in [("", "x"), ("docker.io", "Ubuntu"), ("bad_host.com", "x"), ("a.io", "x", "-t"),
                ("a.io", "x", "", "sha256:abc"), ("a.io", "x\n"), ("a.io", "a" * 256)]:
        with pytest.raises(InvalidReference):
            Reference(*bad)


def test_reference_is_hashable_and_frozen():
    ref = parse_normalized("ubuntu")
    assert {ref, parse_normalized("docker.io/library/ubuntu")} == {ref}
    with pytest.raises(AttributeError):
        ref.tag = "x"  # type: ignore[misc]


# ---------------------------------------------------------------------------
# validate_tag / validate_digest
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("tag", ["latest", "TAG5", "1.0", "_x", "a" * 128, "v1.2.3-rc.1_b"])
def test_validate_tag_ok(tag):
    assert validate_tag(tag) == tag


@pytest.mark.parametrize("tag", ["", "-foo", ".foo", "a" * 129, "a b", "a/b", "a:b", "a@b", "tä", "x\n"])
def test_validate_tag_bad(tag):
    with pytest.raises(InvalidReference) as info:
        validate_tag(tag)
    assert info.value.message.startswith("invalid tag format: ")


@pytest.mark.parametrize("d", [D256, "sha384:" + "a" * 96, "sha512:" + "0" * 128, REDIS_DGST])
def test_validate_digest_ok(d):
    assert validate_digest(d) == d


@pytest.mark.parametrize("d,reason", [
    ("foo", "invalid checksum digest format"),
    (":" + F64, "invalid checksum digest format"),
    ("sha256:", "invalid checksum digest format"),
    ("sha256:" + "g" * 64, "invalid checksum digest format"),
    ("sha256:" + "F" * 64, "invalid checksum digest format"),
    ("sha256:" + "f" * 63, "invalid checksum digest length"),
    ("sha512:" + "f" * 64, "invalid checksum digest length"),
    ("md5:" + "f" * 32, "unsupported digest algorithm"),
    ("invaliddigest:" + F64, "unsupported digest algorithm"),
    ("Sha256:" + F64, "invalid checksum digest format"),
])
def test_validate_digest_bad(d, reason):
    with pytest.raises(InvalidReference) as info:
        validate_digest(d)
    assert info.value.message.startswith(reason + ": ")


# ---------------------------------------------------------------------------
# parse_image_arg: IDs, prefixes and references (TestParseAnyReference)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("text,equivalent", [
    ("redis", "docker.io/library/redis"),
    ("redis:latest", "docker.io/library/redis:latest"),
    ("docker.io/library/redis:latest", "docker.io/library/redis:latest"),
    ("redis@" + REDIS_DGST, "docker.io/library/redis@" + REDIS_DGST),
    ("dmcgowan/myapp", "docker.io/dmcgowan/myapp"),
    ("dmcgowan/myapp:latest", "docker.io/dmcgowan/myapp:latest"),
    ("dmcgowan/myapp@" + REDIS_DGST, "docker.io/dmcgowan/myapp@" + REDIS_DGST),
    ("abc", "docker.io/library/abc"),  # hex, but shorter than MIN_ID_PREFIX_LEN
    ("cafe:1", "docker.io/library/cafe:1"),
    ("ubuntu", "docker.io/library/ubuntu"),
])
def test_image_arg_references(text, equivalent):
    arg = parse_image_arg(text)
    assert isinstance(arg, Reference)
    assert str(arg) == equivalent


@pytest.mark.parametrize("text", [REDIS_DGST[7:], REDIS_DGST])
def test_image_arg_full_ids(text):
    arg = parse_image_arg(text)
    assert arg == ImageId(REDIS_DGST[7:], full=True)
    assert arg.reference is None
    assert str(arg) == REDIS_DGST and arg.digest == REDIS_DGST
    assert arg.short == REDIS_DGST[7:19]


def test_image_arg_63_hex_is_prefix_and_name():
    # TestParseAnyReference: 63 hex digits is a name ... and (daemon) an ID prefix.
    text = REDIS_DGST[7:-1]
    arg = parse_image_arg(text)
    assert isinstance(arg, ImageId) and not arg.full and arg.value == text
    assert str(arg.reference) == "docker.io/library/" + text


@pytest.mark.parametrize("text,value,name_reading", [
    ("dbcc1", "dbcc1", "docker.io/library/dbcc1"),
    ("cafe", "cafe", "docker.io/library/cafe"),
    ("1234", "1234", "docker.io/library/1234"),
    ("sha256:dbcc1c35", "dbcc1c35", "docker.io/library/sha256:dbcc1c35"),
])
def test_image_arg_prefixes_carry_the_name_reading(text, value, name_reading):
    arg = parse_image_arg(text)
    assert arg == ImageId(value, full=False, reference=parse_normalized(text))
    assert str(arg.reference) == name_reading
    assert len(arg.value) >= MIN_ID_PREFIX_LEN


@pytest.mark.parametrize("text,reason", [
    ("", "invalid reference format"),
    ("DBCC1C35", "repository name must be lowercase"),
    ("sha512:" + "f" * 128, "unsupported digest algorithm"),
    ("abc def", "invalid reference format"),
])
def test_image_arg_errors(text, reason):
    with pytest.raises(InvalidReference) as info:
        parse_image_arg(text)
    assert info.value.message.startswith(reason)


def test_uppercase_id_gets_a_lowercase_hint():
    with pytest.raises(InvalidReference) as info:
        parse_image_arg("DBCC1C35")
    assert 'Try "dbcc1c35"' in info.value.hint


def test_image_id_validation():
    for bad in [("xyz", False), ("ABCD", False), ("a" * 64, False), ("abcd", True), ("a" * 65, True), ("", False)]:
        with pytest.raises(InvalidReference):
            ImageId(*bad)


# ---------------------------------------------------------------------------
# resolve_id_prefix
# ---------------------------------------------------------------------------
IDS = ["sha256:" + "ab12" + "0" * 60, "sha256:" + "ab34" + "0" * 60, "sha256:" + "ab56" + "0" * 60,
       "sha256:" + "cd" + "1" * 62]


def test_resolve_unique():
    assert resolve_id_prefix("cd", IDS) == IDS[3]
    assert resolve_id_prefix("ab1", IDS) == IDS[0]
    assert resolve_id_prefix("sha256:ab3", IDS) == IDS[1]
    assert resolve_id_prefix("AB5", IDS) == IDS[2]  # hex is case-insensitive
    assert resolve_id_prefix(IDS[3], IDS) == IDS[3]  # a full ID matches itself
    assert resolve_id_prefix("ab12", [i[7:] for i in IDS]) == IDS[0][7:]  # returned as given


def test_resolve_none():
    assert resolve_id_prefix("ef", IDS) is None
    assert resolve_id_prefix("ab", []) is None


def test_resolve_ambiguous():
    with pytest.raises(AmbiguousImageId) as info:
        resolve_id_prefix("ab", IDS)
    assert info.value.message == 'ambiguous image ID prefix "ab": matches 3 images'
    assert isinstance(info.value, UsageError)
    assert "more characters" in info.value.hint


def test_resolve_duplicates_count_once():
    assert resolve_id_prefix("cd", IDS + [IDS[3], IDS[3][7:]]) == IDS[3]


@pytest.mark.parametrize("bad", ["", "sha256:", "xyz", "ab cd", "a" * 65])
def test_resolve_rejects_non_hex(bad):
    with pytest.raises(InvalidReference):
        resolve_id_prefix(bad, IDS)


def test_resolve_accepts_a_generator():
    assert resolve_id_prefix("cd", (i for i in IDS)) == IDS[3]


# ---------------------------------------------------------------------------
# quote_input
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("raw,quoted", [
    ("ubuntu", '"ubuntu"'),
    ("", '""'),
    ('a"b\\c', '"a\\"b\\\\c"'),
    ("a\nb\tc\rd\0e", '"a\\nb\\tc\\rd\\0e"'),
    ("\x1b[31m", '"\\x1b[31m"'),
    ("\u202eevil", '"\\u202eevil"'),  # bidi override
    ("a\u200bb", '"a\\u200bb"'),  # zero-width space
    ("e\u0301", '"e\\u0301"'),  # combining mark
    ("🐳ｕｂｕｎｔｕ", '"🐳ｕｂｕｎｔｕ"'),  # printable stays readable
    ("\U000e0001", '"\\U000e0001"'),  # language tag (format char)
])
def test_quote_input(raw, quoted):
    assert quote_input(raw) == quoted


def test_quote_input_truncates():
    q = quote_input("x" * 10_000)
    assert q == '"' + "x" * 64 + '…"'
    q = quote_input("\0" * 10_000)
    assert len(q) < 80 and q.endswith('…"')
