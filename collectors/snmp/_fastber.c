/* collectors.snmp._fastber: the SNMP v1/v2c decoder's hot loop (collectors/snmp/wire.py's
 * decode_message and neutral) in C.
 *
 * Why: on a metered-outlet PDU these two Python functions were about a sixth of the
 * collector's CPU (py-spy, issue #15); they are a byte loop and tuple building, what the
 * interpreter does slowest. wire.py stays the reference: this module transcribes its checks
 * in the same order and raises its WireError with the same messages, and the tests run
 * both on the same inputs (tests/collectors/snmp/test_fastber.py). wire.py hands over its
 * WireError, Message, OID cache and fall-backs with setup() at import.
 *
 * Every read of the datagram is bounds-checked against the end of its container before it
 * happens; lengths are compared as unsigned 64-bit numbers against what is left, so no
 * length (up to 4 bytes long) can wrap a position.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T_INTEGER 0x02
#define T_OCTET_STRING 0x04
#define T_NULL 0x05
#define T_OID 0x06
#define T_SEQUENCE 0x30
#define T_IP_ADDRESS 0x40
#define T_COUNTER32 0x41
#define T_GAUGE32 0x42
#define T_TIMETICKS 0x43
#define T_OPAQUE 0x44
#define T_COUNTER64 0x46
#define T_NO_SUCH_OBJECT 0x80
#define T_NO_SUCH_INSTANCE 0x81
#define T_END_OF_MIB_VIEW 0x82

/* Set by setup() (wire.py, at import); strong references kept for the process's life. */
static PyObject *WireError;   /* wire.WireError */
static PyObject *MessageType; /* wire.Message */
static PyObject *seen;        /* wire._oid_of_bytes: OID content bytes -> arcs tuple */
static PyObject *cached_oid;  /* wire._cached_oid: a cache miss */
static PyObject *oid_str;     /* wire.oid_str: an OBJECT IDENTIFIER value */
static PyObject *py_neutral;  /* wire._py_neutral: anything but a list of (bytes, int, v) */
static PyObject *names[256];  /* wire.NEUTRAL_NAMES by tag (NULL: not a known tag) */
static PyObject *oid_name;    /* "ObjectIdentifier" */
/* wire.Message's fields, in order, and where their slots are in an instance */
#define N_FIELDS 7
static const char *field_names[N_FIELDS] = {
    "version", "community", "pdu_type", "request_id", "error_status", "error_index", "varbinds",
};
static Py_ssize_t slot_offset[N_FIELDS];
static int slots_ok; /* Message's fields are plain object slots: filled directly */

static int
fail(const char *msg)
{
    PyErr_SetString(WireError, msg);
    return -1;
}

static int
fail_tag(const char *fmt, int tag)
{
    char buf[96];
    snprintf(buf, sizeof buf, fmt, tag);
    return fail(buf);
}

/* wire._header: (tag, content start, content end) of the TLV at pos, within [.., end). */
static int
header(const unsigned char *d, Py_ssize_t pos, Py_ssize_t end, int *tag, Py_ssize_t *start,
       Py_ssize_t *stop)
{
    if (end - pos < 2)
        return fail("truncated TLV header");
    int t = d[pos];
    if ((t & 0x1F) == 0x1F)
        return fail("multi-byte tags are not used by SNMP");
    uint64_t n = d[pos + 1];
    pos += 2;
    if (n & 0x80) {
        int k = (int)(n & 0x7F);
        if (k == 0)
            return fail("indefinite length is not allowed in SNMP");
        if (k > 4 || k > end - pos)
            return fail("bad long-form length");
        n = 0;
        for (int i = 0; i < k; i++)
            n = (n << 8) | d[pos + i];
        pos += k;
    }
    if (n > (uint64_t)(end - pos))
        return fail("length runs past the end of its container");
    *tag = t;
    *start = pos;
    *stop = pos + (Py_ssize_t)n;
    return 0;
}

