/* The row scanner: the check of CSV lines opencsv reads as they look, compiled.
 *
 * A line with no backslash and no lone CR whose quotes all sit at field edges
 * (`1,"Lee, Jr.",x`) is read by opencsv as a split at every comma outside the quotes, each
 * quoted field its text between them (the reference reader's `_EDGE_QUOTED`), so here it
 * is: each such line's field count and checked values, with the GIL released so that two
 * threads check two stretches of a file at once. It is optional: where it was not built
 * (no C compiler), the reference reader (daemon/base/opencsv.py) reads every line.
 *
 * A line of the header's width whose checked values are all taken is counted (and counted
 * as deleted where its status is "deleted"). Any other line comes back for the Python
 * checks, which say exactly what is wrong: an unquoted line to split at commas ("odd"), or
 * a line with a backslash and no quote, which opencsv reads as one record but not as it
 * looks, for the reader to read alone. A run ends at the first line that may start a
 * record running over several lines, or that the reader must word: a quote anywhere but at
 * a field's edges, a quoted line not taken whole, a CR not followed by LF; the reader takes
 * over there. So the scanner may only ever be stricter than the Python checks, never
 * looser: a value is taken here only where `formats.ValueRule.complaint` takes it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#if defined(__SSE2__) && defined(__GNUC__)
#include <emmintrin.h>
#endif

#define MAX_WIDTH 256 /* more fields than any header the server knows */
#define MAX_RULES 16

typedef struct {
    Py_ssize_t column;
    Py_ssize_t count; /* allowed values; none: an email address */
    const char *values[MAX_RULES];
    Py_ssize_t sizes[MAX_RULES];
    /* The last email domain taken, in the data: a column's addresses mostly share one. */
    const unsigned char *domain;
    Py_ssize_t domain_size;
    const unsigned char *limit; /* the run's end: bytes before it may be read ahead */
} Rule;

enum { SPLIT = 0, ALONE = 1 }; /* a line returned: split at commas, or read alone */

typedef struct {
    Py_ssize_t index, begin, end, kind; /* a line's index in the run, its bytes, its kind */
} Odd;

typedef struct {
    Odd *items;
    Py_ssize_t used, size;
} OddList;

static int odd_add(OddList *list, Py_ssize_t index, Py_ssize_t begin, Py_ssize_t end,
                   Py_ssize_t kind)
{
    if (list->used == list->size) {
        Py_ssize_t size = list->size ? list->size * 2 : 64;
        Odd *items = realloc(list->items, (size_t)size * sizeof(Odd));
        if (items == NULL)
            return -1;
        list->items = items;
        list->size = size;
    }
    list->items[list->used++] = (Odd){index, begin, end, kind};
    return 0;
}

/* What a byte is to `is_email`: a letter, a dot, or one of what no part holds (the white
 * space `\s` matches in a bytes pattern, "@", "," and a quote). */
enum { LETTER = 1, DOT = 2, STOP = 4 };
static unsigned char byte_class[256];

static void classify_bytes(void)
{
    for (int c = 'a'; c <= 'z'; c++)
        byte_class[c] = byte_class[c - 'a' + 'A'] = LETTER;
    for (int c = '\t'; c <= '\r'; c++)
        byte_class[c] = STOP;
    byte_class[' '] = byte_class['@'] = byte_class[','] = byte_class['"'] = STOP;
    byte_class['.'] = DOT;
}

/* formats.EMAIL, matched whole: a local part, "@", labels each ended by ".", then the
 * top-level domain: two or more ASCII letters; no part holds white space, "@", "," or a
 * quote. A domain equal to the last one taken (`rule->domain`) is taken again unread. */
static int is_email(Rule *rule, const unsigned char *s, Py_ssize_t n)
{
    const unsigned char *at = s, *stop = s + n;
#if defined(__SSE2__) && defined(__GNUC__)
    /* 16 bytes at a time while they are in the run: a mask of what stops a local part. */
    const __m128i tab = _mm_set1_epi8('\t'), span = _mm_set1_epi8('\r' - '\t');
    for (; at + 16 <= rule->limit; at += 16) {
        __m128i block = _mm_loadu_si128((const __m128i *)at);
        __m128i low = _mm_sub_epi8(block, tab); /* \t..\r become 0..4 */
        __m128i stops = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(block, _mm_set1_epi8('@')),
                         _mm_cmpeq_epi8(block, _mm_set1_epi8(','))),
            _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(block, _mm_set1_epi8('"')),
                                      _mm_cmpeq_epi8(block, _mm_set1_epi8(' '))),
                         _mm_cmpeq_epi8(_mm_min_epu8(low, span), low)));
        unsigned found = (unsigned)_mm_movemask_epi8(stops);
        if (found) {
            at += __builtin_ctz(found);
            break;
        }
    }
    if (at > stop)
        at = stop; /* the value ended inside the last block: no stop in it */
