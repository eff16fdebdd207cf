"""Every file the project writes, written atomically.

A file is written to a temporary name in its own folder, flushed to the
disk and renamed over the target: a reader sees the previous complete file
or the new complete file, never half of one. A write that fails (a full
disk, a file-size limit, a read-only folder) removes its temporary file,
leaves the previous file as it was and raises ``WriteError``, one line
naming the file.
"""

from __future__ import annotations

import errno
import os
from typing import Union


class WriteError(OSError):
  """A file could not be written; the previous one, if any, is intact."""


def _reason(error: OSError) -> str:
  if error.errno is not None:
    return os.strerror(error.errno)
  return str(error) or type(error).__name__


def write_atomically(path: str, data: Union[bytes, str]) -> str:
  """Writes ``data`` (str as UTF-8) to ``path`` atomically; returns path.

  Makes the folder if needed. Raises ``WriteError`` on failure, with the
  target unchanged.
  """
  payload = data.encode() if isinstance(data, str) else bytes(data)
  folder = os.path.dirname(os.path.abspath(path))
  tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}")
  try:
    os.makedirs(folder, exist_ok=True)
    with open(tmp, "wb") as f:
      f.write(payload)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except OSError as e:
    try:
      os.remove(tmp)
    except OSError:
      pass
    kept = ("the previous file is unchanged" if os.path.exists(path)
            else "nothing was written")
    raise WriteError(e.errno or errno.EIO,
                     f"cannot write {path} ({_reason(e)}); {kept}. Free "
                     "space or pass a writable folder, then run the same "
                     "command again.") from None
  return path