/* int.from_bytes(d[0:len], "big", signed=True) for 1 <= len <= 9. */
static PyObject *
signed_int(const unsigned char *d, Py_ssize_t len)
{
    if (len <= 8) {
        uint64_t u = (d[0] & 0x80) ? ~(uint64_t)0 : 0;
        for (Py_ssize_t i = 0; i < len; i++)
            u = (u << 8) | d[i];
        return PyLong_FromLongLong((long long)(int64_t)u);
    }
    /* 9 bytes: a signed high byte and an unsigned 64-bit low part. */
    int hi = (int)(signed char)d[0];
    uint64_t lo = 0;
    for (int i = 1; i < 9; i++)
        lo = (lo << 8) | d[i];
    if (hi == 0)
        return PyLong_FromUnsignedLongLong(lo);
    if (hi == -1 && (lo >> 63))
        return PyLong_FromLongLong((long long)(int64_t)lo);
    PyObject *h = PyLong_FromLong(hi), *l = PyLong_FromUnsignedLongLong(lo);
    PyObject *shift = PyLong_FromLong(64), *hs = NULL, *r = NULL;
    if (h && l && shift && (hs = PyNumber_Lshift(h, shift)))
        r = PyNumber_Add(hs, l);
    Py_XDECREF(h);
    Py_XDECREF(l);
    Py_XDECREF(shift);
    Py_XDECREF(hs);
    return r;
}

/* wire._int: the checks, then the value. */
static PyObject *
int_value(const unsigned char *d, Py_ssize_t start, Py_ssize_t stop)
{
    if (start == stop)
        return fail("empty INTEGER"), NULL;
    if (stop - start > 9)
        return fail("INTEGER longer than 9 bytes"), NULL;
    return signed_int(d + start, stop - start);
}

/* wire._expect_int */
static PyObject *
expect_int(const unsigned char *d, Py_ssize_t *pos, Py_ssize_t end, const char *what)
{
    int tag;
    Py_ssize_t start, stop;
    if (header(d, *pos, end, &tag, &start, &stop) < 0)
        return NULL;
    if (tag != T_INTEGER) {
        char buf[96];
        snprintf(buf, sizeof buf, "%s: INTEGER expected, found tag 0x%02x", what, tag);
        return fail(buf), NULL;
    }
    *pos = stop;
    return int_value(d, start, stop);
}

/* wire._check_oid */
static int
check_oid(const unsigned char *d, Py_ssize_t start, Py_ssize_t stop)
{
    if (start == stop)
        return fail("empty OBJECT IDENTIFIER");
    if (d[stop - 1] & 0x80)
        return fail("OBJECT IDENTIFIER ends inside an arc");
    int prev_end = 1;
    for (Py_ssize_t i = start; i < stop; i++) {
        unsigned char b = d[i];
        if (prev_end && b == 0x80)
            return fail("non-minimal OID arc");
        prev_end = !(b & 0x80);
    }
    return 0;
}

static PyObject *
slice(const unsigned char *d, Py_ssize_t start, Py_ssize_t stop)
{
    return PyBytes_FromStringAndSize((const char *)d + start, stop - start);
}

/* An unsigned type's value: wire._int's checks, then 0 <= x <= max (max: 2**32-1 or
 * 2**64-1), else "<name> out of range". */
static PyObject *
unsigned_value(const unsigned char *d, Py_ssize_t start, Py_ssize_t stop, int tag)
{
    if (start == stop)
        return fail("empty INTEGER"), NULL;
    Py_ssize_t len = stop - start;
    if (len > 9)
        return fail("INTEGER longer than 9 bytes"), NULL;
    const unsigned char *p = d + start;
    int ok = !(p[0] & 0x80); /* not negative */
    uint64_t u = 0;
    if (ok && len == 9 && p[0] != 0)
        ok = 0; /* 2**64 or more */
    if (ok) {
        for (Py_ssize_t i = 0; i < len; i++)
            u = (u << 8) | p[i]; /* with 9 bytes, the leading 0 shifts out */
        if (tag != T_COUNTER64 && u > 0xFFFFFFFFu)
            ok = 0;
    }
    if (!ok) {
        const char *name = tag == T_COUNTER32 ? "Counter32"
                           : tag == T_GAUGE32 ? "Gauge32"
                           : tag == T_TIMETICKS ? "TimeTicks"
                                                : "Counter64";
        char buf[64];
        snprintf(buf, sizeof buf, "%s out of range", name);
        return fail(buf), NULL;
    }
    return PyLong_FromUnsignedLongLong(u);
}

