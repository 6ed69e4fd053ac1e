/* Native kernels of the caption query (see biasamp/corpus/kernels.py for what and why).
 *
 * Every function reads Arrow / NumPy buffers handed over by the Python side, does its loop
 * without the interpreter lock, and returns new `bytes` objects that the caller views as
 * NumPy arrays. The exact stage handles ASCII captions only; a caption with any other byte
 * is returned to the caller, which sends it through the Polars stage.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { SEP = 0, WORD = 1, APOS = 2, OTHER = 3 };

/* -- growable arrays ------------------------------------------------------------------ */
typedef struct {
    char *data;
    size_t len, cap, item;
} vec;

static int vec_init(vec *v, size_t item, size_t cap) {
    v->item = item;
    v->len = 0;
    v->cap = cap ? cap : 16;
    v->data = malloc(v->cap * item);
    return v->data != NULL;
}

static int vec_reserve(vec *v, size_t extra) {
    if (v->len + extra <= v->cap) return 1;
    size_t cap = v->cap * 2;
    while (cap < v->len + extra) cap *= 2;
    char *d = realloc(v->data, cap * v->item);
    if (!d) return 0;
    v->data = d;
    v->cap = cap;
    return 1;
}

#define VEC_PUSH(v, type, x) (((type *)(v).data)[(v).len++] = (type)(x))

static PyObject *vec_bytes(vec *v) {
    PyObject *b = PyBytes_FromStringAndSize(v->data, (Py_ssize_t)(v->len * v->item));
    free(v->data);
    v->data = NULL;
    return b;
}

/* -- hash tables of byte strings (FNV-1a, open addressing) ---------------------------- */
typedef struct {
    const uint64_t *hash;
    const int32_t *id;
    const uint8_t *bytes;
    const int64_t *off;
    int64_t mask;
} table;

static inline uint64_t fnv1a(const uint8_t *p, int64_t n) {
    uint64_t h = 14695981039346656037ULL;
    for (int64_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static inline int32_t lookup(const table *t, const uint8_t *p, int64_t n) {
    uint64_t h = fnv1a(p, n);
    int64_t j = (int64_t)(h & (uint64_t)t->mask);
    for (;;) {
        int32_t id = t->id[j];
        if (id < 0) return -1;
        if (t->hash[j] == h && t->off[id + 1] - t->off[id] == n && memcmp(t->bytes + t->off[id], p, (size_t)n) == 0)
            return id;
        j = (j + 1) & t->mask;
    }
}

/* fill_table(bytes, offsets int64, size) -> (hashes uint64[size], ids int32[size]) */
static PyObject *fill_table(PyObject *self, PyObject *args) {
    Py_buffer kb, ko;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "y*y*n", &kb, &ko, &size)) return NULL;
    PyObject *out = NULL;
    uint64_t *hash = calloc((size_t)size, sizeof(uint64_t));
    int32_t *id = malloc((size_t)size * sizeof(int32_t));
    if (!hash || !id) {
        PyErr_NoMemory();
        goto done;
    }
    const uint8_t *bytes = kb.buf;
    const int64_t *off = ko.buf;
    int64_t n = (int64_t)(ko.len / 8) - 1, mask = size - 1;
    for (Py_ssize_t j = 0; j < size; j++) id[j] = -1;
    for (int64_t i = 0; i < n; i++) {
        uint64_t h = fnv1a(bytes + off[i], off[i + 1] - off[i]);
        int64_t j = (int64_t)(h & (uint64_t)mask);
        while (id[j] >= 0) j = (j + 1) & mask;
        hash[j] = h;
        id[j] = (int32_t)i;
    }
    out = Py_BuildValue("(y#y#)", (const char *)hash, (Py_ssize_t)(size * 8), (const char *)id, (Py_ssize_t)(size * 4));
done:
    free(hash);
    free(id);
    PyBuffer_Release(&kb);
    PyBuffer_Release(&ko);
    return out;
}

/* -- the trie's edges: (state * n_words + word) -> state, open addressing ------------------ */
static inline int64_t edge_slot(int64_t key, int64_t mask) {
    return (int64_t)(((uint64_t)key * 0x9E3779B97F4A7C15ULL) >> 32) & mask;
}

/* fill_edges(keys int64, values int32, size) -> (table keys int64[size] (-1 = empty), values int32[size]) */
static PyObject *fill_edges(PyObject *self, PyObject *args) {
    Py_buffer bk, bvals;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "y*y*n", &bk, &bvals, &size)) return NULL;
    PyObject *out = NULL;
    int64_t *keys = malloc((size_t)size * 8);
    int32_t *vals = calloc((size_t)size, 4);
    if (!keys || !vals) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t j = 0; j < size; j++) keys[j] = -1;
    const int64_t *k = bk.buf;
    const int32_t *v = bvals.buf;
    int64_t n = (int64_t)(bk.len / 8), mask = size - 1;
    for (int64_t i = 0; i < n; i++) {
        int64_t j = edge_slot(k[i], mask);
        while (keys[j] >= 0) j = (j + 1) & mask;
        keys[j] = k[i];
        vals[j] = v[i];
    }
    out = Py_BuildValue("(y#y#)", (const char *)keys, (Py_ssize_t)(size * 8), (const char *)vals, (Py_ssize_t)(size * 4));
