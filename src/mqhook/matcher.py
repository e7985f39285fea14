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

from typing import TYPE_CHECKING

from mqhook._trie_py import TopicTrie as PyTopicTrie
from mqhook.native import load

__all__ = ["IMPLEMENTATION", "PyTopicTrie", "TopicTrie"]

_module, IMPLEMENTATION = load("mqhook._topic_trie", "mqhook._trie_py")
_selected = _module.TopicTrie


if TYPE_CHECKING:
    # Same API; type checkers see the reference so ``TopicTrie`` works in annotations.
    TopicTrie = PyTopicTrie
else:
    TopicTrie = _selected