/* wire._value */
static PyObject *
value(const unsigned char *d, int tag, Py_ssize_t start, Py_ssize_t stop)
{
    switch (tag) {
    case T_INTEGER:
        return int_value(d, start, stop);
    case T_COUNTER32:
    case T_GAUGE32:
    case T_TIMETICKS:
    case T_COUNTER64:
        return unsigned_value(d, start, stop, tag);
    case T_IP_ADDRESS:
        if (stop - start != 4)
            return fail("IpAddress is not 4 bytes"), NULL;
        return slice(d, start, stop);
    case T_OCTET_STRING:
    case T_OPAQUE:
        return slice(d, start, stop);
    case T_NULL:
    case T_NO_SUCH_OBJECT:
    case T_NO_SUCH_INSTANCE:
    case T_END_OF_MIB_VIEW:
        if (stop != start) {
            const char *name = tag == T_NULL             ? "Null"
                               : tag == T_NO_SUCH_OBJECT ? "NoSuchObject"
                               : tag == T_NO_SUCH_INSTANCE ? "NoSuchInstance"
                                                           : "EndOfMibView";
            char buf[64];
            snprintf(buf, sizeof buf, "%s with content", name);
            return fail(buf), NULL;
        }
        Py_RETURN_NONE;
    case T_OID:
        if (check_oid(d, start, stop) < 0)
            return NULL;
        return slice(d, start, stop);
    default:
        return fail_tag("unknown value tag 0x%02x", tag), NULL;
    }
}

/* One var-bind at *pos (within the list ending at vend): appended to vbs as
 * (oid bytes, tag, value). Transcribes wire.decode_message's loop body. */
static int
varbind(const unsigned char *d, Py_ssize_t *ppos, Py_ssize_t vend, PyObject *vbs)
{
    Py_ssize_t pos = *ppos, bend, start;
    int tag;
    if (vend - pos >= 2 && d[pos] == T_SEQUENCE && d[pos + 1] < 0x80) {
        if ((Py_ssize_t)d[pos + 1] > vend - pos - 2)
            return fail("length runs past the end of its container");
        bend = pos + 2 + d[pos + 1];
        pos += 2;
    }
    else {
        if (header(d, pos, vend, &tag, &pos, &bend) < 0)
            return -1;
        if (tag != T_SEQUENCE)
            return fail("var-bind: SEQUENCE expected");
    }
    if (bend - pos >= 2 && d[pos] == T_OID && d[pos + 1] < 0x80) {
        start = pos + 2;
        if ((Py_ssize_t)d[pos + 1] > bend - start)
            return fail("length runs past the end of its container");
        pos = start + d[pos + 1];
    }
    else {
        if (header(d, pos, bend, &tag, &start, &pos) < 0)
            return -1;
        if (tag != T_OID)
            return fail("var-bind name: OBJECT IDENTIFIER expected");
    }
    PyObject *oid = slice(d, start, pos);
    if (oid == NULL)
        return -1;
    /* wire.py skips the check for an OID in its cache (seen, and checked, before); the check
     * costs less here than the look-up, so the look-up is made only for an OID that fails
     * it (one put in the cache by other means): the same answer either way. */
    if (check_oid(d, start, pos) < 0) {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb); /* the check's WireError, raised if not in the cache */
        int known = PyDict_Contains(seen, oid);
        if (known == 0)
            PyErr_Restore(et, ev, tb);
        else {
            Py_XDECREF(et);
            Py_XDECREF(ev);
            Py_XDECREF(tb);
        }
        if (known <= 0)
            goto error;
    }
    int vtag;
    if (bend - pos >= 2 && d[pos + 1] < 0x80 && (Py_ssize_t)d[pos + 1] == bend - pos - 2) {
        vtag = d[pos]; /* short form, ending the var-bind */
        start = pos + 2;
        pos = bend;
        if ((vtag & 0x1F) == 0x1F) {
            fail("multi-byte tags are not used by SNMP");
            goto error;
        }
    }
    else {
        if (header(d, pos, bend, &vtag, &start, &pos) < 0)
            goto error;
        if (pos != bend) {
            fail("trailing bytes in a var-bind");
            goto error;
        }
    }
    PyObject *v = value(d, vtag, start, pos);
    if (v == NULL)
        goto error;
    PyObject *t = PyLong_FromLong(vtag); /* a small int: cached, never fails in practice */
    PyObject *vb = t ? PyTuple_New(3) : NULL;
    if (vb == NULL) {
        Py_XDECREF(t);
        Py_DECREF(v);
        goto error;
    }
    PyTuple_SET_ITEM(vb, 0, oid);
    PyTuple_SET_ITEM(vb, 1, t);
    PyTuple_SET_ITEM(vb, 2, v);
    int r = PyList_Append(vbs, vb);
    Py_DECREF(vb);
    *ppos = pos;
    return r;