done:
    free(keys);
    free(vals);
    PyBuffer_Release(&bk);
    PyBuffer_Release(&bvals);
    return out;
}

/* -- the exact stage -------------------------------------------------------------------- */
typedef struct {
    const uint8_t *cls, *low;
    table words, names;
    const int64_t *edge_keys; /* the trie's edges (fill_edges) */
    const int32_t *edge_vals;
    int64_t edge_mask, n_words;
    const int32_t *term;
    const uint8_t *is_form, *term_sex, *name_sex;
    const int64_t *form_occ_off;
    const int32_t *form_occ;
    const uint8_t *bigram; /* 65536: the first two letters of some vocabulary word (second 0 if it has one) */
    int find_names;
    int64_t minw, maxw, maxlen, n_items, max_names;
} vocab;

typedef struct {
    uint8_t *word;
    int32_t *active, *nxt, *found, *names;
} scratch;

static inline int32_t next_state(const vocab *V, int32_t state, int32_t word) {
    int64_t key = (int64_t)state * V->n_words + word, j = edge_slot(key, V->edge_mask);
    for (;;) {
        int64_t k = V->edge_keys[j];
        if (k == key) return V->edge_vals[j];
        if (k < 0) return -1;
        j = (j + 1) & V->edge_mask;
    }
}

static inline int is_upper(uint8_t c) { return c >= 'A' && c <= 'Z'; }
static inline int is_lower(uint8_t c) { return c >= 'a' && c <= 'z'; }

/* The trie step for one vocabulary word (wid >= 0): advance the active states, record the
 * items completed. */
static inline void trie_step(const vocab *V, scratch *S, int32_t wid, int64_t *n_act, int64_t *n_found, int *has_form) {
    int64_t n_nxt = 0;
    for (int64_t a = 0; a < *n_act; a++) {
        int32_t t = next_state(V, S->active[a], wid);
        if (t >= 0) S->nxt[n_nxt++] = t;
    }
    int32_t t = next_state(V, 0, wid);
    if (t >= 0) S->nxt[n_nxt++] = t;
    for (int64_t a = 0; a < n_nxt; a++) {
        int32_t st = S->nxt[a];
        S->active[a] = st;
        int32_t it = V->term[st];
        if (it >= 0) {
            int seen = 0;
            for (int64_t p = 0; p < *n_found; p++)
                if (S->found[p] == it) {
                    seen = 1;
                    break;
                }
            if (!seen) {
                S->found[(*n_found)++] = it;
                if (V->is_form[it]) *has_form = 1;
            }
        }
    }
    *n_act = n_nxt;
}

/* The vocabulary items of one caption, into S->found (each once). Returns 0 (no occupation
 * form), 1 (some), or 2 (a non-ASCII byte: leave the caption to the Polars stage). Most
 * words are not vocabulary words: a word is only looked up when its length is a vocabulary
 * word's and its first two letters start one (V->bigram). */
static int scan_words(const vocab *V, scratch *S, const uint8_t *src, int64_t n, int64_t *n_found_out) {
    const uint8_t *cls = V->cls, *low = V->low;
    uint8_t *word = S->word;
    const int64_t maxw = V->maxw, minw = V->minw;
    int64_t n_act = 0, n_found = 0, i = 0;
    int has_form = 0;
    *n_found_out = 0;
    while (i < n) {
        uint8_t k = cls[src[i]];
        if (k != WORD) {
            if (k == OTHER) return 2;
            i++; /* a separator, or an apostrophe outside a word */
            continue;
        }
        /* a word: letters and digits, lower-cased; apostrophes inside it dropped */
        int64_t wl = 0;
        while (i < n) {
            uint8_t c = src[i];
            k = cls[c];
            if (k == WORD) {
                if (wl < maxw) word[wl] = low[c];
                wl++;
            } else if (k != APOS) {
                break;
            }
            i++;
        }
        if (k == OTHER && i < n) return 2;
        int32_t wid = -1;
        if (wl >= minw && wl <= maxw && V->bigram[((unsigned)word[0] << 8) | (wl > 1 ? word[1] : 0)])
            wid = lookup(&V->words, word, wl);
        if (wid < 0)
            n_act = 0;
        else
            trie_step(V, S, wid, &n_act, &n_found, &has_form);
    }
    *n_found_out = n_found;
    return has_form ? 1 : 0;
}

/* The first names of one (ASCII) caption, into S->names (each once, in order of first
 * appearance): tokens that are runs of [A-Za-z0-9_] (regex words) made of an upper-case
 * letter and then lower-case letters, found in the names table. Returns 0, or 2 when more
 * distinct names than S->names holds (leave the caption to the Polars stage). */
static int scan_names(const vocab *V, scratch *S, const uint8_t *src, int64_t n, int64_t *n_names_out) {
    int64_t n_names = 0, i = 0;
    *n_names_out = 0;
    while (i < n) {
        uint8_t c = src[i];
        int regex_word = V->cls[c] == WORD || c == '_';
        if (!regex_word) {
            i++;
            continue;
        }
        int64_t start = i;
        int ok = is_upper(c);
        i++;
        while (i < n && (V->cls[src[i]] == WORD || src[i] == '_')) {
            if (!is_lower(src[i])) ok = 0;
            i++;
        }
        if (!ok || i - start < 2) continue;
        int32_t nid = lookup(&V->names, src + start, i - start);
        if (nid < 0) continue;
        int seen = 0;
        for (int64_t p = 0; p < n_names; p++)
            if (S->names[p] == nid) {
                seen = 1;
                break;
            }
        if (seen) continue;
        if (n_names == V->max_names) return 2;
        S->names[n_names++] = nid;
    }
    *n_names_out = n_names;
    return 0;
}

