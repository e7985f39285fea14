# Trie nodes for topic_trie.pyx: their C layout and the open-addressing table of literal children.
#
# Not the usual declaration file of a .pyx: the module is built as mqhook._topic_trie (see setup.py),
# and topic_trie.pyx cimports this file by name. It holds only C structs and inline functions, so
# nothing is imported at run time. Rules of MQTT topic matching live in topic_trie.pyx.
#
# A node is one PyMem allocation (about 48 bytes plus the level's code units). '+' and '#' children
# have their own fields. One literal child is held directly: no table and no hashing, the common case
# deep in a trie. From the second on they go in a table of (hash, node) slots, a power of two in size
# and at most half full, with linear probing and backward-shift deletion (no tombstones). Hashes are
# CPython's keyed str hash of the level's code units (SipHash, seeded per process), so filters chosen
# to collide cannot degrade a node.

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


cdef enum:
    LITERAL = 0
    PLUS = 1
    HASH = 2
    ROOT = 3
    NO_HASH = -1       # Level.h before the level is hashed
    FIXED_LEVELS = 16  # topics with more levels allocate their scratch arrays


cdef struct Node

cdef struct Slot:
    Py_hash_t h
    Node *node


cdef struct Node:
    void *kids          # cap == 0: the only literal child (Node *) or NULL; else Slot[cap]
    Node *plus
    Node *hash
    PyObject *subs      # borrowed from TopicTrie._by_filter; NULL when no filter ends here
    uint32_t cap        # 0 or a power of two
    uint32_t used       # literal children
    uint32_t nbytes     # the level as its str's canonical code units (kind bytes per character)
    unsigned char kind
    unsigned char wild
    char key[2]         # nbytes long (allocated past the end of the struct)


cdef struct Level:
    const char *data
    Py_ssize_t nbytes
    Py_hash_t h
    int kind


cdef inline Node *new_node(unsigned char wild, const Level *lv) except NULL:
    cdef size_t nbytes = <size_t>lv.nbytes if lv != NULL else 0
    if nbytes > 0xFFFFFFFF:
        raise ValueError("topic filter level too long")
    cdef Node *node = <Node *>PyMem_Malloc(sizeof(Node) + nbytes)
    if node == NULL:
        raise MemoryError()
    memset(node, 0, sizeof(Node))
    node.wild = wild
    if lv != NULL:
        node.kind = <unsigned char>lv.kind
        node.nbytes = <uint32_t>nbytes
        memcpy(node.key, lv.data, nbytes)
    return node


cdef inline void level_of(Level *lv, str s) noexcept:
    """Fill ``lv`` from a canonical str (one that str.split produced)."""
    lv.kind = PyUnicode_KIND(s)
    lv.data = <const char *>PyUnicode_DATA(s)
    lv.nbytes = PyUnicode_GET_LENGTH(s) * lv.kind
    lv.h = NO_HASH


cdef inline bint same_level(Node *child, Level *lv) noexcept:
    return (child.nbytes == lv.nbytes and child.kind == lv.kind
            and memcmp(child.key, lv.data, <size_t>lv.nbytes) == 0)


cdef inline Py_hash_t node_hash(Node *child) noexcept:
    return mq_hash_bytes(child.key, child.nbytes)


cdef inline Node *find_child(Node *node, Level *lv) noexcept:
    """The literal child of ``node`` for level ``lv``, or NULL."""
    cdef Node *child
    if node.cap == 0:
        child = <Node *>node.kids
        return child if child != NULL and same_level(child, lv) else NULL
    if lv.h == NO_HASH:
        lv.h = mq_hash_bytes(lv.data, lv.nbytes)
    cdef Slot *table = <Slot *>node.kids
    cdef size_t mask = node.cap - 1
    cdef size_t i = <size_t>lv.h & mask
    while True:
        child = table[i].node
        if child == NULL:
            return NULL
        if table[i].h == lv.h and same_level(child, lv):
            return child
        i = (i + 1) & mask


cdef inline void slot_put(Slot *table, size_t mask, Py_hash_t h, Node *child) noexcept:
    cdef size_t i = <size_t>h & mask
    while table[i].node != NULL:
        i = (i + 1) & mask
    table[i].h = h
    table[i].node = child


