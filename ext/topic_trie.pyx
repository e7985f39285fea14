# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Cython topic-filter trie: same API and rules as ``mqhook._trie_py`` (the reference), built for speed.

Owns the matching of MQTT topic filters against topic names (MQTT 3.1.1 / 5.0 section 4.7):

- levels are separated by ``/`` and may be empty: ``a//b`` has three levels [MQTT-4.7.1-1];
- ``+`` matches exactly one level, including an empty one [MQTT-4.7.1-3];
- ``#`` matches its parent level and any number of child levels (``a/#`` matches ``a``) [MQTT-4.7.1-2];
- a filter whose first level is ``+`` or ``#`` does not match a topic starting with ``$`` [MQTT-4.7.2-1].

Why it is fast (measure with bench/test_bench_matcher.py):

- Trie nodes are C structs (topic_trie.pxd), not Python objects: small, cache-friendly, never scanned
  by the cyclic GC. Once the trie outgrows the CPU caches, match time is mostly cache misses, and a
  level costs about one table slot and one node.
- ``match`` allocates nothing per level for topics stored one byte per character (ASCII, Latin-1):
  it finds the ``/`` with memchr and hashes levels in place, lazily, only where a node has a table.
  Other topics are split into str objects first.
- The ``{key: value}`` dicts are owned by ``_by_filter`` (filter -> dict), which the cyclic GC sees;
  nodes hold borrowed pointers to them. The same dict answers get(), filters() and filter_count, and
  lets insert() on an existing filter skip the trie walk.