#endif
    while (at < stop && !(byte_class[*at] & STOP))
        at++;
    if (at == s || at == stop || *at != '@')
        return 0;
    const unsigned char *domain = at + 1;
    Py_ssize_t size = s + n - domain;
    if (size == rule->domain_size && memcmp(domain, rule->domain, (size_t)size) == 0)
        return 1;
    Py_ssize_t labels = 0, label = 0, letters = 1; /* the label being read: its length */
    for (const unsigned char *p = domain; p < s + n; p++) {
        unsigned char kind = byte_class[*p];
        if (kind & STOP)
            return 0;
        if (kind & DOT) {
            if (label == 0)
                return 0; /* an empty label */
            labels++;
            label = 0;
            letters = 1;
        }
        else {
            label++;
            letters &= kind; /* LETTER is 1 */
        }
    }
    if (!(labels >= 1 && label >= 2 && letters))
        return 0;
    rule->domain = domain;
    rule->domain_size = size;
    return 1;
}

/* `s` is `lower` (lowercase ASCII) but for the case of ASCII letters, as Canvas compares. */
static int same_word(const unsigned char *s, Py_ssize_t n, const char *lower, Py_ssize_t m)
{
    if (n != m)
        return 0;
    if (memcmp(s, lower, (size_t)n) == 0)
        return 1; /* as most are written */
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c += 'a' - 'A';
        if (c != (unsigned char)lower[i])
            return 0;
    }
    return 1;
}

static int taken(Rule *rule, const unsigned char *s, Py_ssize_t n)
{
    if (rule->count == 0)
        return is_email(rule, s, n);
    for (Py_ssize_t i = 0; i < rule->count; i++)
        if (same_word(s, n, rule->values[i], rule->sizes[i]))
            return 1;
    return 0;
}

typedef struct {
    const unsigned char *data;
    Py_ssize_t start, end, width, status, nrules;
    Rule *rules;
    Py_ssize_t lines, deleted;
    OddList odd;
} Scan;

enum { SCANNED = 0, NO_MEMORY = 1 };

/* The line from `begin`: where it ends (its "\n", or `scan->end`) goes in `line_end`, the
 * start of each field after a comma in `bounds[1..]` (as far as `bounds[width]`); returns
 * its count of commas. One pass: where SSE2 is at hand, 16 bytes at a time, a mask of the
 * commas and one of the line ends from each; the last bytes of a run one at a time. */
static Py_ssize_t find_line(const Scan *scan, Py_ssize_t begin, Py_ssize_t *bounds,
                            Py_ssize_t *line_end)
{
    const unsigned char *data = scan->data;
    Py_ssize_t end = scan->end, width = scan->width, pos = begin, commas = 0;
#if defined(__SSE2__) && defined(__GNUC__)
    const __m128i comma = _mm_set1_epi8(','), newline = _mm_set1_epi8('\n');
    for (; pos + 16 <= end; pos += 16) {
        __m128i block = _mm_loadu_si128((const __m128i *)(data + pos));
        unsigned ends = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(block, newline));
        unsigned found = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(block, comma));
        if (ends)
            found &= (ends & -ends) - 1; /* the commas before the first line end */
        for (; found; found &= found - 1)
            if (++commas <= width)
                bounds[commas] = pos + __builtin_ctz(found) + 1;
        if (ends) {
            *line_end = pos + __builtin_ctz(ends);
            return commas;
        }
    }
#endif
    for (; pos < end && data[pos] != '\n'; pos++)
        if (data[pos] == ',' && ++commas <= width)
            bounds[commas] = pos + 1;
    *line_end = pos;
    return commas;
}