error:
    Py_DECREF(oid);
    return -1;
}

/* wire.Message(*fields). The dataclass's __init__ (frozen: object.__setattr__ per field)
 * cost as much as decoding 25 var-binds; when its fields are plain slots (checked by
 * setup()), the instance is allocated and its slots filled as object.__setattr__ would. */
static PyObject *
new_message(PyObject **fields)
{
    if (!slots_ok)
        return PyObject_Vectorcall(MessageType, fields, N_FIELDS, NULL);
    PyTypeObject *type = (PyTypeObject *)MessageType;
    PyObject *m = type->tp_alloc(type, 0);
    if (m == NULL)
        return NULL;
    for (int i = 0; i < N_FIELDS; i++) {
        Py_INCREF(fields[i]);
        *(PyObject **)((char *)m + slot_offset[i]) = fields[i];
    }
    return m;
}

static int
pdu_ok(int t)
{
    switch (t) {
    case 0xA0: case 0xA1: case 0xA2: case 0xA5: case 0xA3: case 0xA6: case 0xA7: case 0xA8:
        return 1;
    default:
        return 0;
    }
}

static PyObject *
decode_message(PyObject *self, PyObject *arg)
{
    if (MessageType == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "collectors.snmp._fastber: setup() not called");
        return NULL;
    }
    PyObject *data;
    if (PyBytes_Check(arg)) {
        data = arg;
        Py_INCREF(data);
    }
    else if ((data = PyObject_CallOneArg((PyObject *)&PyBytes_Type, arg)) == NULL)
        return NULL; /* bytes(data), as wire.decode_message does */
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t end = PyBytes_GET_SIZE(data), pos, mend, start, pend, vend;
#ifdef FASTBER_FUZZ
    /* tools/fuzz_fastber.py (AddressSanitizer): the datagram in a buffer of its exact size,
     * so that a read one byte past its end is reported (a bytes object has a spare NUL) */
    unsigned char *copy = malloc(end ? end : 1);
    if (copy == NULL) {
        Py_DECREF(data);
        return PyErr_NoMemory();
    }
    memcpy(copy, d, end);
    d = copy;
