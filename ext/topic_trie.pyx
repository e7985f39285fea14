# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Cython topic-filter trie: same API and rules as ``mqhook._trie_py`` (the reference), built for speed.

Owns the matching of MQTT topic filters against topic names (MQTT 3.1.1 / 5.0 section 4.7):

- levels are separated by ``/`` and may be empty: ``a//b`` has three levels [MQTT-4.7.1-1];
- ``+`` matches exactly one level, including an empty one [MQTT-4.7.1-3];
- ``#`` matches its parent level and any number of child levels (``a/#`` matches ``a``) [MQTT-4.7.1-2];
- a filter whose first level is ``+`` or ``#`` does not match a topic starting with ``$`` [MQTT-4.7.2-1].

Why it is fast (measure with bench/test_bench_matcher.py; the trie is memory-bound once large):

- Exact filters (no ``+`` or ``#`` level, most of them in practice) are not in the trie at all: an
  open-addressing table of our own (``_exact``, topic_trie.pxd) maps each to its dict, probed once with
  the whole topic. Only wildcard filters have nodes, so the trie is smaller and its walk shorter, and
  subscribing to an exact filter is one table operation. A slot holds the filter's hash, the filter and
  its dict together: a probe reads the slot, then the filter's str to compare. Python's dict reads an
  index, then an entry, then the str, one miss more; and match() prefetches the slot before the walk
  starts, so its miss overlaps with the walk's (together ~1.2-1.35x lookups/s at 100k-1M filters, with
  100k distinct topics). Exact filters are then not in ``_by_filter`` either, which pays for the table:
  memory per filter is unchanged (~375 bytes at 1M filters, dicts included).
