# Trie nodes for topic_trie.pyx: their C layout and the open-addressing table of literal children.
#
# Not the usual declaration file of a .pyx: the module is built as mqhook._topic_trie (see setup.py),
# and topic_trie.pyx cimports this file by name. It holds only C structs and inline functions, so
# nothing is imported at run time. Rules of MQTT topic matching live in topic_trie.pyx.
#
# A node is a 64-byte struct (the size of a cache line) holding its level's hash, its level (inline up to 10
# bytes, else behind a pointer), its links and its filters' dicts. Literal children live inside their
# parent's table, not behind pointers: one child is a table of one, compared without hashing; from the
# second on, a power-of-two table at most half full, with linear probing and backward-shift deletion
# (no tombstones). Growing or shrinking a table moves its nodes, so nothing but the parent's table may
# point at a literal node ('+' nodes and the root are allocated alone). A '#' child is no node: '#' ends
# a filter, so its parent holds the filter's dict (hash_subs). Hashes are CPython's keyed str hash of
# the level's code units (SipHash, seeded per process), so filters chosen to collide cannot degrade a
# node.
#
# Exact filters (no '+' or '#' level) have no node: they live in an ExactTable (end of this file), slots
# of (hash, filter, dict) with linear probing, at most 3/4 full, backward-shift deletion. One slot
# holds all a probe needs before comparing the filter itself, one cache miss fewer than Python's dict
# (index, then entry, then key), and match() can prefetch it from the topic's hash alone. The table
# owns the filters and dicts it holds (not borrowed from _by_filter, which then holds wildcard filters
# only: the memory the table costs is what _by_filter no longer does).

from cpython.object cimport PyObject
from libc.stdint cimport uint32_t
from libc.string cimport memcmp, memcpy, memset

cdef extern from "Python.h":
    void *PyMem_Malloc(size_t n)
    void *PyMem_Calloc(size_t nelem, size_t elsize)
    void *PyMem_Realloc(void *p, size_t n)
    void PyMem_Free(void *p)
    Py_ssize_t PyDict_GET_SIZE(object d)
    PyObject *PyDict_GetItemWithError(object d, object key) except? NULL
    int PyList_Append(object lst, object item) except -1
    int PyUnicode_KIND(object s)
    void *PyUnicode_DATA(object s)
    Py_ssize_t PyUnicode_GET_LENGTH(object s)
    Py_UCS4 PyUnicode_READ_CHAR(object s, Py_ssize_t i)
    Py_ssize_t PyUnicode_FindChar(object s, Py_UCS4 ch, Py_ssize_t start, Py_ssize_t end, int direction) except -2


cdef extern from *:
    """
    #if PY_VERSION_HEX >= 0x030E0000
    #define mq_hash_bytes(p, n) Py_HashBuffer((p), (n))
    #else
    #if PY_VERSION_HEX >= 0x030D0000
    PyAPI_FUNC(Py_hash_t) _Py_HashBytes(const void *, Py_ssize_t);  /* internal header since 3.13 */
    #endif
    #define mq_hash_bytes(p, n) _Py_HashBytes((p), (n))
    #endif
    """
    # CPython's hash of a str with these code units: keyed per process, never -1.
    Py_hash_t mq_hash_bytes(const void *p, Py_ssize_t n)


cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define mq_prefetch(p) __builtin_prefetch((const void *)(p))
    #else
    #define mq_prefetch(p) ((void)(p))
    #endif
    """
    # A hint that ``p`` is read soon: its cache miss overlaps with other work.
    void prefetch "mq_prefetch"(const void *p) noexcept nogil


cdef enum:
    LITERAL = 0
    PLUS = 1
    ROOT = 2
    NO_HASH = -1       # Level.h before the level is hashed
    FIXED_LEVELS = 16  # topics with more levels allocate their scratch arrays
    INLINE_KEY = 10    # levels up to this many bytes are stored in the node itself


cdef struct Node:
    # 64 bytes, the size of a cache line. A literal node lives IN its parent's table (no pointer to follow),
    # so one level of a lookup reads one line: hash, key and links to the next level together.
    Py_hash_t h         # CPython's str hash of the level (literal nodes in a table of cap > 1)
    Node *kids          # the literal children: Node[cap], open addressing; NULL when cap == 0
    Node *plus          # the '+' child: a Node of its own (a table of one)
    PyObject *hash_subs # the dict of the filter "<this node>/#": '#' is last, so it needs no node
    PyObject *subs      # the dict of the filter ending here; NULL if none. Both borrowed from _by_filter
    uint32_t cap        # 0, or a power of two; at most half full from 4 on
    uint32_t used       # literal children
    uint32_t nbytes     # the level as its str's canonical code units (kind bytes per character)
    unsigned char kind  # 1, 2 or 4; 0 marks a free slot in a table
    unsigned char wild  # LITERAL, PLUS or ROOT
    char key[10]        # the level when nbytes <= INLINE_KEY, else (at key + 2, aligned) a pointer to it


cdef struct Level:
    const char *data
    Py_ssize_t nbytes
    Py_hash_t h
    int kind


cdef inline char *key_area(Node *node) noexcept:
    return node.key


cdef inline const char *key_of(Node *node) noexcept:
    """The level's bytes: in the node, or (long levels) behind a pointer stored in the node."""
    cdef char *p
    if node.nbytes <= INLINE_KEY:
        return key_area(node)
    memcpy(&p, key_area(node) + 2, sizeof(char *))
    return p


