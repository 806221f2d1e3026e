"""The project's exceptions, all in this module (`worker` imports them from here too).

    Exception
    ├── UserError          a problem the user can fix; the CLI prints str() as one line, exit 2
    │   ├── StoreError     the store cannot be used (unreachable, no bucket, credentials, URL)
    │   │   ├── AccessDenied   its credentials do not allow what was asked
    │   │   └── KeyRefused     a key that is not safe, or leads out of the store
    │   ├── RegistryError  no usable model: none published, unknown, tampered or untrusted
    │   ├── DataError      MNIST missing, truncated or malformed
    │   └── OverLimit      an input over a size limit of the settings, refused whole
    ├── ObjectMissing (KeyError)   no object at a key: the caller says what that means
    ├── AlreadyExists      an exclusive create found its key taken
    ├── TooLarge           an object over the size it may be read at
    └── ValueError
        ├── DecodeError    not an image the worker can read, or over a limit
        ├── NoInkError     no ink that could be a digit
        └── AlignError     a page on which the template's boxes are not found

The last six are what one input can fail with: a worker turns each into that input's one-line
`error` (worker.reading.pipeline.Failure) and reads on; they never stop a chunk.
"""


class UserError(Exception):
    """A problem the user can fix (bad input, missing service, missing model); str() says how."""


class StoreError(UserError):
    """The store cannot be used (unreachable, missing bucket, no credentials, bad URL)."""


class AccessDenied(StoreError):
    """The store's credentials do not allow what was asked."""


class KeyRefused(StoreError):
    """The store refuses a key: not a safe relative key, or one leading out of the store."""


class RegistryError(UserError):
    """No usable model: none published, unknown version, or a file that fails verification or
    will not load."""


class DataError(UserError):
    """MNIST is missing, truncated or malformed."""


class OverLimit(UserError):
    """An input over a limit of the settings (its bytes, an archive's entries or unpacked
    bytes), refused whole before anything is queued; the HTTP API answers 413."""


class ObjectMissing(KeyError):
    """The requested key does not exist in the store."""


class AlreadyExists(Exception):
    """An exclusive create found the key already taken."""


class TooLarge(Exception):
    """An object is over the size it may be read at; str() gives both sizes."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size:,} bytes, over the limit of {limit:,}")


class DecodeError(ValueError):
    """The bytes are not an image this worker can read; str() is the per-image error."""


class NoInkError(ValueError):
    """The image holds no ink that could be a digit."""


class AlignError(ValueError):
    """The template's boxes are not found on the page; str() is a one-line message."""
