/* exporter._fill: ``fill(fmt, values)``, the same bytes as ``fmt % values``, 3-4x cheaper for
 * the collector's format strings, and ``gather``, the values read for them (exporter/fill.py
 * says when and why).
 *
 * The collector formats every per-symbol family with one ``%`` of a format string holding one
 * line per symbol: ``name{labels} %.3f\n`` (receive times, staleness), ``%d`` (counts, states),
 * ``%s`` (texts msgspec already made). At 100,000 symbols Python's ``%`` spends most of its time
 * on work these lines do not need: parsing a general directive per value and, for ``%.3f``,
 * David Gay's arbitrary-precision dtoa. Here:
 *
 *   %.3f  of a float in [0, 2**53 / 1000): the value times 1000, rounded half to even, in 64-bit
 *         integers (a double is m * 2**e exactly, m below 2**53, so m * 1000 fits in 63 bits):
 *         the correctly rounded result Python's dtoa gives, digit for digit;
 *   %d    of an int within 64 bits;
 *   %s    of bytes;
 *   %%.
 *
 * Anything else (another directive, type or range, too few or too many values) hands the whole
 * call to Python's own ``%``: the result, or the error, is always exactly Python's.
 * tests/unit/test_fill.py checks that on millions of values, rounding ties included.
 *
 * ``fill_seconds(fmt, values)``: the venue-timestamp family's lines, whose ``%s`` take the
 * venue's raw stamps, ints of seconds or milliseconds (Polygon, Binance, Bybit), written as
 * seconds the way ``repr(exporter.book.to_seconds(v))`` writes them; a stamp of 0 (the venue
 * gave none: Binance's bookTicker) leaves its line out. None when a value is anything else
 * (microseconds, a float) or the format holds another directive: the collector then takes its
 * Python path.
 *
 * ``gather(objects, names)``: the values those lines take, read out of the symbols' states: per
 * name, the tuple of ``getattr(o, name)`` for every object of a list, all names in one pass over
 * the objects (each read while in the CPU's cache), a slot read through its member descriptor
 * found once, with no attribute lookup per object; anything else with ``getattr`` itself.
 */
/* The stable ABI of CPython 3.11: one compiled module for every later CPython (setup.py). */
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* The largest ``%.3f`` value taken here: below 2**53 / 1000, so value * 1000 stays exact. */
#define FIXED3_LIMIT 9007199254740.0
/* The most bytes one value other than bytes can take: a 64-bit integer with its sign (20), or
 * a %.3f below FIXED3_LIMIT (17). */
#define VALUE_MAX 24

