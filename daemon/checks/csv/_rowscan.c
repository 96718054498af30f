/* The row scanner: csvfast's check of unquoted CSV lines, compiled.
 *
 * CPython's regular-expression engine walks a line at about 1.5 ns a byte and holds the
 * GIL while it does; this loop walks it at a fraction of that, with the GIL released. It
 * is optional: where it was not built (no C compiler), `csvfast` does the same in Python.
 *
 * It answers for a run of whole lines only when every line is unquoted and has the
 * header's field count; otherwise it returns None and `csvfast` reads the run as before.
 * A line whose checked values are all taken is counted (and counted as deleted where its
 * status is "deleted"); any other line is returned as odd, for `csvrows` to read alone and
 * say exactly what is wrong. So it may only ever be stricter than the Python checks, never
 * looser: a value is taken here only where `csvformats.ValueRule.complaint` takes it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define MAX_WIDTH 256 /* more fields than any header the server knows */
#define MAX_RULES 16

typedef struct {
    Py_ssize_t column;
    Py_ssize_t count; /* allowed values; none: an email address */
    const char *values[MAX_RULES];
    Py_ssize_t sizes[MAX_RULES];
} Rule;

typedef struct {
    Py_ssize_t index, begin, end; /* a line's index in the run, and its bytes */
} Odd;

typedef struct {
    Odd *items;
    Py_ssize_t used, size;
} OddList;

static int odd_add(OddList *list, Py_ssize_t index, Py_ssize_t begin, Py_ssize_t end)
{
    if (list->used == list->size) {
        Py_ssize_t size = list->size ? list->size * 2 : 64;
        Odd *items = realloc(list->items, (size_t)size * sizeof(Odd));
        if (items == NULL)
            return -1;
        list->items = items;
        list->size = size;
    }
    list->items[list->used++] = (Odd){index, begin, end};
    return 0;
}

static int is_space(unsigned char c) /* what `\s` matches in a bytes pattern */
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

static int is_letter(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* csvformats.EMAIL, matched whole: a local part, "@", labels joined by ".", the last one
 * two or more ASCII letters; no part holds white space, "@", "," or a quote. */
static int is_email(const unsigned char *s, Py_ssize_t n)
{
    Py_ssize_t i = 0, labels = 0, label = 0;
    while (i < n && s[i] != '@') {
        if (is_space(s[i]) || s[i] == ',' || s[i] == '"')
            return 0;
        i++;
    }
    if (i == 0 || i == n)
        return 0;
    label = ++i;
    for (; i <= n; i++) {
        if (i == n || s[i] == '.') {
            if (i == label)
                return 0; /* an empty label */
            labels++;
            label = i + 1;
        }
        else if (is_space(s[i]) || s[i] == '@' || s[i] == ',' || s[i] == '"')
            return 0;
    }
    label = n; /* back to the start of the last label */
    while (label > 0 && s[label - 1] != '.')
        label--;
    if (labels < 2 || n - label < 2)
        return 0;
    for (i = label; i < n; i++)
        if (!is_letter(s[i]))
            return 0;
    return 1;
}

/* `s` is `lower` (lowercase ASCII) but for the case of ASCII letters, as Canvas compares. */
static int same_word(const unsigned char *s, Py_ssize_t n, const char *lower, Py_ssize_t m)
{
    if (n != m)
        return 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c += 'a' - 'A';
        if (c != (unsigned char)lower[i])
            return 0;
    }
    return 1;
}

static int taken(const Rule *rule, const unsigned char *s, Py_ssize_t n)
{
    if (rule->count == 0)
        return is_email(s, n);
    for (Py_ssize_t i = 0; i < rule->count; i++)
        if (same_word(s, n, rule->values[i], rule->sizes[i]))
            return 1;
    return 0;
}

typedef struct {
    const unsigned char *data;
    Py_ssize_t start, end, width, status, nrules;
    const Rule *rules;
    Py_ssize_t lines, deleted;
    OddList odd;
} Scan;

enum { SCANNED = 0, SHAPE = 1, NO_MEMORY = 2 };

