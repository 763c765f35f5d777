"""bot.engine.map_error on docker-py exceptions built the way docker-py builds
them (no engine needed), plus the small conversions of the adapter."""

from __future__ import annotations

import json
import socket

import docker.errors
import pytest
import requests
import urllib3.exceptions

from bot.engine import (
    DockerEngine,
    _encode_filters,
    _summary,
    map_error,
    map_stream_error,
)
from bot.engine_pull import _event
from handlers import errors as E
from handlers.replies import Status

HOST = "unix:///run/dockhand-test/docker.sock"


def api_error(status: int, message: str | None, *, reason: str = "", url: str = "http+docker://localhost/v1.41/x",
              body: str | None = None) -> docker.errors.APIError:
    """Raise an HTTP error through docker-py's own factory, as its client does."""
    response = requests.Response()
    response.status_code = status
    response.reason = reason or {400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
                                 409: "Conflict", 500: "Internal Server Error"}.get(status, "Error")
    response.url = url
    if body is None:
        body = json.dumps({"message": message}) if message is not None else ""
    response._content = body.encode()
    response.encoding = "utf-8"
    try:
        response.raise_for_status()
    except requests.exceptions.HTTPError as http_error:
        try:
            docker.errors.create_api_error_from_http_exception(http_error)
        except docker.errors.APIError as exc:
            return exc
    raise AssertionError("no error raised")