/* "00" to "99": two digits per division. */
static const char PAIRS[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* ".ddd": three decimals of frac (below 1000). */
static char *put_decimals3(char *p, unsigned frac)
{
    *p++ = '.';
    *p++ = (char)('0' + frac / 100);
    memcpy(p, PAIRS + 2 * (frac % 100), 2);
    return p + 2;
}

static char *put_u64(char *p, uint64_t v)
{
    char digits[20];
    char *d = digits + sizeof digits;
    while (v >= 100) {
        unsigned pair = (unsigned)(v % 100);
        v /= 100;
        d -= 2;
        memcpy(d, PAIRS + 2 * pair, 2);
    }
    if (v >= 10) {
        d -= 2;
        memcpy(d, PAIRS + 2 * v, 2);
    } else {
        *--d = (char)('0' + v);
    }
    size_t n = (size_t)(digits + sizeof digits - d);
    memcpy(p, d, n);
    return p + n;
}

/* ``%.3f`` of x at p, or NULL when x is not in [+0.0, FIXED3_LIMIT), or is below 2**-10 (its
 * shift would pass 63 bits): Python's path then. */
static char *put_fixed3(char *p, double x)
{
    if (!(x >= 0.0 && x < FIXED3_LIMIT) || signbit(x))   /* -0.0 is "-0.000" */
        return NULL;
    uint64_t q = 0;   /* x * 1000, correctly rounded */
    if (x != 0.0) {
        uint64_t bits;
        memcpy(&bits, &x, sizeof bits);
        int exponent = (int)(bits >> 52);      /* the sign bit is 0 here */
        if (exponent == 0)
            return NULL;                       /* subnormal */
        /* x = m / 2**s exactly: the significand with its implicit bit; x < 2**44, so s >= 9 */
        uint64_t m = (bits & ((UINT64_C(1) << 52) - 1)) | (UINT64_C(1) << 52);
        int s = 1075 - exponent;
        if (s > 63)
            return NULL;
        uint64_t n = m * 1000;                 /* below 2**63 */
        uint64_t rest = n & ((UINT64_C(1) << s) - 1), half = UINT64_C(1) << (s - 1);
        q = n >> s;
        if (rest > half || (rest == half && (q & 1)))   /* half to even, as dtoa rounds */
            q++;
    }
    p = put_u64(p, q / 1000);
    return put_decimals3(p, (unsigned)(q % 1000));
}

/* A venue timestamp as ``repr(exporter.book.to_seconds(v))`` writes it, for an int v of seconds
 * (v <= 1e11) or milliseconds (1e11 < v <= 1e14), or NULL for any other v. With at most 14
 * digits the exact decimal of v / 1000 is the only shortest text that reads back as the double
 * the division gives (doubles hold 15 digits), so it is repr's: trailing zeros dropped, ".0"
 * when whole. */
static char *put_seconds(char *p, long long v)
{
    if (v <= 0 || v > 100000000000000LL)
        return NULL;
    unsigned frac = v > 100000000000LL ? (unsigned)(v % 1000) : 0;   /* milliseconds' */
    p = put_u64(p, (uint64_t)(v > 100000000000LL ? v / 1000 : v));
    if (frac == 0) {
        memcpy(p, ".0", 2);
        return p + 2;
    }
    p = put_decimals3(p, frac);
    while (p[-1] == '0')   /* repr's shortest text: trailing zeros dropped (frac has a digit) */
        p--;
    return p;
}

/* Both functions: ``fmt`` with its directives given ``values`` in turn. ``seconds``: only ``%s``
 * (and ``%%``), each given a venue timestamp (put_seconds); what cannot be written so makes the
 * result None. Otherwise ``%.3f``, ``%d``, ``%s`` as Python's ``%``, anything else handed to it. */
static PyObject *fill_with(PyObject *const *args, Py_ssize_t nargs, int seconds)
{
    if (nargs != 2 || !PyBytes_CheckExact(args[0]) || !PyTuple_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "expected (fmt: bytes, values: tuple)");
        return NULL;
    }
    PyObject *fmt = args[0], *values = args[1], *out = NULL;
    const char *f = PyBytes_AsString(fmt);
    if (f == NULL)
        return NULL;
    const char *end = f + PyBytes_Size(fmt);
    Py_ssize_t count = PyTuple_Size(values), used = 0;
    Py_ssize_t size = PyBytes_Size(fmt);   /* an upper bound of the result's length */
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *v = PyTuple_GetItem(values, i);
        size += PyBytes_CheckExact(v) ? PyBytes_Size(v) : VALUE_MAX;
    }
    char *buffer = PyMem_Malloc((size_t)size + 1), *o = buffer;
    if (buffer == NULL)
        return PyErr_NoMemory();
    while (f < end) {
        const char *percent = memchr(f, '%', (size_t)(end - f));
        if (percent == NULL) {
            memcpy(o, f, (size_t)(end - f));
            o += end - f;
            break;
        }
        memcpy(o, f, (size_t)(percent - f));
        o += percent - f;
        f = percent + 1;
        if (f < end && *f == '%') {
            *o++ = '%';
            f++;
            continue;
        }
        if (used == count)
            goto python;
        PyObject *v = PyTuple_GetItem(values, used++);
        if (seconds) {
            if (f == end || *f != 's')
                goto python;
            if (PyFloat_CheckExact(v) ? PyFloat_AsDouble(v) == 0.0 : PyLong_CheckExact(v) && PyObject_Not(v) == 1) {
                /* 0: the venue gave no stamp. The line is left out, as the collector's Python
                 * path leaves it out: back to the start of the line, on after its end. */
                while (o > buffer && o[-1] != '\n')
                    o--;
                const char *newline = memchr(f, '\n', (size_t)(end - f));
                f = newline != NULL ? newline + 1 : end;
                continue;
            }
            int overflow = 0;
            long long n = PyLong_CheckExact(v) ? PyLong_AsLongLongAndOverflow(v, &overflow) : 0;
            char *after = n > 0 && !overflow ? put_seconds(o, n) : NULL;
            if (after == NULL)
                goto python;
            o = after;
            f++;
        } else if (end - f >= 3 && f[0] == '.' && f[1] == '3' && f[2] == 'f' && PyFloat_CheckExact(v)) {
            char *after = put_fixed3(o, PyFloat_AsDouble(v));
            if (after == NULL)
                goto python;
            o = after;
            f += 3;
        } else if (f < end && *f == 'd' && PyLong_CheckExact(v)) {
            int overflow;
            long long n = PyLong_AsLongLongAndOverflow(v, &overflow);
            if (overflow)
                goto python;
            if (n < 0) {
                *o++ = '-';
                o = put_u64(o, 0 - (uint64_t)n);
            } else {
                o = put_u64(o, (uint64_t)n);
            }
            f++;
        } else if (f < end && *f == 's' && PyBytes_CheckExact(v)) {
            Py_ssize_t length = PyBytes_Size(v);
            memcpy(o, PyBytes_AsString(v), (size_t)length);
            o += length;
            f++;
        } else {
            goto python;
        }
    }
    if (used != count)
        goto python;
    out = PyBytes_FromStringAndSize(buffer, o - buffer);
    PyMem_Free(buffer);
    return out;