/* Items and first names of one caption: 0 (no occupation form), 1 (some), or 2 (leave it to
 * the Polars stage). */
static int scan_caption(const vocab *V, scratch *S, const uint8_t *src, int64_t length, int64_t *n_found_out,
                        int64_t *n_names_out) {
    *n_names_out = 0;
    int st = scan_words(V, S, src, length, n_found_out);
    if (st != 1 || !V->find_names) return st;
    return scan_names(V, S, src, length, n_names_out) == 2 ? 2 : 1;
}

/* Every row index in range, and every non-null caption outside its view inside a data
 * buffer: the loops that follow trust them (they hold for a valid Arrow array; a null
 * slot's view is left unspecified by Arrow, so it is not checked, and never read). rows
 * NULL: all rows; valid NULL: no nulls; sizes NULL: the buffers' sizes are not known.
 * Sets a Python error and returns -1. */
static int check_views(const int32_t *views, int64_t n, int inline_ok, int64_t n_buffers, const int64_t *sizes,
                       const uint8_t *valid, const int64_t *rows, int64_t n_rows) {
    int64_t m = rows ? n_rows : n;
    for (int64_t q = 0; q < m; q++) {
        int64_t r = rows ? rows[q] : q;
        if (r < 0 || r >= n) {
            PyErr_Format(PyExc_IndexError, "row %lld out of range (%lld captions)", (long long)r, (long long)n);
            return -1;
        }
        if (valid && !valid[r]) continue;
        int64_t len = views[4 * r];
        if (len <= 0 || (inline_ok && len <= 12)) continue;
        int32_t b = views[4 * r + 2];
        if (b < 0 || b >= n_buffers || (sizes && (int64_t)(uint32_t)views[4 * r + 3] + len > sizes[b])) {
            PyErr_Format(PyExc_ValueError, "caption %lld lies outside its data buffer (%d of %lld)", (long long)r, (int)b,
                         (long long)n_buffers);
            return -1;
        }
    }
    return 0;
}

static int get_buffer(PyObject *seq, Py_ssize_t i, Py_buffer *b) {
    return PyObject_GetBuffer(PyTuple_GET_ITEM(seq, i), b, PyBUF_SIMPLE);
}

/* match(views, inline, addresses, sizes, rows, tables, params) -> tuple of bytes:
 *   row int64, occupation int32, indicator int8, forms (offsets int64, values int32),
 *   terms (offsets, values), names (offsets, values), rows left to Polars int64.
 * views: int32 (n, 4) Arrow string views (length, prefix/inline, buffer, offset), or rows
 * (length, -, 0, offset) of an offsets column with inline = 0.
 * tables: (cls, low, w_hash, w_id, w_bytes, w_off, n_hash, n_id, n_bytes, n_off, edge_keys,
 *          edge_vals, term, is_form, term_sex, form_occ_off, form_occ, name_sex, bigram)
 * params: (w_mask, n_mask, edge_mask, n_words, find_names, minw, maxw, maxlen, n_items, max_names) */