/* One line, `data[begin:end]` (no "\n"), of `commas` commas at `bounds` (find_line). */
static int scan_line(Scan *scan, Py_ssize_t begin, Py_ssize_t end, Py_ssize_t commas,
                     Py_ssize_t *bounds)
{
    const unsigned char *data = scan->data;
    if (commas != scan->width - 1)
        return odd_add(&scan->odd, scan->lines, begin, end, SPLIT) ? NO_MEMORY : SCANNED;
    Py_ssize_t value_end = (end > begin && data[end - 1] == '\r') ? end - 1 : end;
    bounds[0] = begin;
    bounds[scan->width] = value_end + 1; /* as if a comma ended the last field too */
    for (Py_ssize_t r = 0; r < scan->nrules; r++) {
        Py_ssize_t column = scan->rules[r].column;
        const unsigned char *value = data + bounds[column];
        if (!taken(&scan->rules[r], value, bounds[column + 1] - 1 - bounds[column]))
            return odd_add(&scan->odd, scan->lines, begin, end, SPLIT) ? NO_MEMORY : SCANNED;
    }
    if (scan->status >= 0) {
        Py_ssize_t column = scan->status;
        if (same_word(data + bounds[column], bounds[column + 1] - 1 - bounds[column],
                      "deleted", 7))
            scan->deleted++;
    }
    return SCANNED;
}

/* Where the first line with a CR that ends a line on its own starts (a CR last in the run
 * may be one): opencsv's line ends are not this scan's there. Quotes and backslashes are
 * judged line by line. */
static Py_ssize_t plain_end(const unsigned char *data, Py_ssize_t start, Py_ssize_t end)
{
    Py_ssize_t limit = end;
    const unsigned char *cr = data + start;
    while ((cr = memchr(cr, '\r', (size_t)(data + end - cr))) != NULL) {
        if (cr + 1 == data + end || cr[1] != '\n') {
            limit = cr - data;
            break;
        }
        cr += 2;
    }
    if (limit == end)
        return end;
    while (limit > start && data[limit - 1] != '\n')
        limit--;
    return limit;
}

enum { EDGE_TAKEN = 0, EDGE_LEFT = 2 }; /* a quoted line: counted, or left to the reader */

/* A line holding a quote, `data[begin:end]` (no "\n", no backslash, no lone CR): counted
 * when its quotes all sit at field edges, it has the header's width and its checked values
 * are taken; else EDGE_LEFT, and the reader reads it and says what is wrong. */
static int scan_quoted_line(Scan *scan, Py_ssize_t begin, Py_ssize_t end)
{
    const unsigned char *data = scan->data;
    Py_ssize_t value_end = (end > begin && data[end - 1] == '\r') ? end - 1 : end;
    Py_ssize_t starts[MAX_WIDTH], ends[MAX_WIDTH];
    Py_ssize_t field = 0, pos = begin;
    for (;;) {
        if (field == scan->width)
            return EDGE_LEFT;
        if (pos < value_end && data[pos] == '"') {
            const unsigned char *close =
                memchr(data + pos + 1, '"', (size_t)(value_end - pos - 1));
            if (close == NULL)
                return EDGE_LEFT; /* open at the line end */
            starts[field] = pos + 1;
            ends[field++] = close - data;
            pos = close - data + 1;
            if (pos == value_end)
                break;
            if (data[pos] != ',')
                return EDGE_LEFT; /* `"a"b` or `"a""b"` */
            pos++;
            continue;
        }
        const unsigned char *comma = memchr(data + pos, ',', (size_t)(value_end - pos));
        Py_ssize_t field_end = comma ? comma - data : value_end;
        if (memchr(data + pos, '"', (size_t)(field_end - pos)) != NULL)
            return EDGE_LEFT; /* a quote inside a field */
        starts[field] = pos;
        ends[field++] = field_end;
        if (comma == NULL)
            break;
        pos = field_end + 1;
    }
    if (field != scan->width)
        return EDGE_LEFT;
    for (Py_ssize_t r = 0; r < scan->nrules; r++) {
        Py_ssize_t column = scan->rules[r].column;
        if (!taken(&scan->rules[r], data + starts[column], ends[column] - starts[column]))
            return EDGE_LEFT;
    }
    if (scan->status >= 0) {
        Py_ssize_t column = scan->status;
        if (same_word(data + starts[column], ends[column] - starts[column], "deleted", 7))
            scan->deleted++;
    }
    return EDGE_TAKEN;
}