- A node is one 64-byte C struct (topic_trie.pxd, a cache line's size) stored IN its parent's open-addressing table, with
  its level's hash and (up to 10 bytes) the level itself: a level of a lookup reads one cache line,
  where a table of pointers to nodes read two. A ``#`` child is only a dict pointer in its parent
  (``#`` ends a filter), so checking it costs no line either. Nodes are never scanned by the cyclic GC.
- ``match`` allocates nothing per level for topics stored one byte per character (ASCII, Latin-1):
  it finds the ``/`` with memchr and hashes levels in place, lazily, only where a node has a table of
  more than one child. Other topics are split into str objects first.
- The misses that do not depend on each other overlap: '+' branches are prefetched when stacked, and
  matched dicts (whose refcounts the result list bumps) are prefetched when found and appended after
  the walk.
- The wildcard filters' ``{key: value}`` dicts are owned by ``_by_filter``, which the cyclic GC sees;
  nodes hold borrowed pointers to them. The same dict answers get(), filters() and filter_count, and
  lets insert() on an existing wildcard filter skip the trie walk. The exact table owns its filters and
  dicts; the type's tp_traverse (wrapped at the end of this module) shows the dicts to the cyclic GC.

Results keep the reference's order (a depth-first walk, literal child before ``+``): the literal path's
``#`` matches, then the exact filter, then the ``+`` branches, deepest first.

Over the ~400-line guide on purpose: it is one cdef class whose methods share C-level state; the C
structs and the table and node helpers already live in topic_trie.pxd.
"""

cimport cython
from libc.stdint cimport uint16_t, uint32_t
from libc.string cimport memchr

from topic_trie cimport (
    FIXED_LEVELS, NO_HASH, PLUS, ROOT, Exact, ExactTable, Level, Node, Py_DECREF, PyDict_GET_SIZE,
    PyDict_GetItemWithError, PyList_Append, PyMem_Free, PyMem_Malloc, PyObject, PyUnicode_DATA,
    PyUnicode_FindChar, PyUnicode_GET_LENGTH, PyUnicode_KIND, PyUnicode_READ_CHAR, add_child, exact_add,
    exact_find, exact_unlink, find_child, free_all, level_of, new_node, prefetch, prune,
)


cdef extern from "Python.h":
    ctypedef struct PyTypeObject:
        pass
    ctypedef int (*visitproc)(PyObject *, void *) noexcept
    ctypedef int (*traverseproc)(PyObject *, visitproc, void *) noexcept
    Py_hash_t PyObject_Hash(object o) except -1


cdef extern from *:
    """
    #define mq_get_traverse(t) (((PyTypeObject *)(t))->tp_traverse)
    #define mq_set_traverse(t, f) (((PyTypeObject *)(t))->tp_traverse = (traverseproc)(f))
    """
    traverseproc mq_get_traverse(object t)
    void mq_set_traverse(object t, traverseproc f)


cdef inline Py_hash_t str_hash(str s) except -1:
    """The str's hash (cached in it). Typed ``str`` arguments are exact strs: no __hash__ override."""
    return PyObject_Hash(s)


cdef inline Exact *exact_of(ExactTable *t, str s, Py_hash_t h) noexcept:
    return exact_find(t, h, <const char *>PyUnicode_DATA(s), PyUnicode_GET_LENGTH(s) * PyUnicode_KIND(s),
                      PyUnicode_KIND(s))


cdef struct Frame:
    Node *node
    Py_ssize_t i


cdef object _MISSING = object()


cdef enum:
    FOUND_BATCH = 32


cdef struct Found:
    # Matched dicts not yet in the result list. Appending increments a dict's refcount, a cache miss
    # of its own once the trie is large: prefetched when found, the dicts are appended after the walk,
    # so those misses overlap with the walk's instead of adding to them.
    PyObject *items[FOUND_BATCH]
    int k


cdef inline int flush(Found *found, list out) except -1:
    cdef int j
    for j in range(found.k):
        PyList_Append(out, <object>found.items[j])
    found.k = 0
    return 0


cdef inline int add_found(Found *found, PyObject *subs, list out) except -1:
    prefetch(subs)
    if found.k == FOUND_BATCH:
        flush(found, out)
    found.items[found.k] = subs
    found.k += 1
    return 0


cdef inline bint is_wild_level(const Level *lv) noexcept:
    """Is the level exactly ``+`` or ``#`` (in any of the str's code-unit widths)?"""
    cdef Py_UCS4 c
    if lv.nbytes != lv.kind:
        return False
    if lv.kind == 1:
        c = (<const unsigned char *>lv.data)[0]
    elif lv.kind == 2:
        c = (<const uint16_t *>lv.data)[0]
    else:
        c = (<const uint32_t *>lv.data)[0]
    return c == u'+' or c == u'#'


cdef bint is_wildcard(str topic_filter) except -1:
    """Has the filter a ``+`` or ``#`` level? Filters without one match only the topic equal to them."""
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(topic_filter)
    if (PyUnicode_FindChar(topic_filter, u'+', 0, n, 1) == -1
            and PyUnicode_FindChar(topic_filter, u'#', 0, n, 1) == -1):
        return False  # the common case, without splitting
    cdef list levels = topic_filter.split("/")
    return "+" in levels or "#" in levels


# --- the trie ------------------------------------------------------------------------------------

@cython.final
@cython.no_gc_clear  # the nodes' borrowed pointers need _by_filter's dicts until __dealloc__
cdef class TopicTrie:
    """Topic filters -> ``{key: value}`` dicts, matched against topic names."""

    cdef Node *_root        # wildcard filters only
    cdef dict _by_filter    # wildcard filter -> its {key: value} dict; owns the dicts the nodes point to
    cdef ExactTable _exact  # exact filter -> its dict; owns both (visited by _traverse)
    cdef Py_ssize_t _entries
    cdef Py_ssize_t _wildcards  # filters in the trie (those with a '+' or '#' level)

    def __cinit__(self):
        self._by_filter = {}
        self._entries = 0
        self._wildcards = 0
        self._exact.slots = NULL
        self._exact.mask = 0
        self._exact.used = 0
        self._root = new_node(ROOT)

    def __init__(self):
        pass

    def __dealloc__(self):
        cdef Exact *slots = self._exact.slots
        cdef size_t j
        if self._root != NULL:
            free_all(self._root)
            self._root = NULL
        self._exact.slots = NULL
        self._exact.used = 0
        if slots != NULL:
            for j in range(self._exact.mask + 1):
                if slots[j].key != NULL:
                    Py_DECREF(slots[j].key)
                    Py_DECREF(slots[j].subs)
            PyMem_Free(slots)

    def __len__(self):
        return self._entries

    @property
    def filter_count(self):
        """The number of distinct filters with at least one key."""
        return PyDict_GET_SIZE(self._by_filter) + <Py_ssize_t>self._exact.used

    cdef int _forget_cleared(self) except -1:
        """Drop the nodes if the GC has cleared ``_by_filter`` (tearing down a cycle through the trie).

        _by_filter holds every wildcard filter, so it can only be smaller than ``_wildcards`` once the
        GC emptied it behind our back; the nodes' dict pointers then dangle: never read them again.
        """
        cdef Node *fresh
        if PyDict_GET_SIZE(self._by_filter) < self._wildcards:
            fresh = new_node(ROOT)
            free_all(self._root)
            self._root = fresh
            self._wildcards = 0
            self._entries = 0
        return 0

    def insert(self, str topic_filter not None, key, value):
        """Store ``value`` for ``key`` under ``topic_filter``; True if ``key`` was new there."""
        self._forget_cleared()
        cdef PyObject *found
        cdef dict subs
        cdef Py_ssize_t before
        cdef Py_hash_t h
        cdef Exact *e
        if not is_wildcard(topic_filter):
            # Exact filters live in _exact alone, which match() probes with the whole topic.
            h = str_hash(topic_filter)
            e = exact_of(&self._exact, topic_filter, h)
            if e != NULL:
                subs = <dict>e.subs
                before = len(subs)
                subs[key] = value
                if len(subs) == before:
                    return False
            else:
                subs = {key: value}  # the key's __hash__ runs before the table changes
                exact_add(&self._exact, h, topic_filter, subs)
            self._entries += 1
            return True
        found = PyDict_GetItemWithError(self._by_filter, topic_filter)
        if found != NULL:  # an existing filter: no trie walk
            subs = <dict>found
            before = len(subs)
            subs[key] = value
            if len(subs) == before:
                return False
            self._entries += 1
            return True
        subs = {key: value}  # the key's __hash__ runs before the trie changes
        self._descend(topic_filter, subs, True)
        self._wildcards += 1
        self._entries += 1
        return True

    def remove(self, str topic_filter not None, key):
        """Remove ``key`` from ``topic_filter``; True if it was there. Empty nodes are pruned."""
        cdef PyObject *found
        cdef dict subs
        cdef Py_hash_t h
        cdef Exact *e
        if not is_wildcard(topic_filter):
            h = str_hash(topic_filter)
            e = exact_of(&self._exact, topic_filter, h)
            if e == NULL:
                return False
            subs = <dict>e.subs
            if subs.pop(key, _MISSING) is _MISSING:
                return False
            self._entries -= 1
            if not subs:
                # pop() may have run Python code (a key's __eq__, a value's __del__) that moved the slot.
                e = exact_of(&self._exact, topic_filter, h)
                if e != NULL and e.subs == <PyObject *>subs:
                    found = e.key
                    exact_unlink(&self._exact, e)
                    Py_DECREF(found)
                    Py_DECREF(<PyObject *>subs)  # ours: `subs` still holds one
            return True
        found = PyDict_GetItemWithError(self._by_filter, topic_filter)
        if found == NULL:
            return False
        subs = <dict>found
        if subs.pop(key, _MISSING) is _MISSING:
            return False
        self._entries -= 1
        if not subs:
            self._descend(topic_filter, subs, False)
            self._wildcards -= 1
        return True

    def get(self, str topic_filter not None, key):
        """The value stored for ``key`` under ``topic_filter``, or None."""
        cdef Exact *e
        cdef PyObject *found
        if not is_wildcard(topic_filter):
            e = exact_of(&self._exact, topic_filter, str_hash(topic_filter))
            return None if e == NULL else (<dict>e.subs).get(key)
        found = PyDict_GetItemWithError(self._by_filter, topic_filter)
        if found == NULL:
            return None
        return (<dict>found).get(key)

    def filters(self):
        """Every filter that has at least one key (a snapshot, in no particular order)."""
        cdef list out = list(self._by_filter)
        cdef size_t j
        if self._exact.slots != NULL:
            for j in range(self._exact.mask + 1):
                if self._exact.slots[j].key != NULL:
                    out.append(<object>self._exact.slots[j].key)
        return iter(out)

    cdef int _descend(self, str topic_filter, dict subs, bint attach) except -1:
        """Attach ``subs`` as the dict of the wildcard ``topic_filter``, creating nodes; or detach it and
        prune. A trailing ``#`` is no node: its dict is the ``hash_subs`` of the node before it."""
        cdef list levels = topic_filter.split("/")
        cdef Py_ssize_t n = len(levels), depth = 0
        cdef bint tail_hash = levels[n - 1] == "#"
        cdef Node *child
        cdef PyObject **slot = NULL
        cdef Node **path
        if tail_hash:
            n -= 1
        path = <Node **>PyMem_Malloc((n + 1) * sizeof(Node *))
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
            if depth == n:
                slot = &path[n].hash_subs if tail_hash else &path[n].subs
            if attach:
                self._by_filter[topic_filter] = subs
                slot[0] = <PyObject *>subs
            else:
                if depth == n and slot[0] == <PyObject *>subs:
                    slot[0] = NULL
                self._by_filter.pop(topic_filter, None)
        finally:
            prune(path, depth)  # after a detach; and undoes a failed attach
            PyMem_Free(path)
        return 0

    cdef Node *_step(self, Node *node, str level, bint create) except? NULL:
        """The child of ``node`` for one filter level (not a trailing ``#``); created if missing and
        ``create``, else NULL."""
        cdef Node *child
        cdef Level lv
        if PyUnicode_GET_LENGTH(level) == 1 and level == "+":
            child = node.plus
            if child == NULL and create:
                child = node.plus = new_node(PLUS)
            return child
        level_of(&lv, level)
        child = find_child(node, &lv)
        if child == NULL and create:
            child = add_child(node, &lv)
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
        cdef bint dollar, exact = True
        cdef const char *data = NULL
        cdef const char *end = NULL
        cdef const char *cur
        cdef const char *slash
        cdef Py_hash_t h = 0
        if PyDict_GET_SIZE(self._by_filter) == 0 and self._exact.used == 0:
            return out  # also the trie's state once the GC cleared _by_filter and the exact dicts' items
        self._forget_cleared()
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
                    if slash - cur == 1 and (cur[0] == b'+' or cur[0] == b'#'):
                        exact = False
                    cur = slash + 1
            else:
                for i in range(n):
                    level_of(&levels[i], <str>parts[i])
                    if is_wild_level(&levels[i]):
                        exact = False
            dollar = PyUnicode_GET_LENGTH(topic) > 0 and PyUnicode_READ_CHAR(topic, 0) == u'$'
            # A topic with a '+' or '#' level (not a valid topic name, but matched all the same) equals
            # no exact filter: the filter of the same name is a wildcard one, found in the trie.
            if exact and self._exact.used:
                # The exact filter's slot: its miss overlaps with the walk's; it is read after the
                # literal path (prefetching what it points to as well did not pay, measured).
                h = str_hash(topic)
                prefetch(&self._exact.slots[<size_t>h & self._exact.mask])
            else:
                exact = False
            self._collect(levels, n, stack, dollar, topic if exact else None, h, out)
        finally:
            if levels != fixed_levels:
                PyMem_Free(levels)
                PyMem_Free(stack)
        return out

    cdef int _collect(self, Level *levels, Py_ssize_t n, Frame *stack, bint dollar, str exact,
                      Py_hash_t h, list out) except -1:
        """Append the dicts of the filters matching ``levels``, in the order of a depth-first walk that
        tries the literal child before the '+' child (the order of mqhook._trie_py).

        First the literal path from the root, stacking the '+' branches met on the way;
        where it ends, the exact filter equal to the topic (``exact``, None if it cannot be one) comes
        next, then the stacked branches. The stack never holds more than two frames per level.
        """
        cdef Node *node = self._root
        cdef Node *child
        cdef Py_ssize_t i = 0, sp = 0
        cdef Exact *e
        cdef Found found
        found.k = 0
        # [MQTT-4.7.2-1]: '+' or '#' as the first level never matches a '$' topic.
        cdef bint wild_ok = not dollar
        while True:
            # '#' also matches the parent level [MQTT-4.7.1-2], so it counts whether or not levels remain.
            if node.hash_subs != NULL and wild_ok:
                add_found(&found, node.hash_subs, out)
            if i == n:
                break  # node.subs is NULL: an exact filter, which the trie does not hold
            if node.plus != NULL and wild_ok:
                prefetch(node.plus)
                stack[sp].node = node.plus
                stack[sp].i = i + 1
                sp += 1
            if node.used == 0:
                break
            node = find_child(node, &levels[i])
            if node == NULL:
                break
            i += 1
            wild_ok = True
        if exact is not None:
            e = exact_of(&self._exact, exact, h)
            if e != NULL:
                add_found(&found, e.subs, out)
        while sp:
            sp -= 1
            node = stack[sp].node
            i = stack[sp].i
            if node.hash_subs != NULL:
                add_found(&found, node.hash_subs, out)
            if i == n:
                if node.subs != NULL:
                    add_found(&found, node.subs, out)
                continue
            if node.plus != NULL:
                prefetch(node.plus)
                stack[sp].node = node.plus
                stack[sp].i = i + 1
                sp += 1
            if node.used:
                child = find_child(node, &levels[i])
                if child != NULL:
                    stack[sp].node = child
                    stack[sp].i = i + 1
                    sp += 1
        flush(&found, out)
        return 0


# The exact filters' dicts are in no Python container: the cyclic GC learns of them from here.
cdef traverseproc _generated_traverse = mq_get_traverse(TopicTrie)


cdef int _traverse(PyObject *o, visitproc visit, void *arg) noexcept:
    cdef ExactTable *t = &(<TopicTrie>o)._exact
    cdef size_t j
    cdef int r
    if t.slots != NULL:
        for j in range(t.mask + 1):
            if t.slots[j].key != NULL:
                r = visit(t.slots[j].subs, arg)
                if r:
                    return r
    return _generated_traverse(o, visit, arg)


mq_set_traverse(TopicTrie, _traverse)