cdef inline int set_key(Node *node, const Level *lv) except -1:
    cdef size_t nbytes = <size_t>lv.nbytes
    cdef char *p
    if nbytes > 0xFFFFFFFF:
        raise ValueError("topic filter level too long")
    node.kind = <unsigned char>lv.kind
    node.nbytes = <uint32_t>nbytes
    if nbytes <= INLINE_KEY:
        memcpy(key_area(node), lv.data, nbytes)
        return 0
    p = <char *>PyMem_Malloc(nbytes)
    if p == NULL:
        raise MemoryError()
    memcpy(p, lv.data, nbytes)
    memcpy(key_area(node) + 2, &p, sizeof(char *))
    return 0


cdef inline void free_key(Node *node) noexcept:
    if node.kind != 0 and node.nbytes > INLINE_KEY:
        PyMem_Free(<void *>key_of(node))


cdef inline Node *new_node(unsigned char wild) except NULL:
    """A root or '+' node: allocated alone, not in a table."""
    cdef Node *node = <Node *>PyMem_Calloc(1, sizeof(Node))
    if node == NULL:
        raise MemoryError()
    node.wild = wild
    node.kind = 1  # not a free slot
    return node


cdef inline void level_of(Level *lv, str s) noexcept:
    """Fill ``lv`` from a canonical str (one that str.split produced)."""
    lv.kind = PyUnicode_KIND(s)
    lv.data = <const char *>PyUnicode_DATA(s)
    lv.nbytes = PyUnicode_GET_LENGTH(s) * lv.kind
    lv.h = NO_HASH


cdef inline bint same_level(Node *child, Level *lv) noexcept:
    return (child.nbytes == lv.nbytes and child.kind == lv.kind
            and memcmp(key_of(child), lv.data, <size_t>lv.nbytes) == 0)


cdef inline Py_hash_t level_hash(Level *lv) noexcept:
    if lv.h == NO_HASH:
        lv.h = mq_hash_bytes(lv.data, lv.nbytes)
    return lv.h


cdef inline Node *find_child(Node *node, Level *lv) noexcept:
    """The literal child of ``node`` for level ``lv``, or NULL. A table of one is not hashed."""
    cdef Node *child = node.kids
    if node.cap <= 1:
        return child if child != NULL and same_level(child, lv) else NULL
    cdef Py_hash_t h = level_hash(lv)
    cdef size_t mask = node.cap - 1
    cdef size_t i = <size_t>h & mask
    while True:
        child = &node.kids[i]
        if child.kind == 0:
            return NULL
        if child.h == h and same_level(child, lv):
            return child
        i = (i + 1) & mask


cdef inline Node *slot_for(Node *table, size_t mask, Py_hash_t h) noexcept:
    cdef size_t i = <size_t>h & mask
    while table[i].kind != 0:
        i = (i + 1) & mask
    return &table[i]


cdef inline int resize(Node *node, uint32_t new_cap) except -1:
    """Move the literal children into a table of ``new_cap`` (>= used) slots."""
    cdef Node *table = <Node *>PyMem_Calloc(new_cap, sizeof(Node))
    cdef Node *old = node.kids
    cdef uint32_t j
    if table == NULL:
        raise MemoryError()
    for j in range(node.cap):
        if old[j].kind != 0:
            if node.cap == 1:
                old[j].h = mq_hash_bytes(key_of(&old[j]), old[j].nbytes)
            slot_for(table, new_cap - 1, old[j].h)[0] = old[j]
    PyMem_Free(old)
    node.kids = table
    node.cap = new_cap
    return 0