python:   /* anything else: Python's own %, for its text or its error (seconds: None) */
    PyMem_Free(buffer);
    if (seconds)
        Py_RETURN_NONE;
    return PyNumber_Remainder(fmt, values);
}

static PyObject *fill(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    return fill_with(args, nargs, 0);
}

static PyObject *fill_seconds(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    return fill_with(args, nargs, 1);
}

/* The descriptor an instance attribute ``name`` of ``type`` resolves to, if it is a data
 * descriptor (a slot's member descriptor is one): found the way attribute lookup finds it, in
 * the dicts of ``type.__mro__`` in order. With the generic attribute lookup (no
 * ``__getattribute__`` or ``__getattr__`` of the type's own), a data descriptor on the type wins
 * over anything else, so calling its ``__get__`` is exactly ``getattr(instance, name)`` for an
 * instance of exactly ``type``. NULL (no exception) when it is anything else. */
static PyObject *data_descriptor(PyTypeObject *type, PyObject *name, descrgetfunc *get)
{
    if (PyType_GetSlot(type, Py_tp_getattro) != (void *)PyObject_GenericGetAttr)
        return NULL;
    PyObject *mro = PyObject_GetAttrString((PyObject *)type, "__mro__"), *found = NULL;
    if (mro == NULL || !PyTuple_Check(mro)) {
        Py_XDECREF(mro);
        PyErr_Clear();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_Size(mro) && found == NULL; i++) {
        PyObject *namespace = PyObject_GetAttrString(PyTuple_GetItem(mro, i), "__dict__");
        if (namespace == NULL)
            break;
        found = PyObject_GetItem(namespace, name);
        Py_DECREF(namespace);
        if (found == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_KeyError))
                break;
            PyErr_Clear();
        }
    }
    Py_DECREF(mro);
    PyErr_Clear();
    if (found == NULL)
        return NULL;
    *get = (descrgetfunc)PyType_GetSlot(Py_TYPE(found), Py_tp_descr_get);
    if (*get == NULL || PyType_GetSlot(Py_TYPE(found), Py_tp_descr_set) == NULL) {
        Py_DECREF(found);
        return NULL;
    }
    return found;
}