static const unsigned char *next_of(const unsigned char *data, Py_ssize_t from, Py_ssize_t end,
                                    int byte)
{
    return from < end ? memchr(data + from, byte, (size_t)(end - from)) : NULL;
}

static int scan_lines(Scan *scan)
{
    Py_ssize_t bounds[MAX_WIDTH + 1];
    const unsigned char *data = scan->data;
    Py_ssize_t begin = scan->start;
    const unsigned char *quote = next_of(data, begin, scan->end, '"');
    const unsigned char *backslash = next_of(data, begin, scan->end, '\\');
    while (begin < scan->end) {
        Py_ssize_t end; /* the last line may be unended */
        Py_ssize_t commas = find_line(scan, begin, bounds, &end);
        int outcome = SCANNED;
        int quoted = quote != NULL && quote < data + end;
        if (backslash != NULL && backslash < data + end) {
            /* With no quote, one record whatever its backslashes do: read alone. */
            if (quoted) {
                scan->end = begin;
                return SCANNED;
            }
            if (odd_add(&scan->odd, scan->lines, begin, end, ALONE))
                return NO_MEMORY;
            backslash = next_of(data, end, scan->end, '\\');
        }
        else if (quoted) {
            if (scan_quoted_line(scan, begin, end) == EDGE_LEFT) {
                scan->end = begin;
                return SCANNED;
            }
        }
        else
            outcome = scan_line(scan, begin, end, commas, bounds);
        if (quoted)
            quote = next_of(data, end, scan->end, '"');
        if (outcome != SCANNED)
            return outcome;
        scan->lines++;
        begin = end + 1;
    }
    return SCANNED;
}

static int read_rules(PyObject *rules, Rule *into, Py_ssize_t width)
{
    Py_ssize_t count = PyTuple_GET_SIZE(rules);
    if (count > MAX_RULES) {
        PyErr_SetString(PyExc_ValueError, "too many rules");
        return -1;
    }
    for (Py_ssize_t r = 0; r < count; r++) {
        PyObject *values = NULL;
        Rule *rule = &into[r];
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(rules, r), "nO!", &rule->column, &PyTuple_Type,
                              &values))
            return -1;
        rule->count = PyTuple_GET_SIZE(values);
        rule->domain = NULL;
        rule->domain_size = -1;
        if (rule->column < 0 || rule->column >= width || rule->count > MAX_RULES) {
            PyErr_SetString(PyExc_ValueError, "a rule's column or values are out of range");
            return -1;
        }
        for (Py_ssize_t v = 0; v < rule->count; v++) {
            PyObject *value = PyTuple_GET_ITEM(values, v);
            if (!PyBytes_Check(value)) {
                PyErr_SetString(PyExc_TypeError, "allowed values must be bytes");
                return -1;
            }
            rule->values[v] = PyBytes_AS_STRING(value);
            rule->sizes[v] = PyBytes_GET_SIZE(value);
        }
    }
    return 0;
}

static PyObject *odd_lines(const OddList *odd)
{
    PyObject *list = PyList_New(odd->used);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < odd->used; i++) {
        const Odd *item = &odd->items[i];
        PyObject *entry =
            Py_BuildValue("(nnnn)", item->index, item->begin, item->end, item->kind);
        if (entry == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, entry);
    }
    return list;
}

PyDoc_STRVAR(plain_lines_doc,
"plain_lines(data, start, end, width, rules, status, /)\n--\n\n"
"Check the lines of data[start:end] (`start` begins a line, `end` ends one or the data)\n"
"up to the first the reader must take over at (a quote not at a field's edges, a quoted\n"
"line not taken whole, a line with a backslash and a quote, a lone CR):\n"
"(lines, deleted, odd, stop). odd lists (index, begin, end, kind) of the lines left to\n"
"Python: kind 0 an unquoted line not of `width` fields or with a value `rules` ((column,\n"
"allowed lowercase values or () for an email address), ...) does not take, to split at\n"
"commas; kind 1 a line with a backslash and no quote, to read alone. stop is where the\n"
"reader takes over (`end` if nowhere). `status` is the status column, or -1.");