#define N_TABLES 19
static PyObject *match(PyObject *self, PyObject *args) {
    Py_buffer bv, ba, bs, br;
    int inline_ok;
    PyObject *tables, *params;
    if (!PyArg_ParseTuple(args, "y*py*y*y*O!O!", &bv, &inline_ok, &ba, &bs, &br, &PyTuple_Type, &tables, &PyTuple_Type,
                          &params))
        return NULL;
    PyObject *result = NULL;
    Py_buffer tb[N_TABLES];
    int got = 0;
    if (PyTuple_GET_SIZE(tables) != N_TABLES) {
        PyErr_SetString(PyExc_ValueError, "match: wrong number of tables");
        goto release;
    }
    for (; got < N_TABLES; got++)
        if (get_buffer(tables, got, &tb[got]) < 0) goto release;
    vocab V;
    long long w_mask, n_mask, edge_mask, n_words, minw, maxw, maxlen, n_items, max_names;
    int find_names;
    if (!PyArg_ParseTuple(params, "LLLLpLLLLL", &w_mask, &n_mask, &edge_mask, &n_words, &find_names, &minw, &maxw,
                          &maxlen, &n_items, &max_names))
        goto release;
    V.cls = tb[0].buf;
    V.low = tb[1].buf;
    V.words = (table){tb[2].buf, tb[3].buf, tb[4].buf, tb[5].buf, w_mask};
    V.names = (table){tb[6].buf, tb[7].buf, tb[8].buf, tb[9].buf, n_mask};
    V.edge_keys = tb[10].buf;
    V.edge_vals = tb[11].buf;
    V.term = tb[12].buf;
    V.is_form = tb[13].buf;
    V.term_sex = tb[14].buf;
    V.form_occ_off = tb[15].buf;
    V.form_occ = tb[16].buf;
    V.name_sex = tb[17].buf;
    V.bigram = tb[18].buf;
    V.minw = minw;
    V.edge_mask = edge_mask;
    V.n_words = n_words;
    V.find_names = find_names;
    V.maxw = maxw;
    V.maxlen = maxlen;
    V.n_items = n_items;
    V.max_names = max_names;

    const int32_t *views = bv.buf;
    const uint8_t *flat = bv.buf;
    const int64_t *addresses = ba.buf, *rows = br.buf;
    int64_t n_rows = (int64_t)(br.len / 8);
    if (bs.len != ba.len) {
        PyErr_SetString(PyExc_ValueError, "match: one size per buffer address");
        goto release;
    }
    if (check_views(views, (int64_t)(bv.len / 16), inline_ok, (int64_t)(ba.len / 8), bs.buf, NULL, rows, n_rows) < 0)
        goto release;

    scratch S;
    S.word = malloc((size_t)(maxw + 1));
    S.active = malloc((size_t)(maxlen + 1) * 4);
    S.nxt = malloc((size_t)(maxlen + 1) * 4);
    S.found = malloc((size_t)(n_items + 1) * 4);
    S.names = malloc((size_t)(max_names + 1) * 4);
    int32_t *pair_occ = malloc(64 * 4), *pair_item = malloc(64 * 4);
    int64_t pair_cap = 64;
    vec o_row = {0}, o_occ = {0}, o_ind = {0}, f_off = {0}, f_val = {0}, t_off = {0}, t_val = {0}, m_off = {0},
        m_val = {0}, other = {0};
    size_t cap = (size_t)(n_rows / 2 + 16);
    int ok = S.word && S.active && S.nxt && S.found && S.names && pair_occ && pair_item;
    ok = ok && vec_init(&o_row, 8, cap) && vec_init(&o_occ, 4, cap) && vec_init(&o_ind, 1, cap);
    ok = ok && vec_init(&f_off, 8, cap + 1) && vec_init(&f_val, 4, cap) && vec_init(&t_off, 8, cap + 1);
    ok = ok && vec_init(&t_val, 4, cap) && vec_init(&m_off, 8, cap + 1) && vec_init(&m_val, 4, cap);
    ok = ok && vec_init(&other, 8, 64);
    if (ok) {
        VEC_PUSH(f_off, int64_t, 0);
        VEC_PUSH(t_off, int64_t, 0);
        VEC_PUSH(m_off, int64_t, 0);
    }

    Py_BEGIN_ALLOW_THREADS
    for (int64_t q = 0; ok && q < n_rows; q++) {
        int64_t r = rows[q];
        int64_t length = views[4 * r];
        if (length <= 0) continue;
        const uint8_t *src;
        if (inline_ok && length <= 12)
            src = flat + 16 * r + 4;
        else
            src = (const uint8_t *)(intptr_t)addresses[views[4 * r + 2]] + (uint32_t)views[4 * r + 3];
        int64_t n_found = 0, n_names = 0;
        int st = scan_caption(&V, &S, src, length, &n_found, &n_names);
        if (st == 2) {
            if (!vec_reserve(&other, 1)) { ok = 0; break; }
            VEC_PUSH(other, int64_t, r);
            continue;
        }
        if (st == 0) continue;
        int32_t *found = S.found;
        for (int64_t a = 1; a < n_found; a++) { /* items in item order */
            int32_t x = found[a];
            int64_t b = a - 1;
            while (b >= 0 && found[b] > x) {
                found[b + 1] = found[b];
                b--;
            }
            found[b + 1] = x;
        }
        int64_t n_pairs = 0, n_terms = 0;
        int male = 0, female = 0;
        for (int64_t a = 0; a < n_found; a++) {
            int32_t it = found[a];
            if (V.is_form[it]) {
                for (int64_t e = V.form_occ_off[it]; e < V.form_occ_off[it + 1]; e++) {
                    if (n_pairs == pair_cap) {
                        int32_t *po = realloc(pair_occ, (size_t)pair_cap * 8);
                        if (po) pair_occ = po;
                        int32_t *pi = po ? realloc(pair_item, (size_t)pair_cap * 8) : NULL;
                        if (pi) pair_item = pi;
                        if (!po || !pi) {
                            ok = 0;
                            break;
                        }
                        pair_cap *= 2;
                    }
                    pair_occ[n_pairs] = V.form_occ[e];
                    pair_item[n_pairs++] = it;
                }
            }
            if (!ok) break;
            if (V.term_sex[it]) {
                n_terms++;
                male |= (V.term_sex[it] & 1) != 0;
                female |= (V.term_sex[it] & 2) != 0;
            }
        }
        if (!ok) break;
        for (int64_t p = 0; p < n_names; p++) {
            male |= V.name_sex[S.names[p]] == 1;
            female |= V.name_sex[S.names[p]] == 2;
        }
        int8_t ind = (int8_t)((male ? 1 : 0) + (female ? 2 : 0));
        for (int64_t a = 1; a < n_pairs; a++) { /* (occupation, form) order */
            int32_t xo = pair_occ[a], xi = pair_item[a];
            int64_t b = a - 1;
            while (b >= 0 && (pair_occ[b] > xo || (pair_occ[b] == xo && pair_item[b] > xi))) {
                pair_occ[b + 1] = pair_occ[b];
                pair_item[b + 1] = pair_item[b];
                b--;
            }
            pair_occ[b + 1] = xo;
            pair_item[b + 1] = xi;
        }
        int64_t a = 0;
        while (a < n_pairs) {
            int32_t occ = pair_occ[a];
            if (!vec_reserve(&o_row, 1) || !vec_reserve(&o_occ, 1) || !vec_reserve(&o_ind, 1) || !vec_reserve(&f_off, 1) ||
                !vec_reserve(&t_off, 1) || !vec_reserve(&m_off, 1) || !vec_reserve(&f_val, (size_t)n_pairs) ||
                !vec_reserve(&t_val, (size_t)n_terms) || !vec_reserve(&m_val, (size_t)n_names)) {
                ok = 0;
                break;
            }
            VEC_PUSH(o_row, int64_t, r);
            VEC_PUSH(o_occ, int32_t, occ);
            VEC_PUSH(o_ind, int8_t, ind);
            while (a < n_pairs && pair_occ[a] == occ) VEC_PUSH(f_val, int32_t, pair_item[a++]);
            for (int64_t e = 0; e < n_found; e++)
                if (V.term_sex[found[e]]) VEC_PUSH(t_val, int32_t, found[e]);
            for (int64_t e = 0; e < n_names; e++) VEC_PUSH(m_val, int32_t, S.names[e]);
            VEC_PUSH(f_off, int64_t, f_val.len);
            VEC_PUSH(t_off, int64_t, t_val.len);
            VEC_PUSH(m_off, int64_t, m_val.len);
        }
    }
    Py_END_ALLOW_THREADS

    if (!ok) {
        PyErr_NoMemory();
    } else {
        result = PyTuple_New(10);
        vec *vs[10] = {&o_row, &o_occ, &o_ind, &f_off, &f_val, &t_off, &t_val, &m_off, &m_val, &other};
        for (int i = 0; result && i < 10; i++) {
            PyObject *b = vec_bytes(vs[i]);
            if (!b) {
                Py_CLEAR(result);
                break;
            }
            PyTuple_SET_ITEM(result, i, b);
        }
    }
    free(o_row.data); free(o_occ.data); free(o_ind.data); free(f_off.data); free(f_val.data);
    free(t_off.data); free(t_val.data); free(m_off.data); free(m_val.data); free(other.data);
    free(S.word); free(S.active); free(S.nxt); free(S.found); free(S.names);
    free(pair_occ); free(pair_item);
release:
    for (int i = 0; i < got; i++) PyBuffer_Release(&tb[i]);
    PyBuffer_Release(&bv);
    PyBuffer_Release(&ba);
    PyBuffer_Release(&bs);
    PyBuffer_Release(&br);
    return result;
}

