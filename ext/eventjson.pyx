# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled writer of message-event JSON: same output as ``mqhook._eventjson_py`` (the reference).

Owns one thing: turning a broker ``Message`` and the receiver's fields into the JSON object EMQX sends
for the five message events (``message.publish``, ``message.delivered``, ``message.acked``,
``message.dropped``, ``delivery.dropped``), without building an event struct. The shapes are the
structs of ``mqhook.events.model``; tests check both writers against them field by field.

Why it is fast (bench/test_bench_events.py): one pass writes every field into a reused C buffer,
then one bytes object is made. Strings stored one byte per character (ASCII: client ids, topics,
addresses) are copied from the str's own memory, escaping only ``"``, ``\\`` and control characters;
a payload that is printable ASCII is copied as is; ids, timestamps and numbers are formatted in C.
Anything unusual (non-UTF-8 payload bytes, lone surrogates) takes the slower exact path through
Python (``bytes.decode("utf-8", "replace")``), so output never differs. ``pub_props`` arrive as
JSON already (the caller encodes the rare non-empty property block). The module imports nothing
from mqhook.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint64_t
from libc.string cimport memcpy

from binascii import b2a_base64


cdef extern from "Python.h":
    void *PyMem_Realloc(void *p, size_t n)
    void PyMem_Free(void *p)
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL
    int PyUnicode_IS_COMPACT_ASCII(object s)
    void *PyUnicode_DATA(object s)
    Py_ssize_t PyUnicode_GET_LENGTH(object s)


cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk_id, timespec *tp)
    int CLOCK_REALTIME


cdef const char *_HEX = b"0123456789ABCDEF"
cdef bytes _EMPTY_PROPS = b'{"User-Property":{}}'

# Byte classes for JSON strings: 0 = copy, 1 = escape (control, '"', '\\'), 2 = non-ASCII.
cdef uint8_t _CLASS[256]
cdef int _b
for _b in range(256):
    _CLASS[_b] = 1 if (_b < 0x20 or _b == 0x22 or _b == 0x5C) else (2 if _b >= 0x80 else 0)


# --- the output buffer: one per process, grown as needed, reused by every call ---------------------
# Not reentrant: nothing called while an event is written (bytes.decode, b2a_base64) can
# write another. A buffer grown past KEEP_BUFFER by a large payload is given back after that event.

cdef Py_ssize_t KEEP_BUFFER = 1 << 20

cdef char *_buf = NULL
cdef Py_ssize_t _cap = 0
cdef Py_ssize_t _len = 0


cdef void _shrink():
    global _buf, _cap
    PyMem_Free(_buf)
    _buf = NULL
    _cap = 0


cdef int _reserve(Py_ssize_t extra) except -1:
    global _buf, _cap
    cdef Py_ssize_t need = _len + extra
    cdef Py_ssize_t cap
    cdef char *p
    if need <= _cap:
        return 0
    cap = _cap * 2 if _cap else 4096
    while cap < need:
        cap *= 2
    p = <char *>PyMem_Realloc(_buf, cap)
    if p == NULL:
        raise MemoryError()
    _buf = p
    _cap = cap
    return 0


cdef inline int _put(const char *s, Py_ssize_t n) except -1:
    global _len
    _reserve(n)
    memcpy(_buf + _len, s, n)
    _len += n
    return 0


cdef inline int _put_bytes(bytes b) except -1:
    return _put(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))


cdef const char *_PAIRS = (
    b"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    b"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    b"8081828384858687888990919293949596979899"
)


cdef int _put_uint(uint64_t v) except -1:
    """Decimal digits of ``v``, two at a time."""
    cdef char tmp[24]
    cdef int i = 24
    cdef uint64_t q
    while v >= 100:
        q = v // 100
        i -= 2
        memcpy(tmp + i, _PAIRS + 2 * (v - q * 100), 2)
        v = q
    if v >= 10:
        i -= 2
        memcpy(tmp + i, _PAIRS + 2 * v, 2)
    else:
        i -= 1
        tmp[i] = <char>(48 + v)
    return _put(tmp + i, 24 - i)


cdef inline Py_ssize_t _plain_prefix(const uint8_t *s, Py_ssize_t n, bint ascii_only) nogil:
    """How many leading bytes of ``s`` need no escaping (and, with ``ascii_only``, are ASCII).

    Eight bytes at a time (SWAR): a byte needs a look if it is below 0x20, '"' or '\\' (or >= 0x80)."""
    cdef Py_ssize_t i = 0
    cdef uint64_t w, t
    cdef uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL
    while i + 8 <= n:
        memcpy(&w, s + i, 8)
        t = (w - ones * 0x20) & ~w  # high bit set where a byte < 0x20 (bytes < 0x80)
        t |= ((w ^ (ones * 0x22)) - ones) & ~(w ^ (ones * 0x22))  # == '"'
        t |= ((w ^ (ones * 0x5C)) - ones) & ~(w ^ (ones * 0x5C))  # == '\\'
        if ascii_only:
            t |= w
        if t & highs:
            break
        i += 8
    while i < n and _CLASS[s[i]] == 0:
        i += 1
    return i