cdef inline Node *add_child(Node *node, Level *lv) except NULL:
    """Create the literal child of ``node`` for ``lv``; it moves when the table grows or shrinks.

    One child is a table of one, unhashed; from the second on, a table that doubles to stay half full.
    """
    cdef Node *child
    cdef Node tmp
    memset(&tmp, 0, sizeof(Node))
    set_key(&tmp, lv)
    tmp.wild = LITERAL
    if node.cap == 0:
        child = <Node *>PyMem_Malloc(sizeof(Node))
        if child == NULL:
            free_key(&tmp)
            raise MemoryError()
        child[0] = tmp
        node.kids = child
        node.cap = 1
        node.used = 1
        return child
    tmp.h = level_hash(lv)
    try:
        if (node.used + 1) * 2 > node.cap:
            resize(node, node.cap * 2 if node.cap > 1 else 4)
    except MemoryError:
        free_key(&tmp)
        raise
    child = slot_for(node.kids, node.cap - 1, tmp.h)
    child[0] = tmp
    node.used += 1
    return child


cdef inline void drop_child(Node *node, Node *child) noexcept:
    """Unlink (and free the key of) the empty ``child``; tables use backward-shift deletion."""
    if child.wild == PLUS:
        node.plus = NULL
        PyMem_Free(child)
        return
    free_key(child)
    if node.cap == 1:
        PyMem_Free(node.kids)
        node.kids = NULL
        node.cap = 0
        node.used = 0
        return
    cdef Node *table = node.kids
    cdef size_t mask = node.cap - 1
    cdef size_t hole = <size_t>(child - table)
    cdef size_t j, home
    j = hole
    while True:
        j = (j + 1) & mask
        if table[j].kind == 0:
            break
        home = <size_t>table[j].h & mask
        # The entry at j may fill the hole unless its home lies cyclically in (hole, j].
        if (hole < home <= j) if hole <= j else (hole < home or home <= j):
            continue
        table[hole] = table[j]
        hole = j
    table[hole].kind = 0
    node.used -= 1
    if node.used == 1:  # back to a table of one
        for j in range(node.cap):
            if table[j].kind != 0:
                child = <Node *>PyMem_Malloc(sizeof(Node))
                if child == NULL:
                    return  # keep the big table: still correct
                child[0] = table[j]
                break
        PyMem_Free(table)
        node.kids = child
        node.cap = 1


cdef inline bint is_empty(Node *node) noexcept:
    return node.subs == NULL and node.used == 0 and node.plus == NULL and node.hash_subs == NULL


cdef inline void prune(Node **path, Py_ssize_t depth) noexcept:
    """Free ``path[depth]`` and its ancestors while they hold nothing; ``path[0]`` is the root.

    Dropping a child may move its siblings, never its ancestors: the path stays valid upwards.
    """
    while depth > 0 and is_empty(path[depth]):
        drop_child(path[depth - 1], path[depth])
        depth -= 1


cdef inline void free_all(Node *root) noexcept:
    """Free ``root`` and every node below it (iteratively: filters may be thousands of levels deep).

    The stack holds tables (and '+' nodes, tables of one): each is freed once its nodes' own tables
    are on the stack.
    """
    cdef Node *table
    cdef Node *node
    cdef Node **stack
    cdef Node **grown
    cdef uint32_t *caps
    cdef uint32_t *grown_caps
    cdef uint32_t cap, j
    cdef Py_ssize_t sp = 1, size = 64
    stack = <Node **>PyMem_Malloc(size * sizeof(Node *))
    caps = <uint32_t *>PyMem_Malloc(size * sizeof(uint32_t))
    if stack == NULL or caps == NULL:
        PyMem_Free(stack)
        PyMem_Free(caps)
        return  # leak rather than crash
    stack[0] = root
    caps[0] = 1
    while sp:
        sp -= 1
        table = stack[sp]
        cap = caps[sp]
        if sp + 2 * <Py_ssize_t>cap > size:
            size = (sp + 2 * cap) * 2
            grown = <Node **>PyMem_Realloc(stack, size * sizeof(Node *))
            if grown != NULL:
                stack = grown
            grown_caps = <uint32_t *>PyMem_Realloc(caps, size * sizeof(uint32_t))
            if grown_caps != NULL:
                caps = grown_caps
            if grown == NULL or grown_caps == NULL:
                break
        for j in range(cap):
            node = &table[j]
            if node.kind == 0:
                continue
            if node.cap:
                stack[sp] = node.kids
                caps[sp] = node.cap
                sp += 1
            if node.plus != NULL:
                stack[sp] = node.plus
                caps[sp] = 1
                sp += 1
            if node.wild == LITERAL:
                free_key(node)
        PyMem_Free(table)
    PyMem_Free(stack)
    PyMem_Free(caps)


