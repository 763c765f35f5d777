"""Typed, platform-neutral errors.

The engine adapter (``bot/engine.py``) maps docker-py and transport failures
onto these; handlers turn them into an :class:`~handlers.replies.ErrorPart`
with the CLI's wording (``message``) and an actionable ``hint``. No error
ever reaches a person as a traceback or a Python repr.
"""

from __future__ import annotations

from .replies import Status


class DockhandError(Exception):
    status = Status.FAILED
    default_hint = ""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = self.default_hint if hint is None else hint


class UsageError(DockhandError):
    """The command line is wrong: unknown command or flag, bad argument."""

    status = Status.USAGE


class InvalidReference(UsageError):
    """An image reference that does not follow the distribution grammar."""


class EngineError(DockhandError):
    """The engine was asked and said no, or could not be asked."""


class EngineUnreachable(EngineError):
    def __init__(self, host: str, detail: str = "", hint: str | None = None):
        msg = f"Cannot connect to the Docker daemon at {host}. Is the docker daemon running?"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg, hint if hint is not None else (
            f"Dockhand tried DOCKER_HOST={host}. Start the engine there, or point "
            "DOCKER_HOST at a running one (`unix:///path/to/docker.sock`, `tcp://HOST:2376`), "
            "then check it with `docker info`."))
        self.host = host
        self.detail = detail  # why, in words (the OS's reason, or what TLS or ssh said)


class EngineTimeout(EngineError):
    default_hint = ("The engine is slow or stuck. Check `docker info` on the host; "
                    "raise DOCKHAND_ENGINE_TIMEOUT if big operations need longer.")


class ImageNotFound(EngineError):
    default_hint = ("Check the name with `docker images`; an image ID may be shortened to any "
                    "unambiguous prefix of at least 4 characters.")


class AmbiguousImageId(UsageError):
    default_hint = "Give more characters of the ID (12 are shown by `docker images`)."


class ManifestNotFound(EngineError):
    default_hint = "The registry has no such tag: check the tag, or search for the repository with `docker search`."


class Conflict(EngineError):
    """409 from the engine, e.g. an image a container still uses."""

    def __init__(self, message: str, containers: tuple[str, ...] = (), hint: str | None = None):
        super().__init__(message, hint if hint is not None else (
            "A container uses this image: remove the container first, or add -f/--force "
            "to remove the image anyway." if containers else
            "Add -f/--force to remove the image from every repository that references it."))
        self.containers = containers


class RegistryUnreachable(EngineError):
    default_hint = "The engine could not reach the registry: check the registry address and the host's network or proxy."


class RegistryUnauthorized(EngineError):
    default_hint = ("The registry refused access: the repository may be private or not exist. "
                    "Log in on the host with `docker login REGISTRY`, then try again.")


class InvalidArgument(EngineError):
    """The engine rejected a parameter (400): a bad limit or filter."""

    status = Status.USAGE