#endif
    PyObject *version = NULL, *community = NULL, *rid = NULL, *status = NULL, *index = NULL;
    PyObject *vbs = NULL, *result = NULL;
    int tag, pdu_type;

    if (header(d, 0, end, &tag, &pos, &mend) < 0)
        goto done;
    if (tag != T_SEQUENCE) {
        fail("not a SEQUENCE");
        goto done;
    }
    if (mend != end) {
        fail("trailing bytes after the message");
        goto done;
    }
    if ((version = expect_int(d, &pos, mend, "version")) == NULL)
        goto done;
    long v = PyLong_AsLong(version);
    if (v == -1 && PyErr_Occurred())
        PyErr_Clear(); /* wider than a long: not 0 or 1 */
    if (v != 0 && v != 1) {
        PyObject *msg = PyUnicode_FromFormat("version %S is not SNMPv1/v2c", version);
        if (msg != NULL) {
            PyErr_SetObject(WireError, msg);
            Py_DECREF(msg);
        }
        goto done;
    }
    if (header(d, pos, mend, &tag, &start, &pos) < 0)
        goto done;
    if (tag != T_OCTET_STRING) {
        fail("community: OCTET STRING expected");
        goto done;
    }
    if ((community = slice(d, start, pos)) == NULL)
        goto done;
    if (header(d, pos, mend, &pdu_type, &pos, &pend) < 0)
        goto done;
    if (!pdu_ok(pdu_type)) {
        fail_tag("unsupported PDU type 0x%02x", pdu_type);
        goto done;
    }
    if (pend != mend) {
        fail("trailing bytes after the PDU");
        goto done;
    }
    if ((rid = expect_int(d, &pos, pend, "request-id")) == NULL)
        goto done;
    if ((status = expect_int(d, &pos, pend, "error-status")) == NULL)
        goto done;
    if ((index = expect_int(d, &pos, pend, "error-index")) == NULL)
        goto done;
    if (header(d, pos, pend, &tag, &pos, &vend) < 0)
        goto done;
    if (tag != T_SEQUENCE || vend != pend) {
        fail("var-bind list: SEQUENCE expected, ending the PDU");
        goto done;
    }
    if ((vbs = PyList_New(0)) == NULL)
        goto done;
    while (pos < vend)
        if (varbind(d, &pos, vend, vbs) < 0)
            goto done;
    PyObject *pt = PyLong_FromLong(pdu_type);
    if (pt == NULL)
        goto done;
    PyObject *fields[N_FIELDS] = {version, community, pt, rid, status, index, vbs};
    result = new_message(fields);
    Py_DECREF(pt);
done:
    Py_XDECREF(version);
    Py_XDECREF(community);
    Py_XDECREF(rid);
    Py_XDECREF(status);
    Py_XDECREF(index);
    Py_XDECREF(vbs);
    Py_DECREF(data);
#ifdef FASTBER_FUZZ
    free(copy);
#endif
    return result;
}

/* One var-bind in the neutral form: (arcs, (name, value)). oid and val belong to a tuple
 * that is referenced for the whole call (the callbacks cannot free them). */
static PyObject *
one(PyObject *oid, long t, PyObject *val)
{
    /* As wire.neutral: the name's arcs first (a cache miss may raise), then the value. */
    PyObject *arcs = PyDict_GetItemWithError(seen, oid); /* borrowed */
    if (arcs != NULL)
        Py_INCREF(arcs);
    else if (PyErr_Occurred() || (arcs = PyObject_CallOneArg(cached_oid, oid)) == NULL)
        return NULL;
    PyObject *name, *v;
    if (t == T_OID) {
        if ((v = PyObject_CallOneArg(oid_str, val)) == NULL) {
            Py_DECREF(arcs);
            return NULL;
        }
        name = oid_name;
    }
    else {
        name = names[t];
        v = val;
        Py_INCREF(v);
    }
    Py_INCREF(name);
    PyObject *tv = PyTuple_New(2);
    if (tv == NULL) {
        Py_DECREF(arcs);
        Py_DECREF(name);
        Py_DECREF(v);
        return NULL;
    }
    PyTuple_SET_ITEM(tv, 0, name);
    PyTuple_SET_ITEM(tv, 1, v);
    PyObject *pair = PyTuple_New(2);
    if (pair == NULL) {
        Py_DECREF(arcs);
        Py_DECREF(tv);
        return NULL;
    }
    PyTuple_SET_ITEM(pair, 0, arcs);
    PyTuple_SET_ITEM(pair, 1, tv);
    return pair;
}