static PyObject *plain_lines(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer buffer;
    Py_ssize_t start, end, width, status;
    PyObject *rules;
    Rule parsed[MAX_RULES];
    if (!PyArg_ParseTuple(args, "y*nnnO!n", &buffer, &start, &end, &width, &PyTuple_Type,
                          &rules, &status))
        return NULL;
    PyObject *result = NULL;
    const unsigned char *data = buffer.buf;
    if (start < 0 || end > buffer.len || start > end || status >= width || width < 1 ||
        width > MAX_WIDTH) {
        PyErr_SetString(PyExc_ValueError, "the run or the width is out of range");
        goto done;
    }
    if (read_rules(rules, parsed, width) < 0)
        goto done;
    for (Py_ssize_t r = 0; r < PyTuple_GET_SIZE(rules); r++)
        parsed[r].limit = data + end;
    Scan scan = {data, start, end, width, status, PyTuple_GET_SIZE(rules), parsed, 0, 0, {0}};
    int outcome;
    Py_BEGIN_ALLOW_THREADS
    scan.end = plain_end(data, start, end);
    outcome = scan_lines(&scan);
    Py_END_ALLOW_THREADS
    if (outcome == NO_MEMORY)
        PyErr_NoMemory();
    else {
        PyObject *odd = odd_lines(&scan.odd);
        if (odd != NULL)
            result = Py_BuildValue("(nnNn)", scan.lines, scan.deleted, odd, scan.end);
    }
    free(scan.odd.items);
done:
    PyBuffer_Release(&buffer);
    return result;
}

/* The offset of the first byte in data[start:end] that does not begin a whole, valid UTF-8
 * sequence as Python's strict decoder reads UTF-8 (no overlong form, no surrogate, nothing
 * past U+10FFFF; a sequence the end cuts counts), or -1. Runs of ASCII are passed over 16
 * bytes at a time where SSE2 is at hand. */
static Py_ssize_t first_bad_utf8(const unsigned char *s, Py_ssize_t start, Py_ssize_t end)
{
    Py_ssize_t i = start;
    while (i < end) {
#if defined(__SSE2__) && defined(__GNUC__)
        while (i + 16 <= end) {
            unsigned high = (unsigned)_mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(s + i)));
            if (high) {
                i += __builtin_ctz(high);
                break;
            }
            i += 16;
        }
        if (i >= end)
            break;
#endif
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        Py_ssize_t more; /* continuation bytes */
        unsigned char low = 0x80, high = 0xBF; /* the bounds of the first of them */
        if (c >= 0xC2 && c <= 0xDF)
            more = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            more = 2;
            if (c == 0xE0)
                low = 0xA0; /* overlong below */
            else if (c == 0xED)
                high = 0x9F; /* surrogates above */
        }
        else if (c >= 0xF0 && c <= 0xF4) {
            more = 3;
            if (c == 0xF0)
                low = 0x90;
            else if (c == 0xF4)
                high = 0x8F; /* past U+10FFFF above */
        }
        else
            return i;
        if (end - i - 1 < more || s[i + 1] < low || s[i + 1] > high)
            return i;
        for (Py_ssize_t k = 2; k <= more; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
        i += more + 1;
    }
    return -1;
}

PyDoc_STRVAR(first_bad_utf8_doc,
"first_bad_utf8(data, /)\n--\n\n"
"The offset of the first byte of data that does not begin a whole, valid UTF-8 sequence\n"
"(as bytes.decode('utf-8') reads it; a sequence the end cuts counts), or -1.");

static PyObject *first_bad_utf8_py(PyObject *Py_UNUSED(module), PyObject *arg)
{
    Py_buffer buffer;
    if (PyObject_GetBuffer(arg, &buffer, PyBUF_SIMPLE) < 0)
        return NULL;
    Py_ssize_t found;
    Py_BEGIN_ALLOW_THREADS
    found = first_bad_utf8(buffer.buf, 0, buffer.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buffer);
    return PyLong_FromSsize_t(found);
}

static PyMethodDef methods[] = {
    {"plain_lines", plain_lines, METH_VARARGS, plain_lines_doc},
    {"first_bad_utf8", first_bad_utf8_py, METH_O, first_bad_utf8_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "daemon.checks.csv._rowscan",
    .m_doc = "The check of plain CSV lines, compiled (see _rowscan.c).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__rowscan(void)
{
    classify_bytes();
    return PyModuleDef_Init(&module);
}