/* One line, `data[begin:end]` (no "\n"); the fields' bounds go in `bounds`. */
static int scan_line(Scan *scan, Py_ssize_t begin, Py_ssize_t end, Py_ssize_t *bounds)
{
    const unsigned char *data = scan->data;
    Py_ssize_t value_end = (end > begin && data[end - 1] == '\r') ? end - 1 : end;
    Py_ssize_t field = 0;
    bounds[0] = begin;
    const unsigned char *comma = data + begin, *stop = data + value_end;
    while ((comma = memchr(comma, ',', (size_t)(stop - comma))) != NULL) {
        if (++field == scan->width)
            return SHAPE;
        bounds[field] = ++comma - data;
    }
    if (field != scan->width - 1)
        return SHAPE;
    bounds[scan->width] = value_end + 1; /* as if a comma ended the last field too */
    for (Py_ssize_t r = 0; r < scan->nrules; r++) {
        Py_ssize_t column = scan->rules[r].column;
        const unsigned char *value = data + bounds[column];
        if (!taken(&scan->rules[r], value, bounds[column + 1] - 1 - bounds[column]))
            return odd_add(&scan->odd, scan->lines, begin, end) ? NO_MEMORY : SCANNED;
    }
    if (scan->status >= 0) {
        Py_ssize_t column = scan->status;
        if (same_word(data + bounds[column], bounds[column + 1] - 1 - bounds[column],
                      "deleted", 7))
            scan->deleted++;
    }
    return SCANNED;
}

static int scan_lines(Scan *scan)
{
    Py_ssize_t bounds[MAX_WIDTH + 1];
    const unsigned char *data = scan->data;
    Py_ssize_t begin = scan->start + 1;
    while (begin < scan->end) {
        const unsigned char *line_end = memchr(data + begin, '\n', (size_t)(scan->end - begin));
        Py_ssize_t end = line_end - data; /* the run ends in "\n": one is always found */
        int outcome = scan_line(scan, begin, end, bounds);
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
        PyObject *entry = Py_BuildValue("(nnn)", item->index, item->begin, item->end);
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
"Check the unquoted lines between the \"\\n\" at data[start] and the one at data[end - 1]:\n"
"(lines, deleted, odd) with odd a list of (index, begin, end) of the lines a value of\n"
"`rules` ((column, allowed lowercase values or () for an email address), ...) does not\n"
"take; None where a line holds a quote or not `width` fields. `status` is the status\n"
"column, or -1.");

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
    if (start < 0 || end > buffer.len || end - start < 1 || data[start] != '\n' ||
        data[end - 1] != '\n' || status >= width) {
        PyErr_SetString(PyExc_ValueError, "the run must start and end at a \"\\n\"");
        goto done;
    }
    if (width < 2 || width > MAX_WIDTH) { /* one field: a blank line would pass for a row */
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (read_rules(rules, parsed, width) < 0)
        goto done;
    Scan scan = {data, start, end, width, status, PyTuple_GET_SIZE(rules), parsed, 0, 0, {0}};
    int outcome;
    Py_BEGIN_ALLOW_THREADS
    outcome = memchr(data + start, '"', (size_t)(end - start)) ? SHAPE : scan_lines(&scan);
    Py_END_ALLOW_THREADS
    if (outcome == NO_MEMORY)
        PyErr_NoMemory();
    else if (outcome == SHAPE)
        result = Py_NewRef(Py_None);
    else {
        PyObject *odd = odd_lines(&scan.odd);
        if (odd != NULL)
            result = Py_BuildValue("(nnN)", scan.lines, scan.deleted, odd);
    }
    free(scan.odd.items);
done:
    PyBuffer_Release(&buffer);
    return result;
}

static PyMethodDef methods[] = {
    {"plain_lines", plain_lines, METH_VARARGS, plain_lines_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "daemon.checks.csv._rowscan",
    .m_doc = "csvfast's check of unquoted CSV lines, compiled (see _rowscan.c).",
    .m_size = 0,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__rowscan(void)
{
    return PyModuleDef_Init(&module);
}