/* -- the prefilter's match offsets -> captions ------------------------------------------- */
/* rows_with_ends(views, inline, base, pos, valid) -> (rows holding the last byte of a match
 * (pos, sorted, in one coordinate over all data buffers: base[buffer] + offset), rows whose
 * caption is inside its view (12 bytes or less; not in the buffers, not decided here)).
 * Views may share or overlap bytes, so each caption is decided alone, with a merge while
 * captions come in byte order (the usual case) and a binary search otherwise.
 * valid: uint8 per row, or empty (no nulls). */
static PyObject *rows_with_ends(PyObject *self, PyObject *args) {
    Py_buffer bv, bb, bp, bl;
    int inline_ok;
    if (!PyArg_ParseTuple(args, "y*py*y*y*", &bv, &inline_ok, &bb, &bp, &bl)) return NULL;
    PyObject *result = NULL;
    const int32_t *views = bv.buf;
    const int64_t *base = bb.buf, *pos = bp.buf;
    const uint8_t *valid = bl.len ? bl.buf : NULL;
    int64_t n = (int64_t)(bv.len / 16), m = (int64_t)(bp.len / 8);
    vec found = {0}, shortr = {0};
    int ok = check_views(views, n, inline_ok, (int64_t)(bb.len / 8) - 1, NULL, valid, NULL, 0) == 0;
    if (!ok) goto done;
    ok = vec_init(&found, 8, (size_t)(n / 8 + 16)) && vec_init(&shortr, 8, 64);
    Py_BEGIN_ALLOW_THREADS
    int64_t j = 0, prev = INT64_MIN;
    for (int64_t i = 0; ok && i < n; i++) {
        if (valid && !valid[i]) continue;
        int64_t len = views[4 * i];
        if (len <= 0) continue;
        if (inline_ok && len <= 12) {
            if (!vec_reserve(&shortr, 1)) { ok = 0; break; }
            VEC_PUSH(shortr, int64_t, i);
            continue;
        }
        int64_t s = base[views[4 * i + 2]] + (uint32_t)views[4 * i + 3], e = s + len;
        if (s < prev) j = 0; /* out of byte order: search from the start */
        prev = s;
        if (j < m && pos[j] < s) { /* the first match ending at or after s */
            int64_t lo = j, hi = m;
            while (lo < hi) {
                int64_t mid = (lo + hi) >> 1;
                if (pos[mid] < s) lo = mid + 1; else hi = mid;
            }
            j = lo;
        }
        if (j < m && pos[j] < e) {
            if (!vec_reserve(&found, 1)) { ok = 0; break; }
            VEC_PUSH(found, int64_t, i);
        }
    }
    Py_END_ALLOW_THREADS
    if (!ok) {
        PyErr_NoMemory();
        free(found.data);
        free(shortr.data);
    } else {
        PyObject *a = vec_bytes(&found), *b = vec_bytes(&shortr);
        if (a && b) result = PyTuple_Pack(2, a, b);
        Py_XDECREF(a);
        Py_XDECREF(b);
    }
done:
    PyBuffer_Release(&bv);
    PyBuffer_Release(&bb);
    PyBuffer_Release(&bp);
    PyBuffer_Release(&bl);
    return result;
}