/* wire.neutral for a list of (bytes, int, value) tuples with known tags; anything else goes
 * to the Python function whole (it raises what it raises). */
static PyObject *
neutral(PyObject *self, PyObject *vbs)
{
    if (py_neutral == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "collectors.snmp._fastber: setup() not called");
        return NULL;
    }
    if (!PyList_CheckExact(vbs))
        return PyObject_CallOneArg(py_neutral, vbs);
    Py_ssize_t n = PyList_GET_SIZE(vbs);
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i >= PyList_GET_SIZE(vbs))
            goto fallback; /* the list changed under a callback: let Python do it */
        PyObject *item = PyList_GET_ITEM(vbs, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 3)
            goto fallback;
        PyObject *oid = PyTuple_GET_ITEM(item, 0), *tag = PyTuple_GET_ITEM(item, 1);
        PyObject *val = PyTuple_GET_ITEM(item, 2);
        if (!PyBytes_CheckExact(oid) || !PyLong_CheckExact(tag))
            goto fallback;
        long t = PyLong_AsLong(tag);
        if (t == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            goto fallback;
        }
        if (t == T_OID ? !PyBytes_Check(val) : (t < 0 || t > 255 || names[t] == NULL))
            goto fallback;
        Py_INCREF(item); /* a callback (a cache miss) runs Python code */
        PyObject *pair = one(oid, t, val);
        Py_DECREF(item);
        if (pair == NULL)
            goto error;
        PyList_SET_ITEM(out, i, pair);
    }
    return out;
fallback:
    Py_DECREF(out);
    return PyObject_CallOneArg(py_neutral, vbs);
error:
    Py_DECREF(out);
    return NULL;
}

/* -- codec.Walk.feed's loop ------------------------------------------------------------------
 * walk_feed(batch, var_binds, ticks, cells, cursors, ended, looped, exceptions, max_rows):
 * codec.Walk._feed_py's loop over one answer's var-binds, by place j = k % len(batch) in the
 * batch: cells[j] (the column's rows), cursors[j] and ended[j] updated in place, a column
 * that does not move forward appended to looped. Returns True, or False without touching
 * anything when the arguments are not the plain types it expects (lists, tuples, dicts): the
 * Python loop runs then. */

/* oid[:lc] == col, for tuples, col of length lc (as Python compares them) */
static int
prefix_eq(PyObject *oid, PyObject *col, Py_ssize_t lc)
{
    for (Py_ssize_t i = 0; i < lc; i++) {
        PyObject *a = PyTuple_GET_ITEM(oid, i), *b = PyTuple_GET_ITEM(col, i);
        if (a == b)
            continue;
        int eq = PyObject_RichCompareBool(a, b, Py_EQ);
        if (eq <= 0)
            return eq;
    }
    return 1;
}

/* a tuple of ints: comparing and hashing it runs no Python code */
static int
int_tuple(PyObject *t)
{
    if (!PyTuple_CheckExact(t))
        return 0;
    for (Py_ssize_t i = 0, n = PyTuple_GET_SIZE(t); i < n; i++)
        if (!PyLong_CheckExact(PyTuple_GET_ITEM(t, i)))
            return 0;
    return 1;
}