cdef int _put_quoted(const uint8_t *s, Py_ssize_t n, Py_ssize_t plain) except -1:
    """Valid UTF-8 ``s`` as a JSON string, quotes included: '"', '\\' and controls escaped, the rest
    copied. ``plain``: how many leading bytes are known to need no escaping (-1: not known yet)."""
    global _len
    cdef Py_ssize_t i, start = plain if plain >= 0 else _plain_prefix(s, n, False)
    cdef uint8_t c
    _reserve(n * 6 + 2)
    _buf[_len] = b'"'
    _len += 1
    if start == n:
        memcpy(_buf + _len, s, n)
        _buf[_len + n] = b'"'
        _len += n + 1
        return 0
    if start:
        memcpy(_buf + _len, s, start)
        _len += start
    for i in range(start, n):
        c = s[i]
        if _CLASS[c] != 1:
            continue
        if i > start:
            memcpy(_buf + _len, s + start, i - start)
            _len += i - start
        start = i + 1
        _buf[_len] = b"\\"
        if c == 0x22 or c == 0x5C:
            _buf[_len + 1] = <char>c
            _len += 2
        elif c == 0x0A:
            _buf[_len + 1] = b"n"
            _len += 2
        elif c == 0x0D:
            _buf[_len + 1] = b"r"
            _len += 2
        elif c == 0x09:
            _buf[_len + 1] = b"t"
            _len += 2
        else:
            memcpy(_buf + _len + 1, b"u00", 3)
            _buf[_len + 4] = _HEX[c >> 4]
            _buf[_len + 5] = _HEX[c & 15]
            _len += 6
    if n > start:
        memcpy(_buf + _len, s + start, n - start)
        _len += n - start
    _buf[_len] = b'"'
    _len += 1
    return 0


cdef int _put_str(str s) except -1:
    """``s`` as a JSON string. ASCII is read in place, other text via its UTF-8. Strings from MQTT are
    strict UTF-8 and hold no lone surrogates; one that did raises UnicodeEncodeError, as msgspec does."""
    cdef Py_ssize_t n
    cdef const char *p
    if PyUnicode_IS_COMPACT_ASCII(s):
        return _put_quoted(<const uint8_t *>PyUnicode_DATA(s), PyUnicode_GET_LENGTH(s), -1)
    p = PyUnicode_AsUTF8AndSize(s, &n)
    return _put_quoted(<const uint8_t *>p, n, -1)


cdef int _put_payload(bytes payload, bint base64) except -1:
    cdef const uint8_t *p = <const uint8_t *>PyBytes_AS_STRING(payload)
    cdef Py_ssize_t i, plain, n = PyBytes_GET_SIZE(payload)
    cdef bytes b64
    if base64:
        b64 = b2a_base64(payload, newline=False)
        _put(b'"', 1)
        _put_bytes(b64)
        return _put(b'"', 1)
    plain = i = _plain_prefix(p, n, True)  # one scan: printable ASCII needs no escaping and no decoding
    while i < n and _CLASS[p[i]] != 2:
        i += 1
    if i < n:  # not ASCII: decode as EMQX does, invalid bytes -> U+FFFD
        return _put_str(payload.decode("utf-8", "replace"))
    return _put_quoted(p, n, plain)


cdef uint64_t _now_ms():
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <uint64_t>ts.tv_sec * 1000 + <uint64_t>(ts.tv_nsec // 1000000)


# --- the writer --------------------------------------------------------------------------------------

def message_event(
    bytes head,
    bytes node,
    str clientid,
    str username,
    str peerhost,
    str peername,
    str mid,
    bytes payload,
    bint base64,
    str topic,
    int qos,
    bint retain,
    bint dup,
    bytes pub_props,
    double received_at,
    str from_clientid,
    str from_username,
    bytes tail,
):
    """One message event as JSON bytes; see ``mqhook._eventjson_py.message_event`` for the fields.

    The caller reads the message's attributes: CPython's specialised attribute loads are cheaper
    than the C API's generic ones, which would be this function's largest cost."""
    global _len
    _len = 0
    _put_bytes(head)
    _put_uint(_now_ms())
    _put(b',"node":', 8)
    _put_bytes(node)
    _put(b',"clientid":', 12)
    _put_str(clientid)
    _put(b',"username":', 12)
    _put_str(username)
    _put(b',"id":', 6)
    _put_str(mid)
    _put(b',"payload":', 11)
    _put_payload(payload, base64)
    _put(b',"peerhost":', 12)
    _put_str(peerhost)
    _put(b',"peername":', 12)
    _put_str(peername)
    _put(b',"topic":', 9)
    _put_str(topic)
    _put(b',"qos":', 7)
    _put_uint(qos)
    if retain:
        _put(b',"flags":{"retain":true,"dup":', 30)
    else:
        _put(b',"flags":{"retain":false,"dup":', 31)
    if dup:
        _put(b'true}', 5)
    else:
        _put(b'false}', 6)
    _put(b',"pub_props":', 13)
    _put_bytes(_EMPTY_PROPS if pub_props is None else pub_props)
    _put(b',"publish_received_at":', 23)
    _put_uint(<uint64_t>(received_at * 1000.0))
    if from_clientid is not None:
        _put(b',"from_clientid":', 17)
        _put_str(from_clientid)
        _put(b',"from_username":', 17)
        _put_str(from_username)
    _put_bytes(tail)
    out = PyBytes_FromStringAndSize(_buf, _len)
    if _cap > KEEP_BUFFER:
        _shrink()
    return out