/* -- the prefilter's scan, with the Hyperscan library linked in ----------------------------- */
#ifdef BIASAMP_HAVE_HS
#include <hs.h>

typedef struct {
    hs_database_t *db;
    hs_scratch_t *proto; /* cloned for each call, so calls may run at once */
} hs_prefilter;

static void hs_prefilter_free(PyObject *capsule) {
    hs_prefilter *p = PyCapsule_GetPointer(capsule, "biasamp.hs_prefilter");
    if (!p) return;
    if (p->proto) hs_free_scratch(p->proto);
    if (p->db) hs_free_database(p->db);
    free(p);
}

/* hs_compile(patterns: sequence of bytes, flags: int) -> capsule (block mode, ids = positions) */
static PyObject *py_hs_compile(PyObject *self, PyObject *args) {
    PyObject *seq;
    unsigned int flag;
    if (!PyArg_ParseTuple(args, "OI", &seq, &flag)) return NULL;
    PyObject *fast = PySequence_Fast(seq, "patterns must be a sequence of bytes");
    if (!fast) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    const char **exprs = calloc((size_t)(n ? n : 1), sizeof(char *));
    unsigned int *flags = calloc((size_t)(n ? n : 1), sizeof(unsigned int));
    unsigned int *ids = calloc((size_t)(n ? n : 1), sizeof(unsigned int));
    hs_prefilter *p = calloc(1, sizeof(hs_prefilter));
    PyObject *out = NULL;
    if (!exprs || !flags || !ids || !p) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyBytes_Check(o)) {
            PyErr_SetString(PyExc_TypeError, "patterns must be bytes");
            goto done;
        }
        exprs[i] = PyBytes_AS_STRING(o);
        flags[i] = flag;
        ids[i] = (unsigned int)i;
    }
    hs_compile_error_t *err = NULL;
    if (hs_compile_multi(exprs, flags, ids, (unsigned int)n, HS_MODE_BLOCK, NULL, &p->db, &err) != HS_SUCCESS) {
        PyErr_Format(PyExc_ValueError, "hyperscan: %s", err && err->message ? err->message : "compile error");
        if (err) hs_free_compile_error(err);
        goto done;
    }
    if (hs_alloc_scratch(p->db, &p->proto) != HS_SUCCESS) {
        PyErr_SetString(PyExc_MemoryError, "hyperscan: cannot allocate scratch space");
        goto done;
    }
    out = PyCapsule_New(p, "biasamp.hs_prefilter", hs_prefilter_free);
    if (out) p = NULL;
done:
    if (p) {
        if (p->proto) hs_free_scratch(p->proto);
        if (p->db) hs_free_database(p->db);
        free(p);
    }
    free(exprs);
    free(flags);
    free(ids);
    Py_DECREF(fast);
    return out;
}

typedef struct {
    vec *ends;
    int64_t base;
    int failed;
} hs_ends_ctx;

static int on_match_end(unsigned int id, unsigned long long from, unsigned long long to, unsigned int flags, void *ctx) {
    hs_ends_ctx *c = ctx;
    if (!vec_reserve(c->ends, 1)) {
        c->failed = 1;
        return 1;
    }
    VEC_PUSH(*c->ends, int64_t, c->base + (int64_t)to - 1);
    return 0;
}