static PyObject *
walk_feed(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "walk_feed takes 9 arguments");
        return NULL;
    }
    PyObject *batch = args[0], *vbs = args[1], *ticks = args[2], *cells = args[3];
    PyObject *cursors = args[4], *ended = args[5], *looped = args[6], *exceptions = args[7];
    Py_ssize_t max_rows = PyLong_AsSsize_t(args[8]);
    if (max_rows == -1 && PyErr_Occurred())
        return NULL;
    if (!PyList_CheckExact(batch) || !PyList_CheckExact(vbs) || !PyList_CheckExact(cells) ||
        !PyList_CheckExact(cursors) || !PyList_CheckExact(ended) || !PyList_CheckExact(looped) ||
        !PyAnySet_CheckExact(exceptions))
        Py_RETURN_FALSE;
    Py_ssize_t n = PyList_GET_SIZE(batch), nv = PyList_GET_SIZE(vbs);
    if (n == 0 || PyList_GET_SIZE(cells) != n || PyList_GET_SIZE(cursors) != n ||
        PyList_GET_SIZE(ended) != n)
        Py_RETURN_FALSE;
    for (Py_ssize_t j = 0; j < n; j++)
        if (!int_tuple(PyList_GET_ITEM(batch, j)) || !int_tuple(PyList_GET_ITEM(cursors, j)) ||
            !PyDict_CheckExact(PyList_GET_ITEM(cells, j)) ||
            PyList_GET_ITEM(ended, j) != Py_False)
            Py_RETURN_FALSE;
    for (Py_ssize_t k = 0; k < nv; k++) {
        PyObject *vb = PyList_GET_ITEM(vbs, k), *val;
        if (!PyTuple_CheckExact(vb) || PyTuple_GET_SIZE(vb) != 2 ||
            !int_tuple(PyTuple_GET_ITEM(vb, 0)) || !PyTuple_CheckExact(val = PyTuple_GET_ITEM(vb, 1)) ||
            PyTuple_GET_SIZE(val) < 1 || !PyUnicode_CheckExact(PyTuple_GET_ITEM(val, 0)))
            Py_RETURN_FALSE;
    }
    /* From here on no Python code runs (ints compared and hashed, str looked up in a set),
     * so nothing changes the lists under the loop but the loop itself; every object used is
     * held by them or by the caller's var_binds. */
    PyObject *result = Py_True;
    for (Py_ssize_t k = 0; k < nv; k++) {
        Py_ssize_t j = k % n;
        if (PyList_GET_ITEM(ended, j) == Py_True)
            continue;
        PyObject *vb = PyList_GET_ITEM(vbs, k);
        PyObject *oid = PyTuple_GET_ITEM(vb, 0), *val = PyTuple_GET_ITEM(vb, 1);
        PyObject *col = PyList_GET_ITEM(batch, j);
        Py_ssize_t lc = PyTuple_GET_SIZE(col);
        int stop = PySet_Contains(exceptions, PyTuple_GET_ITEM(val, 0));
        if (stop < 0)
            goto error;
        if (!stop)
            stop = PyTuple_GET_SIZE(oid) <= lc;
        if (!stop) {
            int eq = prefix_eq(oid, col, lc);
            if (eq < 0)
                goto error;
            stop = !eq;
        }
        if (!stop) {
            int le = PyObject_RichCompareBool(oid, PyList_GET_ITEM(cursors, j), Py_LE);
            if (le < 0)
                goto error;
            if (le) { /* not lexicographically after: a broken agent */
                if (PyList_Append(looped, col) < 0)
                    goto error;
                stop = 1;
            }
        }
        if (stop) {
            Py_INCREF(Py_True);
            PyList_SetItem(ended, j, Py_True); /* steals; releases the False */
            continue;
        }
        PyObject *rows = PyList_GET_ITEM(cells, j);
        PyObject *index = PyTuple_GetSlice(oid, lc, PyTuple_GET_SIZE(oid));
        PyObject *cell = index ? PyTuple_Pack(2, val, ticks) : NULL;
        int r = cell ? PyDict_SetItem(rows, index, cell) : -1;
        Py_XDECREF(index);
        Py_XDECREF(cell);
        if (r < 0)
            goto error;
        Py_INCREF(oid);
        PyList_SetItem(cursors, j, oid);
        if (PyDict_GET_SIZE(rows) >= max_rows) {
            Py_INCREF(Py_True);
            PyList_SetItem(ended, j, Py_True);
        }
    }
    Py_INCREF(result);
    return result;
error:
    return NULL;
}

/* 1 when every field of Message is an object slot (a member descriptor of type
 * T_OBJECT_EX, writable) of a type whose instances need nothing else set up; 0 otherwise
 * (its __init__ is called then). The fields must be exactly field_names, in order. */
