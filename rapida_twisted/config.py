# -*- test-case-name: tests.test_config -*-
"""
The assistants file (C{--assistants}, TOML) and provider credentials.

Pure: a path or TOML text in, frozen objects out. Environment fallbacks
come from a mapping the caller passes, never from C{os.environ} directly.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: assistant kinds the gateway knows how to run
ASSISTANT_KINDS = frozenset({"echo", "link", "python"})

#: ids that may appear as an assistant path segment
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class ConfigError(ValueError):
    """
    The assistants file is unreadable or invalid; the message says where.
    """


@dataclass(frozen=True)
class AssistantConfig:
    """
    One C{[[assistants]]} entry.
    """

    id: str
    kind: str = "echo"
    numbers: tuple[str, ...] = ()
    sampleRate: int = 16000
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TwilioCredentials:
    account_sid: str = ""
    auth_token: str = ""


@dataclass(frozen=True)
class VonageCredentials:
    application_id: str = ""
    private_key_file: str = ""
    signature_secret: str = ""


@dataclass(frozen=True)
class ExotelCredentials:
    api_key: str = ""
    api_token: str = ""
    account_sid: str = ""
    stream_username: str = ""
    stream_password: str = ""
    allow_from: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    #: minimum outbound media chunk in ms (0: Exotel's documented 3.2 KB)
    chunk_ms: int = 0


@dataclass(frozen=True)
class SipSettings:
    """
    C{[sip]} table: digest credentials, source allowlist, limits.
    """

    realm: str = "rapida"
    users: Mapping[str, str] = field(default_factory=dict)
    allow_from: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    max_dialogs: int = 2000
    rate_limit: float = 200.0


@dataclass(frozen=True)
class GatewayConfig:
    """
    Everything the assistants file (plus environment fallbacks) configures.
    """

    assistants: Mapping[str, AssistantConfig]
    twilio: TwilioCredentials = TwilioCredentials()
    vonage: VonageCredentials = VonageCredentials()
    exotel: ExotelCredentials = ExotelCredentials()
    sip: SipSettings = SipSettings()
    #: assistant for AudioSocket connects with an unknown UUID; "" refuses them
    audiosocket_assistant: str = ""

    def assistant(self, assistantId: str) -> AssistantConfig | None:
        return self.assistants.get(assistantId)

    def assistantForNumber(self, number: str) -> AssistantConfig | None:
        """
        The assistant that lists C{number} (compared without spaces and
        with or without a leading C{+}).
        """
        wanted = _normaliseNumber(number)
        if not wanted:
            return None
        for assistant in self.assistants.values():
            for candidate in assistant.numbers:
                if _normaliseNumber(candidate) == wanted:
                    return assistant
        return None


def _normaliseNumber(number: str) -> str:
    return "".join(ch for ch in number if ch.isalnum())


ECHO = AssistantConfig(id="echo", kind="echo")


def _str(table: Mapping[str, Any], key: str, where: str, default: str = "") -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key} must be a string")
    return value


def _networks(
    table: Mapping[str, Any], where: str
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    raw = table.get("allow_from", [])
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise ConfigError(f"{where}.allow_from must be a list of networks")
    nets = []
    for item in raw:
        try:
            nets.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError as e:
            raise ConfigError(f"{where}.allow_from: {e}") from None
    return tuple(nets)


def _chunkMs(table: Mapping[str, Any]) -> int:
    value = table.get("chunk_ms", 0)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 5000:
        raise ConfigError("providers.exotel.chunk_ms must be an integer from 0 to 5000")
    return value


def _assistant(entry: Any, index: int) -> AssistantConfig:
    where = f"assistants[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a table")
    ident = entry.get("id")
    if not isinstance(ident, str) or not ident or not set(ident) <= _ID_CHARS:
        raise ConfigError(f"{where}.id must be a non-empty string of letters, digits, -, _ or .")
    kind = _str(entry, "kind", where, "echo")
    if kind not in ASSISTANT_KINDS:
        raise ConfigError(
            f"{where}.kind {kind!r} is not one of {', '.join(sorted(ASSISTANT_KINDS))}"
        )
    numbers = entry.get("numbers", [])
    if not isinstance(numbers, list) or not all(isinstance(n, str) for n in numbers):
        raise ConfigError(f"{where}.numbers must be a list of strings")
    rate = entry.get("sample_rate", 16000)
    if rate not in (8000, 16000, 24000):
        raise ConfigError(f"{where}.sample_rate must be 8000, 16000 or 24000")
    options = entry.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError(f"{where}.options must be a table")
    return AssistantConfig(
        id=ident, kind=kind, numbers=tuple(numbers), sampleRate=rate, options=options
    )


def parseConfig(text: str, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """
    Parse assistants-file TOML; provider credentials fall back to the
    environment variables of SPEC §3 found in C{environ}.
    """
    env = environ or {}
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}") from None
    assistants: dict[str, AssistantConfig] = {"echo": ECHO}
    entries = data.get("assistants", [])
    if not isinstance(entries, list):
        raise ConfigError("assistants must be an array of tables ([[assistants]])")
    for index, entry in enumerate(entries):
        assistant = _assistant(entry, index)
        assistants[assistant.id] = assistant
    providers = data.get("providers", {})
    if not isinstance(providers, dict):
        raise ConfigError("providers must be a table")

    def table(name: str) -> Mapping[str, Any]:
        value = providers.get(name, {})
        if not isinstance(value, dict):
            raise ConfigError(f"providers.{name} must be a table")
        return value

    tw, vo, ex = table("twilio"), table("vonage"), table("exotel")
    twilio = TwilioCredentials(
        account_sid=_str(tw, "account_sid", "providers.twilio", env.get("TWILIO_ACCOUNT_SID", "")),
        auth_token=_str(tw, "auth_token", "providers.twilio", env.get("TWILIO_AUTH_TOKEN", "")),
    )
    vonage = VonageCredentials(
        application_id=_str(
            vo, "application_id", "providers.vonage", env.get("VONAGE_APPLICATION_ID", "")
        ),
        private_key_file=_str(
            vo, "private_key_file", "providers.vonage", env.get("VONAGE_PRIVATE_KEY_FILE", "")
        ),
        signature_secret=_str(
            vo, "signature_secret", "providers.vonage", env.get("VONAGE_SIGNATURE_SECRET", "")
        ),
    )
    exotel = ExotelCredentials(
        api_key=_str(ex, "api_key", "providers.exotel", env.get("EXOTEL_API_KEY", "")),
        api_token=_str(ex, "api_token", "providers.exotel", env.get("EXOTEL_API_TOKEN", "")),
        account_sid=_str(ex, "account_sid", "providers.exotel", env.get("EXOTEL_ACCOUNT_SID", "")),
        stream_username=_str(ex, "stream_username", "providers.exotel"),
        stream_password=_str(ex, "stream_password", "providers.exotel"),
        allow_from=_networks(ex, "providers.exotel"),
        chunk_ms=_chunkMs(ex),
    )
    sipTable = data.get("sip", {})
    if not isinstance(sipTable, dict):
        raise ConfigError("sip must be a table")
    users = sipTable.get("users", {})
    if not isinstance(users, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in users.items()
    ):
        raise ConfigError("sip.users must be a table of username = password strings")
    sip = SipSettings(
        realm=_str(sipTable, "realm", "sip", "rapida"),
        users=users,
        allow_from=_networks(sipTable, "sip"),
        max_dialogs=int(sipTable.get("max_dialogs", 2000)),
        rate_limit=float(sipTable.get("rate_limit", 200.0)),
    )
    audiosocket = data.get("audiosocket", {})
    if not isinstance(audiosocket, dict):
        raise ConfigError("audiosocket must be a table")
    unannounced = _str(audiosocket, "assistant", "audiosocket")
    if unannounced and unannounced not in assistants:
        raise ConfigError(f"audiosocket.assistant {unannounced!r} is not a configured assistant")
    return GatewayConfig(
        assistants=assistants,
        twilio=twilio,
        vonage=vonage,
        exotel=exotel,
        sip=sip,
        audiosocket_assistant=unannounced,
    )


def loadConfig(path: str | None, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """
    Read the assistants file at C{path} (None: built-in defaults only).
    """
    if path is None:
        return parseConfig("", environ)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read assistants file {path!r}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"assistants file {path!r} is not UTF-8") from None
    try:
        return parseConfig(text, environ)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
