"""Progress bars for the long loops (``tqdm.auto``: a widget in Jupyter, text in a terminal).

``progress=False`` hides a bar; so does the environment variable ``TQDM_DISABLE=1`` (tqdm's own
switch, which tqdm ignores once a caller passes ``disable`` explicitly, so it is honoured here).
The test suite sets it for nbval, whose committed outputs carry no progress bars.
"""

import os

from tqdm.auto import tqdm


def disabled_by_env() -> bool:
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


def progress_bar(iterable=None, *, desc: str, progress: bool = True, leave: bool = False, **kw):
    """``tqdm(iterable, desc=desc, ...)``, hidden when ``progress`` is false or TQDM_DISABLE is set."""
    return tqdm(iterable, desc=desc, disable=not progress or disabled_by_env(), leave=leave, **kw)