def chained(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


def no_repr(message: str) -> None:
    assert "Error(" not in message and "<" not in message and "Traceback" not in message, message


# --- the engine cannot be asked --------------------------------------------

def test_missing_socket_during_version_negotiation_is_unreachable():
    cause = requests.exceptions.ConnectionError(
        urllib3.exceptions.ProtocolError("Connection aborted.", FileNotFoundError(2, "No such file or directory")))
    exc = chained(docker.errors.DockerException(f"Error while fetching server API version: {cause}"), cause)
    err = map_error(exc, host=HOST, operation="connect", timeout=60)
    assert type(err) is E.EngineUnreachable
    assert err.host == HOST
    assert err.message == (f"Cannot connect to the Docker daemon at {HOST}. Is the docker daemon running? "
                           "(No such file or directory)")
    assert f"DOCKER_HOST={HOST}" in err.hint
    assert err.status is Status.FAILED


def test_connection_refused_over_tcp_is_unreachable():
    refused = ConnectionRefusedError(111, "Connection refused")
    new_conn = chained(urllib3.exceptions.NewConnectionError(
        None, "Failed to establish a new connection: [Errno 111] Connection refused"), refused)
    retry = urllib3.exceptions.MaxRetryError(None, "/version", new_conn)
    exc = requests.exceptions.ConnectionError(retry)
    err = map_error(exc, host="tcp://10.0.0.9:2375", operation="info", timeout=5)
    assert type(err) is E.EngineUnreachable
    assert err.message.endswith("(Connection refused)")
    assert "tcp://10.0.0.9:2375" in err.message


def test_requests_connection_error_on_a_call_is_unreachable():
    exc = requests.exceptions.ConnectionError(
        urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer")))
    err = map_error(exc, host=HOST, operation="image list")
    assert type(err) is E.EngineUnreachable
    assert "(Connection reset by peer)" in err.message


def test_bare_file_not_found_is_unreachable():
    err = map_error(FileNotFoundError(2, "No such file or directory"), host=HOST, operation="info")
    assert type(err) is E.EngineUnreachable
    assert "No such file or directory" in err.message


def test_stream_cut_by_the_engine_is_unreachable():
    exc = urllib3.exceptions.ProtocolError("Response ended prematurely")
    err = map_error(exc, host=HOST, operation="image pull")
    assert type(err) is E.EngineUnreachable
    no_repr(err.message)


@pytest.mark.parametrize("exc", [
    requests.exceptions.ReadTimeout("UnixHTTPConnectionPool(host='localhost', port=None): Read timed out. (read timeout=1)"),
    requests.exceptions.Timeout("timed out"),
    requests.exceptions.ConnectionError(urllib3.exceptions.ReadTimeoutError(None, "/images/search", "Read timed out.")),
])
def test_timeouts(exc):
    err = map_error(exc, host=HOST, operation="image search", timeout=1.0)
    assert type(err) is E.EngineTimeout
    assert err.message == f"the engine at {HOST} did not answer within 1 s (image search)"
    assert "DOCKHAND_ENGINE_TIMEOUT" in err.hint


def test_timeout_while_negotiating_the_version():
    cause = requests.exceptions.ReadTimeout("Read timed out. (read timeout=2.5)")
    exc = chained(docker.errors.DockerException(f"Error while fetching server API version: {cause}"), cause)
    err = map_error(exc, host=HOST, operation="connect", timeout=2.5)
    assert type(err) is E.EngineTimeout
    assert err.message == f"the engine at {HOST} did not answer within 2.5 s (connect)"


def test_connect_timeout_is_unreachable_not_slow():
    exc = requests.exceptions.ConnectTimeout("Connection to 10.0.0.9 timed out. (connect timeout=5)")
    err = map_error(exc, host="tcp://10.0.0.9:2375", operation="info", timeout=5)
    assert type(err) is E.EngineUnreachable


def test_other_docker_exception_is_an_engine_error_with_its_words():
    exc = docker.errors.DockerException("Invalid bind address protocol: foo://x")
    err = map_error(exc, host="foo://x", operation="connect")
    assert type(err) is E.EngineError
    assert "Invalid bind address protocol: foo://x" in err.message


# --- the daemon said no ------------------------------------------------------

def test_image_not_found_keeps_the_daemon_message():
    exc = api_error(404, "No such image: x:latest")
    assert isinstance(exc, docker.errors.ImageNotFound)
    err = map_error(exc, host=HOST, operation="image inspect", ref="x:latest")
    assert type(err) is E.ImageNotFound
    assert err.message == "Error response from daemon: No such image: x:latest"
    assert "docker images" in err.hint


def test_image_not_found_of_an_inspect_keeps_the_qualified_part():
    # Engine 20.10 on GET /images/x/json
    exc = api_error(404, "no such image: 127.0.0.1:5000/nope: No such image: 127.0.0.1:5000/nope:latest")
    err = map_error(exc, host=HOST, operation="image inspect", ref="127.0.0.1:5000/nope")
    assert type(err) is E.ImageNotFound
    assert err.message == "Error response from daemon: No such image: 127.0.0.1:5000/nope:latest"


def test_image_not_found_without_body_names_the_ref():
    exc = api_error(404, None, body="")
    err = map_error(exc, host=HOST, operation="image remove", ref="x:latest")
    # docker-py only calls it ImageNotFound when the body says so
    assert type(err) in (E.ImageNotFound, E.EngineError)
    no_repr(err.message)


def test_manifest_not_found_on_pull():
    msg = "manifest for 127.0.0.1:5000/x:nope not found: manifest unknown: manifest unknown"
    exc = api_error(404, msg)
    assert type(exc) is docker.errors.NotFound
    err = map_error(exc, host=HOST, operation="image pull", ref="127.0.0.1:5000/x:nope")
    assert type(err) is E.ManifestNotFound
    assert err.message == "Error response from daemon: " + msg


def test_pull_access_denied_is_unauthorized_even_though_docker_py_says_image_not_found():
    msg = ("pull access denied for 127.0.0.1:5000/private, repository does not exist or may require "
           "'docker login': denied: requested access to the resource is denied")
    exc = api_error(404, msg)
    assert isinstance(exc, docker.errors.ImageNotFound)
    err = map_error(exc, host=HOST, operation="image pull")
    assert type(err) is E.RegistryUnauthorized
    assert err.message == "Error response from daemon: " + msg
    assert "docker login" in err.hint


@pytest.mark.parametrize("status,msg", [
    (500, 'Head "http://127.0.0.1:5999/v2/x/manifests/latest": no basic auth credentials'),
    (401, "unauthorized: authentication required"),
    (500, "Get http://127.0.0.1:5999/v2/: unauthorized: authentication required"),
])
def test_registry_unauthorized(status, msg):
    err = map_error(api_error(status, msg), host=HOST, operation="image pull")
    assert type(err) is E.RegistryUnauthorized
    assert err.message == "Error response from daemon: " + msg


def test_permission_denied_on_disk_is_not_a_registry_refusal():
    msg = "failed to register layer: open /var/lib/docker/x: permission denied"
    err = map_error(api_error(500, msg), host=HOST, operation="image pull")
    assert type(err) is E.EngineError
    assert type(map_stream_error(msg)) is E.EngineError


def test_401_outside_registry_operations_is_still_unauthorized():
    err = map_error(api_error(401, "unauthorized"), host=HOST, operation="info")
    assert type(err) is E.RegistryUnauthorized


@pytest.mark.parametrize("msg", [
    'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused',
    'Get "https://nosuch.invalid/v2/": dial tcp: lookup nosuch.invalid: no such host',
    'Get "https://10.1.1.1/v2/": dial tcp 10.1.1.1:443: i/o timeout',
])
@pytest.mark.parametrize("operation", ["image pull", "image search"])
def test_registry_unreachable(msg, operation):
    err = map_error(api_error(500, msg), host=HOST, operation=operation)
    assert type(err) is E.RegistryUnreachable
    assert err.message == "Error response from daemon: " + msg
    assert "registry" in err.hint


def test_connection_refused_outside_registry_ops_is_a_plain_engine_error():
    err = map_error(api_error(500, "dial tcp 127.0.0.1:1: connect: connection refused"), host=HOST,
                    operation="image remove")
    assert type(err) is E.EngineError


def test_conflict_names_the_containers():
    msg = ('conflict: unable to remove repository reference "127.0.0.1:5000/dockhand/used:latest" '
           "(must force) - container 4e6885b8d037 is using its referenced image 3c6e158d9804")
    exc = api_error(409, msg)
    assert type(exc) is docker.errors.APIError and exc.status_code == 409
    err = map_error(exc, host=HOST, operation="image remove")
    assert type(err) is E.Conflict
    assert err.containers == ("4e6885b8d037",)
    assert err.message == "Error response from daemon: " + msg
    assert "remove the container first" in err.hint


def test_conflict_without_containers():
    msg = ("conflict: unable to delete 3c6e158d9804 (must be forced) - image is referenced in multiple "
           "repositories")
    err = map_error(api_error(409, msg), host=HOST, operation="image remove")
    assert type(err) is E.Conflict
    assert err.containers == ()
    assert "every repository" in err.hint


def test_conflict_lists_each_container_once():
    msg = ("conflict: unable to delete 3c6e158d9804 (cannot be forced) - image is being used by running "
           "container 0123456789ab is using it; container 0123456789ab is using; container ba9876543210 is using")
    err = map_error(api_error(409, msg), host=HOST, operation="image remove")
    assert err.containers == ("0123456789ab", "ba9876543210")


@pytest.mark.parametrize("operation,msg", [
    ("image search", "Limit 0 is outside the range of [1, 100]"),
    ("image list", "Invalid filter 'bogus'"),
    ("image prune", "invalid filter 'dangling=maybe'"),
])
def test_bad_request_is_invalid_argument(operation, msg):
    err = map_error(api_error(400, msg), host=HOST, operation=operation)
    assert type(err) is E.InvalidArgument
    assert err.status is Status.USAGE
    assert err.message == "Error response from daemon: " + msg


def test_anything_else_is_an_engine_error_with_the_daemon_message():
    err = map_error(api_error(500, "layer does not exist"), host=HOST, operation="image remove")
    assert type(err) is E.EngineError
    assert err.message == "Error response from daemon: layer does not exist"


def test_error_body_that_is_not_json():
    err = map_error(api_error(502, None, body="bad gateway\n", reason="Bad Gateway"), host=HOST,
                    operation="info")
    assert type(err) is E.EngineError
    assert err.message == "Error response from daemon: bad gateway"


def test_error_without_body_says_the_status_not_a_repr():
    err = map_error(api_error(503, None, body="", reason="Service Unavailable"), host=HOST, operation="info")
    assert err.message == "Error response from daemon: 503 Service Unavailable"


def test_unknown_exception_is_an_engine_error_without_repr():
    err = map_error(ValueError("<object at 0x1>"), host=HOST, operation="info")
    assert type(err) is E.EngineError
    assert err.message == "info failed: ValueError"


def test_typed_errors_pass_through():
    original = E.ImageNotFound("Error response from daemon: No such image: a:b")
    assert map_error(original, host=HOST, operation="x") is original


# --- errors inside a 200 pull stream ------------------------------------------

@pytest.mark.parametrize("msg,cls", [
    ("manifest unknown: manifest unknown", E.ManifestNotFound),
    ("unauthorized: authentication required", E.RegistryUnauthorized),
    ('Get "http://127.0.0.1:1/v2/x/blobs/sha256:ab": dial tcp 127.0.0.1:1: connect: connection refused',
     E.RegistryUnreachable),
    ("filesystem layer verification failed for digest sha256:abc", E.EngineError),
])
def test_stream_errors(msg, cls):
    err = map_stream_error(msg)
    assert type(err) is cls
    assert err.message == msg  # the CLI prints stream errors without a prefix


def test_error_event_is_decoded():
    ev = _event({"errorDetail": {"message": "unexpected EOF"}, "error": "unexpected EOF"})
    assert ev.error == "unexpected EOF"
    ev = _event({"error": "only the short form"})
    assert ev.error == "only the short form"


def test_progress_event_is_decoded():
    ev = _event({"status": "Downloading", "id": "a1b2c3d4e5f6",
                 "progressDetail": {"current": 1024, "total": 4096}, "progress": "[==>  ]"})
    assert (ev.status, ev.id, ev.current, ev.total, ev.error) == ("Downloading", "a1b2c3d4e5f6", 1024, 4096, "")
    ev = _event({"status": "Pull complete", "id": "a1b2c3d4e5f6", "progressDetail": {}})
    assert (ev.current, ev.total) == (0, 0)


# --- conversions -----------------------------------------------------------

def test_filters_are_encoded_as_lists_of_strings():
    assert _encode_filters(None) is None
    assert _encode_filters({}) is None
    assert json.loads(_encode_filters({"dangling": ["true"], "label": ("a=b", "c"), "stars": [3],
                                       "is-official": [True], "reference": "x:*"})) == {
        "dangling": ["true"], "label": ["a=b", "c"], "stars": ["3"], "is-official": ["true"],
        "reference": ["x:*"]}


def test_summary_of_a_dangling_image():
    s = _summary({"Id": "sha256:" + "a" * 64, "RepoTags": None, "RepoDigests": ["<none>@<none>"],
                  "Created": 1700000000, "Size": 1234, "Containers": -1, "Labels": None, "ParentId": ""})
    assert s.repo_tags == () and s.repo_digests == ()
    assert s.labels == {} and s.containers == -1 and s.size == 1234 and s.created == 1700000000


# --- checks made before the engine is asked --------------------------------

@pytest.mark.parametrize("limit", [0, 101, -1, True])
async def test_search_limit_is_checked_before_calling(limit, tmp_path):
    engine = DockerEngine(f"unix://{tmp_path}/nothing.sock", timeout=1)
    try:
        with pytest.raises(E.InvalidArgument) as info:
            await engine.search("x", limit=limit)
        assert info.value.message == f"invalid limit {limit}: must be between 1 and 100"
        assert info.value.status is Status.USAGE
    finally:
        await engine.close()


async def test_pull_requires_a_tag(tmp_path):
    engine = DockerEngine(f"unix://{tmp_path}/nothing.sock", timeout=1)
    try:
        with pytest.raises(AssertionError):
            engine.pull("127.0.0.1:5000/x", "")
    finally:
        await engine.close()


async def test_unreachable_engine_without_any_engine(tmp_path):
    host = f"unix://{tmp_path}/nothing.sock"
    engine = DockerEngine(host, timeout=1)
    try:
        for _ in range(2):  # the client is not kept: each call tries again
            with pytest.raises(E.EngineUnreachable) as info:
                await engine.info()
            assert info.value.message == (
                f"Cannot connect to the Docker daemon at {host}. Is the docker daemon running? "
                "(No such file or directory)")
        # a pull reports the same, through its stream
        with pytest.raises(E.EngineUnreachable):
            async for _ in engine.pull("127.0.0.1:5000/x", "latest"):
                pass
    finally:
        await engine.close()


async def test_closed_engine_refuses_calls(tmp_path):
    engine = DockerEngine(f"unix://{tmp_path}/nothing.sock", timeout=1)
    await engine.close()
    await engine.close()  # twice is fine
    with pytest.raises(E.EngineError, match="closed"):
        await engine.info()
    assert all(not t.is_alive() for t in engine._executor._threads)


async def test_unix_socket_that_refuses(tmp_path):
    path = tmp_path / "refuse.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))  # bound but not listening: connect() is refused
    try:
        engine = DockerEngine(f"unix://{path}", timeout=1)
        try:
            with pytest.raises(E.EngineUnreachable) as info:
                await engine.version()
            assert info.value.message.endswith("(Connection refused)")
        finally:
            await engine.close()
    finally:
        s.close()


# --- a host label: people see the label, never the engine's address ----------------------------

def test_with_a_label_errors_name_it_and_never_the_address():
    import requests as _requests

    from bot.engine_errors import hide_address, map_error as _map_error
    from handlers.errors import EngineError as _EngineError, EngineUnreachable as _EngineUnreachable

    address = "unix:///run/secret-place/docker.sock"
    exc = _requests.exceptions.ConnectionError(FileNotFoundError(2, "No such file or directory"))
    err = _map_error(exc, host=address, operation="image list", label="prod-web-1")
    assert isinstance(err, _EngineUnreachable)
    assert err.message.startswith("Cannot connect to the Docker daemon at prod-web-1.")
    assert "secret-place" not in err.message + err.hint and "unix://" not in err.message + err.hint
    assert "prod-web-1" in err.hint and "log" in err.hint
    # any other text that carries the address, in any of its forms
    odd = _map_error(RuntimeError("gave up on /run/secret-place/docker.sock"), host=address,
                     operation="info", label="prod-web-1")
    assert "secret-place" not in odd.message and "prod-web-1" in odd.message
    tcp = hide_address(_EngineError("dial tcp 10.1.2.3:2376: i/o timeout", "check tcp://10.1.2.3:2376"),
                       "tcp://10.1.2.3:2376", "db-2")
    assert "10.1.2.3" not in tcp.message + tcp.hint and "db-2" in tcp.message
    # without a label, nothing changes: the CLI's words with the address
    plain = _map_error(exc, host=address, operation="image list")
    assert address in plain.message and f"DOCKER_HOST={address}" in plain.hint