# --- exact filters: an open-addressing table of (hash, filter, dict) --------------------------------
# 24-byte slots (not padded to 32: 3/4 full, the table costs what the dict entries it replaces did).

cdef extern from "Python.h":
    void Py_INCREF(PyObject *o)
    void Py_DECREF(PyObject *o)


cdef struct Exact:
    Py_hash_t h       # the filter's str hash
    PyObject *key     # the filter, an exact str (owned); NULL marks a free slot
    PyObject *subs    # its {key: value} dict (owned; the trie's tp_traverse visits it)


cdef struct ExactTable:
    Exact *slots      # NULL while cap == 0
    size_t mask       # cap - 1, cap a power of two, at most 3/4 full
    size_t used


cdef inline bint exact_is(PyObject *key, Py_hash_t h, const char *data, Py_ssize_t nbytes, int kind) noexcept:
    return (PyUnicode_KIND(<object>key) == kind
            and PyUnicode_GET_LENGTH(<object>key) * kind == nbytes
            and memcmp(PyUnicode_DATA(<object>key), data, <size_t>nbytes) == 0)


cdef inline Exact *exact_find(ExactTable *t, Py_hash_t h, const char *data, Py_ssize_t nbytes,
                              int kind) noexcept:
    """The slot of the exact filter with these code units, or NULL."""
    cdef size_t i
    cdef Exact *e
    if t.used == 0:
        return NULL
    i = <size_t>h & t.mask
    while True:
        e = &t.slots[i]
        if e.key == NULL:
            return NULL
        if e.h == h and exact_is(e.key, h, data, nbytes, kind):
            return e
        i = (i + 1) & t.mask


cdef inline Exact *exact_free_slot(Exact *slots, size_t mask, Py_hash_t h) noexcept:
    cdef size_t i = <size_t>h & mask
    while slots[i].key != NULL:
        i = (i + 1) & mask
    return &slots[i]


cdef inline int exact_resize(ExactTable *t, size_t cap) except -1:
    cdef Exact *slots = <Exact *>PyMem_Calloc(cap, sizeof(Exact))
    cdef size_t j
    if slots == NULL:
        raise MemoryError()
    if t.slots != NULL:
        for j in range(t.mask + 1):
            if t.slots[j].key != NULL:
                exact_free_slot(slots, cap - 1, t.slots[j].h)[0] = t.slots[j]
        PyMem_Free(t.slots)
    t.slots = slots
    t.mask = cap - 1
    return 0


cdef inline int exact_add(ExactTable *t, Py_hash_t h, object key, object subs) except -1:
    """Store a new filter (not in the table) with its dict; both are increfed."""
    cdef Exact *e
    if t.slots == NULL:
        exact_resize(t, 8)
    elif (t.used + 1) * 4 > (t.mask + 1) * 3:
        exact_resize(t, (t.mask + 1) * 2)
    e = exact_free_slot(t.slots, t.mask, h)
    Py_INCREF(<PyObject *>key)
    Py_INCREF(<PyObject *>subs)
    e.h = h
    e.key = <PyObject *>key
    e.subs = <PyObject *>subs
    t.used += 1
    return 0


cdef inline void exact_unlink(ExactTable *t, Exact *e) noexcept:
    """Empty slot ``e`` (backward-shift deletion, no tombstones); the caller owns its references."""
    cdef Exact *table = t.slots
    cdef size_t mask = t.mask
    cdef size_t hole = <size_t>(e - table)
    cdef size_t j = hole, home
    while True:
        j = (j + 1) & mask
        if table[j].key == NULL:
            break
        home = <size_t>table[j].h & mask
        if (hole < home <= j) if hole <= j else (hole < home or home <= j):
            continue
        table[hole] = table[j]
        hole = j
    table[hole].key = NULL
    table[hole].subs = NULL
    t.used -= 1
    if t.used * 8 < mask + 1 and mask + 1 > 8:
        try:
            exact_resize(t, (mask + 1) // 2)
        except MemoryError:
            pass  # keep the big table: still correct