static int on_any_match(unsigned int id, unsigned long long from, unsigned long long to, unsigned int flags, void *ctx) {
    *(int *)ctx = 1;
    return 1; /* one is enough */
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* hs_rows(capsule, views, inline, addresses, sizes, valid) -> candidate rows int64: captions
 * holding the last byte of a match in their data buffer (one scan per buffer; views may share
 * bytes, so each caption is decided alone, as rows_with_ends does), and captions inside their
 * view (12 bytes or less), each scanned alone. */
static PyObject *py_hs_rows(PyObject *self, PyObject *args) {
    PyObject *capsule;
    Py_buffer bv, ba, bs, bl;
    int inline_ok;
    if (!PyArg_ParseTuple(args, "Oy*py*y*y*", &capsule, &bv, &inline_ok, &ba, &bs, &bl)) return NULL;
    PyObject *result = NULL;
    hs_prefilter *p = PyCapsule_GetPointer(capsule, "biasamp.hs_prefilter");
    hs_scratch_t *scratch = NULL;
    vec ends = {0}, found = {0};
    int64_t *base = NULL;
    if (!p) goto release;
    if (hs_clone_scratch(p->proto, &scratch) != HS_SUCCESS) {
        PyErr_SetString(PyExc_MemoryError, "hyperscan: cannot allocate scratch space");
        goto release;
    }
    const int32_t *views = bv.buf;
    const uint8_t *flat = bv.buf;
    const int64_t *addresses = ba.buf, *sizes = bs.buf;
    const uint8_t *valid = bl.len ? bl.buf : NULL;
    int64_t n = (int64_t)(bv.len / 16), nb = (int64_t)(ba.len / 8);
    if (bs.len != ba.len || check_views(views, n, inline_ok, nb, sizes, valid, NULL, 0) < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "hs_rows: one size per buffer address");
        goto release;
    }
    base = malloc((size_t)(nb + 1) * 8);
    int ok = base && vec_init(&ends, 8, (size_t)(n / 8 + 16)) && vec_init(&found, 8, (size_t)(n / 8 + 16));
    hs_error_t herr = HS_SUCCESS;
    Py_BEGIN_ALLOW_THREADS
    if (ok) {
        base[0] = 0;
        for (int64_t b = 0; b < nb; b++) base[b + 1] = base[b] + sizes[b];
        hs_ends_ctx ctx = {&ends, 0, 0};
        for (int64_t b = 0; ok && b < nb; b++) {
            if (sizes[b] <= 0) continue;
            ctx.base = base[b];
            hs_error_t e = hs_scan(p->db, (const char *)(intptr_t)addresses[b], (unsigned int)sizes[b], 0, scratch,
                                   on_match_end, &ctx);
            if (ctx.failed) ok = 0;
            else if (e != HS_SUCCESS) herr = e, ok = 0;
        }
        int64_t *pos = (int64_t *)ends.data;
        int64_t m = (int64_t)ends.len;
        for (int64_t i = 1; ok && i < m; i++)
            if (pos[i] < pos[i - 1]) {
                qsort(pos, (size_t)m, 8, cmp_i64);
                break;
            }
        int64_t j = 0, prev = INT64_MIN;
        for (int64_t i = 0; ok && i < n; i++) {
            if (valid && !valid[i]) continue;
            int64_t len = views[4 * i];
            if (len <= 0) continue;
            int hit = 0;
            if (inline_ok && len <= 12) {
                hs_error_t e = hs_scan(p->db, (const char *)(flat + 16 * i + 4), (unsigned int)len, 0, scratch,
                                       on_any_match, &hit);
                if (e != HS_SUCCESS && e != HS_SCAN_TERMINATED) {
                    herr = e;
                    ok = 0;
                    break;
                }
            } else {
                int64_t s = base[views[4 * i + 2]] + (uint32_t)views[4 * i + 3], e = s + len;
                if (s < prev) j = 0;
                prev = s;
                if (j < m && pos[j] < s) {
                    int64_t lo = j, hi = m;
                    while (lo < hi) {
                        int64_t mid = (lo + hi) >> 1;
                        if (pos[mid] < s) lo = mid + 1; else hi = mid;
                    }
                    j = lo;
                }
                hit = j < m && pos[j] < e;
            }
            if (hit) {
                if (!vec_reserve(&found, 1)) { ok = 0; break; }
                VEC_PUSH(found, int64_t, i);
            }
        }
    }
    Py_END_ALLOW_THREADS
    if (herr != HS_SUCCESS)
        PyErr_Format(PyExc_RuntimeError, "hyperscan: scan failed (error %d)", (int)herr);
    else if (!ok)
        PyErr_NoMemory();
    else
        result = vec_bytes(&found);
release:
    if (scratch) hs_free_scratch(scratch);
    free(base);
    free(ends.data);
    free(found.data);
    PyBuffer_Release(&bv);
    PyBuffer_Release(&ba);
    PyBuffer_Release(&bs);
    PyBuffer_Release(&bl);
    return result;
}
#endif

/* -- LAION's caption id ------------------------------------------------------------------- */
static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t fmix64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}
static inline uint64_t getblock(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8); /* little-endian hosts (x86-64, arm64): as MurmurHash3 reads its blocks */
    return v;
}

/* The first 64 bits of MurmurHash3_x64_128(data, seed 0): mmh3.hash64(...)[0] as unsigned. */
static uint64_t murmur3_first(const uint8_t *data, int64_t len) {
    const int64_t nblocks = len / 16;
    uint64_t h1 = 0, h2 = 0;
    const uint64_t c1 = 0x87c37b91114253d5ULL, c2 = 0x4cf5ad432745937fULL;
    for (int64_t i = 0; i < nblocks; i++) {
        uint64_t k1 = getblock(data + 16 * i), k2 = getblock(data + 16 * i + 8);
        k1 *= c1; k1 = rotl64(k1, 31); k1 *= c2; h1 ^= k1;
        h1 = rotl64(h1, 27); h1 += h2; h1 = h1 * 5 + 0x52dce729;
        k2 *= c2; k2 = rotl64(k2, 33); k2 *= c1; h2 ^= k2;
        h2 = rotl64(h2, 31); h2 += h1; h2 = h2 * 5 + 0x38495ab5;
    }
    const uint8_t *tail = data + nblocks * 16;
    uint64_t k1 = 0, k2 = 0;
    switch (len & 15) {
    case 15: k2 ^= ((uint64_t)tail[14]) << 48; /* fall through */
    case 14: k2 ^= ((uint64_t)tail[13]) << 40; /* fall through */
    case 13: k2 ^= ((uint64_t)tail[12]) << 32; /* fall through */
    case 12: k2 ^= ((uint64_t)tail[11]) << 24; /* fall through */
    case 11: k2 ^= ((uint64_t)tail[10]) << 16; /* fall through */
    case 10: k2 ^= ((uint64_t)tail[9]) << 8; /* fall through */
    case 9:
        k2 ^= ((uint64_t)tail[8]);
        k2 *= c2; k2 = rotl64(k2, 33); k2 *= c1; h2 ^= k2;
        /* fall through */
    case 8: k1 ^= ((uint64_t)tail[7]) << 56; /* fall through */
    case 7: k1 ^= ((uint64_t)tail[6]) << 48; /* fall through */
    case 6: k1 ^= ((uint64_t)tail[5]) << 40; /* fall through */
    case 5: k1 ^= ((uint64_t)tail[4]) << 32; /* fall through */
    case 4: k1 ^= ((uint64_t)tail[3]) << 24; /* fall through */
    case 3: k1 ^= ((uint64_t)tail[2]) << 16; /* fall through */
    case 2: k1 ^= ((uint64_t)tail[1]) << 8; /* fall through */
    case 1:
        k1 ^= ((uint64_t)tail[0]);
        k1 *= c1; k1 = rotl64(k1, 31); k1 *= c2; h1 ^= k1;
    }
    h1 ^= (uint64_t)len;
    h2 ^= (uint64_t)len;
    h1 += h2;
    h2 += h1;
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1 += h2;
    return h1;
}