cdef inline int add_child(Node *node, Node *child, Py_hash_t h) except -1:
    """Link a literal child whose level hashes to ``h`` (or NO_HASH: not computed yet).

    The first child is held directly; from the second on, a table that doubles to stay half full.
    """
    cdef uint32_t cap = node.cap
    cdef uint32_t new_cap, j
    cdef Slot *old = <Slot *>node.kids
    cdef Slot *table
    if cap == 0 and node.kids == NULL:
        node.kids = child
        node.used = 1
        return 0
    if (node.used + 1) * 2 > cap:
        new_cap = cap * 2 if cap else 4
        table = <Slot *>PyMem_Calloc(new_cap, sizeof(Slot))
        if table == NULL:
            raise MemoryError()
        if cap == 0:  # the only child moves into the new table
            slot_put(table, new_cap - 1, node_hash(<Node *>node.kids), <Node *>node.kids)
        else:
            for j in range(cap):
                if old[j].node != NULL:
                    slot_put(table, new_cap - 1, old[j].h, old[j].node)
            PyMem_Free(old)
        node.kids = table
        node.cap = new_cap
    slot_put(<Slot *>node.kids, node.cap - 1, h if h != NO_HASH else node_hash(child), child)
    node.used += 1
    return 0


cdef inline void drop_child(Node *node, Node *child) noexcept:
    """Unlink ``child``; table slots use backward-shift deletion (no tombstones)."""
    if child.wild == PLUS:
        node.plus = NULL
        return
    if child.wild == HASH:
        node.hash = NULL
        return
    if node.cap == 0:
        node.kids = NULL
        node.used = 0
        return
    cdef Slot *table = <Slot *>node.kids
    cdef size_t mask = node.cap - 1
    cdef size_t hole = <size_t>node_hash(child) & mask
    cdef size_t j, home
    while table[hole].node != child:
        hole = (hole + 1) & mask
    j = hole
    while True:
        j = (j + 1) & mask
        if table[j].node == NULL:
            break
        home = <size_t>table[j].h & mask
        # The entry at j may fill the hole unless its home lies cyclically in (hole, j].
        if (hole < home <= j) if hole <= j else (hole < home or home <= j):
            continue
        table[hole] = table[j]
        hole = j
    table[hole].node = NULL
    node.used -= 1
    if node.used == 1:  # back to a directly held child
        for j in range(node.cap):
            if table[j].node != NULL:
                node.kids = table[j].node
                break
        node.cap = 0
        PyMem_Free(table)


cdef inline bint is_empty(Node *node) noexcept:
    return node.subs == NULL and node.used == 0 and node.plus == NULL and node.hash == NULL


cdef inline void prune(Node **path, Py_ssize_t depth) noexcept:
    """Free ``path[depth]`` and its ancestors while they hold nothing; ``path[0]`` is the root."""
    while depth > 0 and is_empty(path[depth]):
        drop_child(path[depth - 1], path[depth])
        PyMem_Free(path[depth])
        depth -= 1


cdef inline void free_all(Node *root) noexcept:
    """Free ``root`` and every node below it (iteratively: filters may be thousands of levels deep)."""
    cdef Node *node
    cdef Node *child
    cdef Node **stack
    cdef Node **grown
    cdef Py_ssize_t sp = 1, size = 64
    cdef uint32_t j
    stack = <Node **>PyMem_Malloc(size * sizeof(Node *))
    if stack == NULL:
        return  # leak rather than crash
    stack[0] = root
    while sp:
        sp -= 1
        node = stack[sp]
        if sp + <Py_ssize_t>node.cap + 3 > size:
            size = (sp + node.cap + 3) * 2
            grown = <Node **>PyMem_Realloc(stack, size * sizeof(Node *))
            if grown == NULL:
                PyMem_Free(stack)
                return
            stack = grown
        if node.cap == 0:
            if node.kids != NULL:
                stack[sp] = <Node *>node.kids
                sp += 1
        else:
            for j in range(node.cap):
                child = (<Slot *>node.kids)[j].node
                if child != NULL:
                    stack[sp] = child
                    sp += 1
            PyMem_Free(node.kids)
        if node.plus != NULL:
            stack[sp] = node.plus
            sp += 1
        if node.hash != NULL:
            stack[sp] = node.hash
            sp += 1
        PyMem_Free(node)
    PyMem_Free(stack)