/* gather(objects, names): for each name, the tuple of ``getattr(o, name)`` for o in the list
 * ``objects``, in one pass over the objects (each object's attributes read while it is in the
 * CPU's cache). For objects of the first one's type, a slot is read through its member
 * descriptor, found once: no attribute lookup per object. Any other object or attribute is read
 * with ``getattr``; an error is raised as ``getattr`` raises it. */
static PyObject *gather(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2 || !PyList_CheckExact(args[0]) || !PyTuple_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "expected (objects: list, names: tuple of str)");
        return NULL;
    }
    PyObject *objects = args[0], *names = args[1];
    Py_ssize_t count = PyList_Size(objects), width = PyTuple_Size(names);
    PyObject *out = PyTuple_New(width);
    PyObject **descriptors = PyMem_Calloc((size_t)width + 1, sizeof(PyObject *));
    descrgetfunc *getters = PyMem_Calloc((size_t)width + 1, sizeof(descrgetfunc));
    PyTypeObject *type = count ? Py_TYPE(PyList_GetItem(objects, 0)) : NULL;
    if (out == NULL || descriptors == NULL || getters == NULL) {
        if (out != NULL)
            PyErr_NoMemory();
        goto failed;
    }
    for (Py_ssize_t k = 0; k < width; k++) {
        PyObject *name = PyTuple_GetItem(names, k), *column = PyTuple_New(count);
        if (column == NULL)
            goto failed;
        PyTuple_SetItem(out, k, column);
        if (!PyUnicode_CheckExact(name)) {
            PyErr_SetString(PyExc_TypeError, "attribute names must be str");
            goto failed;
        }
        if (type != NULL)
            descriptors[k] = data_descriptor(type, name, &getters[k]);
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        /* The list may not change meanwhile: a __get__ or getattr runs no Python code of its own
         * for slots; for anything else (a property), the item is taken again each time. */
        PyObject *o = PyList_GetItem(objects, i);
        if (o == NULL)
            goto failed;
        Py_INCREF(o);
        int exact = Py_TYPE(o) == type;
        for (Py_ssize_t k = 0; k < width; k++) {
            PyObject *value = exact && descriptors[k] != NULL
                ? getters[k](descriptors[k], o, (PyObject *)type)
                : PyObject_GetAttr(o, PyTuple_GetItem(names, k));
            if (value == NULL) {
                Py_DECREF(o);
                goto failed;
            }
            PyTuple_SetItem(PyTuple_GetItem(out, k), i, value);
        }
        Py_DECREF(o);
    }
    for (Py_ssize_t k = 0; k < width; k++)
        Py_XDECREF(descriptors[k]);
    PyMem_Free(descriptors);
    PyMem_Free(getters);
    return out;
failed:
    if (descriptors != NULL)
        for (Py_ssize_t k = 0; k < width; k++)
            Py_XDECREF(descriptors[k]);
    PyMem_Free(descriptors);
    PyMem_Free(getters);
    Py_XDECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"gather", (PyCFunction)(void (*)(void))gather, METH_FASTCALL,
     "gather(objects, names): per name, the tuple of getattr(o, name) for o in objects (exporter/fill.py)."},
    {"fill", (PyCFunction)(void (*)(void))fill, METH_FASTCALL,
     "fill(fmt, values): fmt % values for bytes fmt and a tuple of values (exporter/fill.py)."},
    {"fill_seconds", (PyCFunction)(void (*)(void))fill_seconds, METH_FASTCALL,
     "fill_seconds(fmt, values): venue timestamps (ints of s or ms) into %s as seconds, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "exporter._fill",
    .m_doc = "fmt % values for the collector's format strings, and the values gathered, in C (exporter/fill.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__fill(void)
{
    return PyModule_Create(&module);
}