/* hash_pairs(a_offsets int64, a_data, b_offsets int64, b_data) -> int64 per row:
 * mmh3.hash64(a[i] + b[i])[0]. */
static PyObject *hash_pairs(PyObject *self, PyObject *args) {
    Py_buffer ao, ad, bo, bd;
    if (!PyArg_ParseTuple(args, "y*y*y*y*", &ao, &ad, &bo, &bd)) return NULL;
    PyObject *result = NULL;
    const int64_t *aoff = ao.buf, *boff = bo.buf;
    const uint8_t *adat = ad.buf, *bdat = bd.buf;
    int64_t n = (int64_t)(ao.len / 8) - 1;
    if (n < 0) n = 0;
    if (ao.len != bo.len) {
        PyErr_SetString(PyExc_ValueError, "hash_pairs: the two columns differ in length");
        goto release;
    }
    for (int64_t i = 0; i < n; i++)
        if (aoff[i] < 0 || aoff[i + 1] < aoff[i] || aoff[i + 1] > (int64_t)ad.len || boff[i] < 0 || boff[i + 1] < boff[i] ||
            boff[i + 1] > (int64_t)bd.len) {
            PyErr_Format(PyExc_ValueError, "hash_pairs: bad offsets at row %lld", (long long)i);
            goto release;
        }
    int64_t *out = malloc((size_t)(n ? n : 1) * 8);
    size_t cap = 1024;
    uint8_t *buf = malloc(cap);
    int ok = out && buf;
    Py_BEGIN_ALLOW_THREADS
    for (int64_t i = 0; ok && i < n; i++) {
        int64_t la = aoff[i + 1] - aoff[i], lb = boff[i + 1] - boff[i];
        if ((size_t)(la + lb) > cap) {
            cap = (size_t)(la + lb) * 2;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) { ok = 0; break; }
            buf = nb;
        }
        memcpy(buf, adat + aoff[i], (size_t)la);
        memcpy(buf + la, bdat + boff[i], (size_t)lb);
        out[i] = (int64_t)murmur3_first(buf, la + lb);
    }
    Py_END_ALLOW_THREADS
    if (!ok)
        PyErr_NoMemory();
    else
        result = PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)(n * 8));
    free(out);
    free(buf);
release:
    PyBuffer_Release(&ao);
    PyBuffer_Release(&ad);
    PyBuffer_Release(&bo);
    PyBuffer_Release(&bd);
    return result;
}

static PyMethodDef methods[] = {
    {"fill_edges", fill_edges, METH_VARARGS, "Build the open-addressing table of a trie's edges."},
    {"fill_table", fill_table, METH_VARARGS, "Build an FNV-1a open-addressing table of byte strings."},
    {"match", match, METH_VARARGS, "The exact stage over ASCII captions."},
    {"rows_with_ends", rows_with_ends, METH_VARARGS, "Captions holding the last byte of a prefilter match."},
#ifdef BIASAMP_HAVE_HS
    {"hs_compile", py_hs_compile, METH_VARARGS, "Compile a Hyperscan block-mode database."},
    {"hs_rows", py_hs_rows, METH_VARARGS, "Candidate captions by a Hyperscan scan of their buffers."},
#endif
    {"hash_pairs", hash_pairs, METH_VARARGS, "mmh3.hash64(a + b)[0] per row of two string columns."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_scan", "Native kernels of the caption query.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__scan(void) {
    PyObject *m = PyModule_Create(&module);
#ifdef BIASAMP_HAVE_HS
    if (m && (hs_valid_platform() != HS_SUCCESS || PyModule_AddIntConstant(m, "HS_FLAG_CASELESS", HS_FLAG_CASELESS) < 0 ||
              PyModule_AddIntConstant(m, "HAVE_HS", 1) < 0)) {
        /* a CPU the library cannot run on: no native scan (the Python paths are used) */
        PyErr_Clear();
    }
#endif
    return m;
}