static int
message_slots(PyObject *msg)
{
    if (!PyType_Check(msg))
        return 0;
    PyTypeObject *type = (PyTypeObject *)msg;
    if (type->tp_new != PyBaseObject_Type.tp_new || type->tp_alloc != PyType_GenericAlloc)
        return 0;
    PyObject *fields = PyObject_GetAttrString(msg, "__match_args__");
    if (fields == NULL) {
        PyErr_Clear();
        return 0;
    }
    int ok = PyTuple_Check(fields) && PyTuple_GET_SIZE(fields) == N_FIELDS;
    for (int i = 0; ok && i < N_FIELDS; i++) {
        PyObject *name = PyTuple_GET_ITEM(fields, i);
        ok = PyUnicode_Check(name) && PyUnicode_CompareWithASCIIString(name, field_names[i]) == 0;
        PyObject *d = ok ? PyDict_GetItemWithError(type->tp_dict, name) : NULL;
        if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type)) {
            ok = 0;
            break;
        }
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        ok = m->type == T_OBJECT_EX && !(m->flags & READONLY);
        slot_offset[i] = m->offset;
    }
    Py_DECREF(fields);
    if (PyErr_Occurred())
        return -1;
    return ok;
}

static PyObject *
setup(PyObject *self, PyObject *args)
{
    PyObject *err, *msg, *cache, *cached, *ostr, *pyneutral, *tagnames;
    if (!PyArg_ParseTuple(args, "OOO!OOOO!:setup", &err, &msg, &PyDict_Type, &cache, &cached,
                          &ostr, &pyneutral, &PyDict_Type, &tagnames))
        return NULL;
    PyObject *table[256] = {NULL};
    PyObject *key, *val;
    Py_ssize_t it = 0;
    while (PyDict_Next(tagnames, &it, &key, &val)) {
        long t = PyLong_AsLong(key);
        if (t == -1 && PyErr_Occurred())
            goto bad;
        if (t < 0 || t > 255 || !PyUnicode_Check(val)) {
            PyErr_SetString(PyExc_ValueError, "setup: names must map tags 0-255 to str");
            goto bad;
        }
        Py_INCREF(val);
        Py_XSETREF(table[t], val);
    }
    PyObject *oname = PyUnicode_InternFromString("ObjectIdentifier");
    if (oname == NULL)
        goto bad;
    for (int i = 0; i < 256; i++)
        Py_XSETREF(names[i], table[i]);
    Py_XSETREF(oid_name, oname);
    Py_INCREF(err);
    Py_XSETREF(WireError, err);
    Py_INCREF(msg);
    Py_XSETREF(MessageType, msg);
    slots_ok = message_slots(msg);
    if (slots_ok < 0)
        return NULL;
    Py_INCREF(cache);
    Py_XSETREF(seen, cache);
    Py_INCREF(cached);
    Py_XSETREF(cached_oid, cached);
    Py_INCREF(ostr);
    Py_XSETREF(oid_str, ostr);
    Py_INCREF(pyneutral);
    Py_XSETREF(py_neutral, pyneutral);
    Py_RETURN_NONE;
bad:
    for (int i = 0; i < 256; i++)
        Py_XDECREF(table[i]);
    return NULL;
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS,
     "setup(WireError, Message, oid_cache, cached_oid, oid_str, py_neutral, names): "
     "wire.py's objects this module uses."},
    {"decode_message", decode_message, METH_O,
     "decode_message(data) -> Message: wire.decode_message, compiled."},
    {"neutral", neutral, METH_O, "neutral(varbinds) -> list: wire.neutral, compiled."},
    {"walk_feed", (PyCFunction)(void (*)(void))walk_feed, METH_FASTCALL,
     "walk_feed(batch, var_binds, ticks, cells, cursors, ended, looped, exceptions, max_rows)"
     " -> bool: codec.Walk.feed's loop, compiled (False: not done, the arguments' types)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "collectors.snmp._fastber",
    "The SNMP v1/v2c decoder's hot loop in C (collectors/snmp/wire.py is the reference).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__fastber(void)
{
    return PyModule_Create(&module);
}
