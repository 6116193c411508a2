"""Secret fields encrypted at rest, with a key the database never holds.

With a key (`Engine(secrets_key=...)`, `Client(secrets_key=...)` or `FLOWSTORE_SECRETS_KEY`),
the value under every secret field (`config.secret_fields`, an engine's `secret_fields`) is
stored as `{"$sealed": "<Fernet token>"}` wherever the engine stores it: a run's inputs and
output, a node's inputs and output, a map item's result, a cached output. The processes that
hold the key get the values back (to resume a run, or when they read one); the database, its
backups and anyone who queries it see only the tokens. Errors and logs are redacted as before
(`redaction.py`). Tokens are Fernet's (AES-128-CBC with HMAC-SHA256, from the `cryptography`
package: `pip install 'flowstore[secrets]'`); `flowstore secrets key` makes a key.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from typing import Any, Final

from flowstore.errors import ConfigurationError
from flowstore.store import serde
from flowstore.store.records import UNSET, Change, EventChange, NodeChange, RunChange

__all__ = ["KEY_VARIABLE", "SEALED", "Sealer", "new_secrets_key"]

KEY_VARIABLE: Final = "FLOWSTORE_SECRETS_KEY"
SEALED: Final = "$sealed"
_SEALED_EVENTS = frozenset({"map_item"})


def new_secrets_key() -> str:
    """A new random key, as `FLOWSTORE_SECRETS_KEY` takes it."""
    key: bytes = _fernet_module().Fernet.generate_key()
    return key.decode()


def _fernet_module() -> Any:
    try:
        from cryptography import fernet
    except ImportError:
        raise ConfigurationError(
            "encrypting secret fields needs the cryptography package: "
            "pip install 'flowstore[secrets]'"
        ) from None
    return fernet


class Sealer:
    """Encrypts the values of secret fields before they are stored; decrypts sealed values.

    Args:
        key: A Fernet key (`new_secrets_key`).
        fields: The secret field names (matched whole, without regard to case); a sealer
            without fields only opens what others sealed.
    """

    def __init__(self, key: str | bytes, fields: Iterable[str] = ()) -> None:
        fernet = _fernet_module()
        try:
            self._fernet = fernet.Fernet(key)
        except (ValueError, TypeError):
            raise ConfigurationError(
                f"the secrets key is not a Fernet key (32 url-safe base64-encoded bytes); "
                f"make one with `flowstore secrets key` and set {KEY_VARIABLE}"
            ) from None
        self._invalid = fernet.InvalidToken
        self._fields = frozenset(field.lower() for field in fields)

    @classmethod
    def of(cls, key: str | bytes | None, *field_lists: Iterable[str]) -> Sealer | None:
        """A sealer for `key` (else `FLOWSTORE_SECRETS_KEY`) and the union of `field_lists`;
        None without a key."""
        key = key or os.environ.get(KEY_VARIABLE)
        if not key:
            return None
        return cls(key, [field for fields in field_lists for field in fields])

    def for_fields(self, *field_lists: Iterable[str]) -> Sealer:
        """This key, with these secret fields (a run's)."""
        sealer = Sealer.__new__(Sealer)
        sealer._fernet, sealer._invalid = self._fernet, self._invalid
        sealer._fields = frozenset(f.lower() for fields in field_lists for f in fields)
        return sealer

    @property
    def fields(self) -> frozenset[str]:
        """The secret field names it seals."""
        return self._fields

    def seal(self, value: Any) -> Any:
        """`value` (JSON data, or its stored text) with each secret field's value sealed."""
        if not self._fields:
            return value
        # As JSON first: a secret field may sit inside a model or a dataclass.
        encoded = serde.encode(value, what="a value with secret fields")
        data = serde.decode(encoded)
        sealed = self._seal(data)
        return value if sealed is data else serde.encode(sealed, what="a sealed value")

    def open(self, value: Any) -> Any:
        """`value` with every sealed value decrypted.

        Raises:
            ConfigurationError: A value was sealed with another key.
        """
        if isinstance(value, dict):
            if len(value) == 1 and isinstance(value.get(SEALED), str):
                try:
                    return serde.decode(self._fernet.decrypt(value[SEALED].encode()))
                except self._invalid:
                    raise ConfigurationError(
                        "a sealed value does not open with this secrets key: it was sealed "
                        f"with another one (check {KEY_VARIABLE})"
                    ) from None
            return {key: self.open(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.open(item) for item in value]
        return value

    def changes(self, changes: Sequence[Change]) -> list[Change]:
        """`changes` as they may be stored: node inputs and outputs, run outputs and map
        item results sealed."""
        return [self._change(change) for change in changes]

    def _change(self, change: Change) -> Change:
        if isinstance(change, NodeChange):
            values = {
                name: self.seal(getattr(change, name))
                for name in ("input", "output")
                if getattr(change, name) is not UNSET
            }
            return dataclasses.replace(change, **values) if values else change
        if isinstance(change, RunChange) and change.output is not UNSET:
            return dataclasses.replace(change, output=self.seal(change.output))
        if isinstance(change, EventChange) and change.name in _SEALED_EVENTS:
            return dataclasses.replace(change, payload=self.seal(change.payload))
        return change

    def _seal(self, value: Any) -> Any:
        if isinstance(value, dict):
            if len(value) == 1 and SEALED in value:
                return value  # sealed already
            sealed = {
                key: self._token(item)
                if isinstance(key, str) and key.lower() in self._fields
                else self._seal(item)
                for key, item in value.items()
            }
            same = all(sealed[key] is value[key] for key in value)
            return value if same else sealed
        if isinstance(value, list):
            items = [self._seal(item) for item in value]
            return value if all(a is b for a, b in zip(items, value, strict=True)) else items
        return value

    def _token(self, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1 and SEALED in value:
            return value
        text = serde.encode(value, what="a secret field's value").text
        return {SEALED: self._fernet.encrypt(text.encode()).decode()}