"""

cimport cython
from libc.string cimport memchr

from topic_trie cimport (
    FIXED_LEVELS, HASH, NO_HASH, PLUS, ROOT, LITERAL, Level, Node, PyDict_GET_SIZE, PyDict_GetItemWithError,
    PyList_Append, PyMem_Free, PyMem_Malloc, PyObject, PyUnicode_DATA, PyUnicode_GET_LENGTH, PyUnicode_KIND,
    PyUnicode_READ_CHAR, add_child, find_child, free_all, is_empty, level_of, new_node, prune,
)


cdef struct Frame:
    Node *node
    Py_ssize_t i


cdef object _MISSING = object()


# --- the trie ------------------------------------------------------------------------------------

@cython.final
@cython.no_gc_clear  # the nodes' borrowed pointers need _by_filter's dicts until __dealloc__
cdef class TopicTrie:
    """Topic filters -> ``{key: value}`` dicts, matched against topic names."""

    cdef Node *_root
    cdef dict _by_filter  # filter -> its {key: value} dict; owns the dicts the nodes point to
    cdef Py_ssize_t _entries

    def __cinit__(self):
        self._by_filter = {}
        self._entries = 0
        self._root = new_node(ROOT, NULL)

    def __init__(self):
        pass

    def __dealloc__(self):
        if self._root != NULL:
            free_all(self._root)
            self._root = NULL

    def __len__(self):
        return self._entries

    @property
    def filter_count(self):
        """The number of distinct filters with at least one key."""
        return PyDict_GET_SIZE(self._by_filter)

    def insert(self, str topic_filter not None, key, value):
        """Store ``value`` for ``key`` under ``topic_filter``; True if ``key`` was new there."""
        cdef PyObject *found = PyDict_GetItemWithError(self._by_filter, topic_filter)
        cdef dict subs
        cdef Py_ssize_t before
        cdef Node *fresh
        if found != NULL:  # an existing filter: no trie walk
            subs = <dict>found
            before = len(subs)
            subs[key] = value
            if len(subs) == before:
                return False
            self._entries += 1
            return True
        subs = {key: value}  # the key's __hash__ runs before the trie changes
        if PyDict_GET_SIZE(self._by_filter) == 0 and not is_empty(self._root):
            # Nodes without filters: the GC has cleared _by_filter (tearing down a cycle) and
            # their dict pointers dangle. Start afresh rather than ever read them.
            fresh = new_node(ROOT, NULL)
            free_all(self._root)
            self._root = fresh
        self._descend(topic_filter, subs, True)
        self._entries += 1
        return True

    def remove(self, str topic_filter not None, key):
        """Remove ``key`` from ``topic_filter``; True if it was there. Empty nodes are pruned."""
        cdef PyObject *found = PyDict_GetItemWithError(self._by_filter, topic_filter)
        cdef dict subs
        if found == NULL:
            return False
        subs = <dict>found
        if subs.pop(key, _MISSING) is _MISSING:
            return False
        self._entries -= 1
        if not subs:
            self._descend(topic_filter, subs, False)
        return True

    def get(self, str topic_filter not None, key):
        """The value stored for ``key`` under ``topic_filter``, or None."""
        cdef PyObject *found = PyDict_GetItemWithError(self._by_filter, topic_filter)
        if found == NULL:
            return None
        return (<dict>found).get(key)

    def filters(self):
        """Every filter that has at least one key (a snapshot, in no particular order)."""
        return iter(list(self._by_filter))

    cdef int _descend(self, str topic_filter, dict subs, bint attach) except -1:
        """Attach ``subs`` as the dict of ``topic_filter``, creating nodes; or detach it and prune."""
        cdef list levels = topic_filter.split("/")
        cdef Py_ssize_t n = len(levels), depth = 0
        cdef Node *child
        cdef Node **path = <Node **>PyMem_Malloc((n + 1) * sizeof(Node *))
        if path == NULL:
            raise MemoryError()
        path[0] = self._root
        try:
            while depth < n:
                child = self._step(path[depth], <str>levels[depth], attach)
                if child == NULL:
                    break  # detaching, and the filter has no node
                depth += 1
                path[depth] = child
            if attach:
                self._by_filter[topic_filter] = subs
                path[n].subs = <PyObject *>subs
            else:
                if depth == n and path[n].subs == <PyObject *>subs:
                    path[n].subs = NULL
                self._by_filter.pop(topic_filter, None)
        finally:
            prune(path, depth)  # after a detach; and undoes a failed attach
            PyMem_Free(path)
        return 0

    cdef Node *_step(self, Node *node, str level, bint create) except? NULL:
        """The child of ``node`` for one filter level; created if missing and ``create``, else NULL."""
        cdef Node *child
        cdef Level lv
        if PyUnicode_GET_LENGTH(level) == 1 and (level == "+" or level == "#"):
            child = node.plus if level == "+" else node.hash
            if child == NULL and create:
                child = new_node(PLUS if level == "+" else HASH, NULL)
                if level == "+":
                    node.plus = child
                else:
                    node.hash = child
            return child
        level_of(&lv, level)
        child = find_child(node, &lv)
        if child == NULL and create:
            child = new_node(LITERAL, &lv)
            try:
                add_child(node, child, lv.h)
            except MemoryError:
                PyMem_Free(child)
                raise
        return child

    def match(self, str topic not None):
        """The subscriber dicts of every filter matching the topic name ``topic``.

        The dicts are the trie's own: callers must not mutate them.
        """
        cdef list out = []
        cdef Level fixed_levels[FIXED_LEVELS]
        cdef Frame fixed_stack[2 * FIXED_LEVELS + 2]
        cdef Level *levels = fixed_levels
        cdef Frame *stack = fixed_stack
        cdef Py_ssize_t n, i
        cdef list parts = None
        cdef bint dollar
        cdef const char *data = NULL
        cdef const char *end = NULL
        cdef const char *cur
        cdef const char *slash
        if PyDict_GET_SIZE(self._by_filter) == 0:
            return out  # also the state while the GC tears down a cycle holding the trie
        if PyUnicode_KIND(topic) == 1:
            # One byte per character: the levels are found in place, allocation-free.
            data = <const char *>PyUnicode_DATA(topic)
            end = data + PyUnicode_GET_LENGTH(topic)
            n = 1
            cur = data
            while True:
                slash = <const char *>memchr(cur, b'/', <size_t>(end - cur))
                if slash == NULL:
                    break
                n += 1
                cur = slash + 1
        else:
            parts = topic.split("/")
            n = len(parts)
        if n > FIXED_LEVELS:
            levels = <Level *>PyMem_Malloc(n * sizeof(Level))
            stack = <Frame *>PyMem_Malloc((2 * n + 2) * sizeof(Frame))
            if levels == NULL or stack == NULL:
                PyMem_Free(levels)
                PyMem_Free(stack)
                raise MemoryError()
        try:
            if parts is None:
                cur = data
                for i in range(n):
                    slash = <const char *>memchr(cur, b'/', <size_t>(end - cur))
                    if slash == NULL:
                        slash = end
                    levels[i].data = cur
                    levels[i].nbytes = slash - cur
                    levels[i].h = NO_HASH
                    levels[i].kind = 1
                    cur = slash + 1
            else:
                for i in range(n):
                    level_of(&levels[i], <str>parts[i])
            dollar = PyUnicode_GET_LENGTH(topic) > 0 and PyUnicode_READ_CHAR(topic, 0) == u'$'
            self._collect(levels, n, stack, dollar, out)
        finally:
            if levels != fixed_levels:
                PyMem_Free(levels)
                PyMem_Free(stack)
        return out

    cdef int _collect(self, Level *levels, Py_ssize_t n, Frame *stack, bint dollar, list out) except -1:
        """Depth-first over the branches that match ``levels``; the stack never holds more than 2n+1."""
        cdef Node *root = self._root
        cdef Node *node
        cdef Node *child
        cdef Py_ssize_t i, sp = 1
        cdef bint wild_ok
        stack[0].node = root
        stack[0].i = 0
        while sp:
            sp -= 1
            node = stack[sp].node
            i = stack[sp].i
            # [MQTT-4.7.2-1]: '+' or '#' as the first level never matches a '$' topic.
            wild_ok = not dollar or node != root
            # '#' also matches the parent level [MQTT-4.7.1-2], so it counts whether or not levels remain.
            if node.hash != NULL and node.hash.subs != NULL and wild_ok:
                PyList_Append(out, <object>node.hash.subs)
            if i == n:
                if node.subs != NULL:
                    PyList_Append(out, <object>node.subs)
                continue
            if node.plus != NULL and wild_ok:
                stack[sp].node = node.plus
                stack[sp].i = i + 1
                sp += 1
            if node.used:
                child = find_child(node, &levels[i])
                if child != NULL:
                    stack[sp].node = child
                    stack[sp].i = i + 1
                    sp += 1
        return 0
