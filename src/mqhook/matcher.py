"""Chooses the topic-filter trie: the compiled one from ext/topic_trie.pyx when it is built, else the
pure-Python reference in ``mqhook._trie_py``. Both have the same API and follow the same matching
rules (MQTT section 4.7: '+', '#', empty levels, and '$' topics [MQTT-4.7.2-1]).

- ``TopicTrie``: the class to use.
- ``IMPLEMENTATION``: ``"cython"`` or ``"python"``, for logs, metrics and the admin API.
- ``PyTopicTrie``: always the Python reference (tests compare the two).

Setting the environment variable ``MQHOOK_PURE_PYTHON=1`` forces the Python trie. When the extension
is missing, one warning says so at import, with the command that builds it.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from mqhook._trie_py import TopicTrie as PyTopicTrie

__all__ = ["IMPLEMENTATION", "PyTopicTrie", "TopicTrie"]


def _select() -> tuple[type, str]:
    """The trie class to use and its implementation name; logs once when falling back."""
    if os.environ.get("MQHOOK_PURE_PYTHON") == "1":
        return PyTopicTrie, "python"
    try:
        from mqhook._topic_trie import TopicTrie as compiled
    except ImportError as exc:
        logging.getLogger("mqhook").warning(
            "mqhook: the compiled topic matcher mqhook._topic_trie is missing (%s); using the slower "
            "pure-Python trie. Build it with `python setup.py build_ext --inplace` from the source tree "
            "(needs Cython and a C compiler), or reinstall mqhook where they are available",
            exc,
        )
        return PyTopicTrie, "python"
    return compiled, "cython"


_selected, IMPLEMENTATION = _select()

if TYPE_CHECKING:
    # Same API; type checkers see the reference so ``TopicTrie`` works in annotations.
    TopicTrie = PyTopicTrie
else:
    TopicTrie = _selected
