/*
 * verifyfeed._fastsplit — the splitter's fast path for clean lost-repair rows, in C.
 *
 * take_plain(block, start, columns, numbers, seen_id, seen_code, records, limit) -> int
 *
 * The same contract as verifyfeed.logic.repair_batches._take_plain_py, which is the reference
 * (and the fallback where this module is not built); tests run both on the same rows and compare.
 * From block[start] on, each row (a list of str cells) whose four values are already in canonical
 * form — a name of 1..30 letters (ASCII letters, or CJK unified ideographs U+4E00..U+9FFF), an
 * 18-digit ID number with a plain birth date (1900-2099, days every such month has) and a
 * matching check digit, an empty or plain 11-digit mobile, an ASCII alphanumeric code of 1..16 —
 * and whose ID digest and code no earlier accepted row had, is accepted: both marked seen in
 * seen_id (first 16 digest bytes -> row number) and seen_code (code, upper-cased when that table
 * folds case -> row number), and its
 * record JSON appended to records as bytes. It stops at the first row it does not accept (the
 * caller decides that row, by the rules, and calls again after it) and right after the record
 * that makes len(records) reach limit. Returns the index where it stopped (len(block) at the end).
 * "Not accepted" never means "invalid": the caller asks the rules.
 *
 * SHA-256 is FIPS 180-4, portable C; tests compare it with hashlib on many inputs.
 *
 * Only CPython's limited API is used (no struct layouts, macros or private functions of one
 * version): build.py compiles it with Py_LIMITED_API = 3.11 into _fastsplit.abi3.so, which every
 * CPython from 3.11 on loads — the same file for python3.11, python3.13 and the runtimes after
 * them (docs/decisions.md#native-fast-path). Strings are read as UCS-4 copies into stack buffers
 * (PyUnicode_AsUCS4) or, for the ASCII cells, through their UTF-8 (PyUnicode_AsUTF8AndSize, which
 * is the string's own data for an ASCII str). None, True and False are returned with Py_NewRef,
 * never Py_RETURN_NONE/TRUE/FALSE: CPython 3.13.0's headers define those as a bare `return Py_None`
 * (right only where None is immortal, 3.12 and later), so a build with them leaks one reference to
 * None per call on 3.11 until the interpreter aborts ("deallocating None").
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------------------------ SHA-256 */

static const uint32_t K256[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u,
    0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u,
    0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu,
    0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u,
    0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u,
    0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u,
    0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u,
    0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u,
    0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const unsigned char *p)
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++) {
        w[i] = ((uint32_t)p[4 * i] << 24) | ((uint32_t)p[4 * i + 1] << 16) |
               ((uint32_t)p[4 * i + 2] << 8) | (uint32_t)p[4 * i + 3];
    }
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = hh + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d;
    h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}


#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_SHA_NI_CODE 1

/* The same compression with the x86 SHA extensions (most AMD EPYC and recent Intel Xeon CPUs);
 * chosen at import when CPUID says so. State kept as ABEF/CDGH, four rounds per step. */
__attribute__((target("sha,sse4.1,ssse3"))) static void sha256_block_ni(uint32_t h[8], const unsigned char *p)
{
    const __m128i byteswap = _mm_set_epi64x(0x0c0d0e0f08090a0bll, 0x0405060700010203ll);
    __m128i dcba = _mm_loadu_si128((const __m128i *)&h[0]);
    __m128i hgfe = _mm_loadu_si128((const __m128i *)&h[4]);
    __m128i cdab = _mm_shuffle_epi32(dcba, 0xB1);
    __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);
    __m128i abef = _mm_alignr_epi8(cdab, efgh, 8);
    __m128i cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);
    const __m128i abef_in = abef, cdgh_in = cdgh;
    __m128i w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), byteswap);
    }
    for (int r = 0; r < 16; r++) {
        if (r >= 4) {
            /* W[4r..4r+3] from the four previous groups: w[r%4] holds W[4r-16..], the oldest */
            __m128i t = _mm_sha256msg1_epu32(w[r % 4], w[(r + 1) % 4]);
            t = _mm_add_epi32(t, _mm_alignr_epi8(w[(r + 3) % 4], w[(r + 2) % 4], 4));
            w[r % 4] = _mm_sha256msg2_epu32(t, w[(r + 3) % 4]);
        }
        __m128i k = _mm_add_epi32(w[r % 4], _mm_loadu_si128((const __m128i *)&K256[4 * r]));
        cdgh = _mm_sha256rnds2_epu32(cdgh, abef, k);
        abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(k, 0x0E));
    }
    abef = _mm_add_epi32(abef, abef_in);
    cdgh = _mm_add_epi32(cdgh, cdgh_in);
    __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    _mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(feba, dchg, 0xF0));
    _mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(dchg, feba, 8));
}

static int cpu_has_sha_ni(void)
{
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSE4_1) || !(c & bit_SSSE3)) {
        return 0;
    }
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        return 0;
    }
    return (b & bit_SHA) != 0;
}
#endif

typedef void (*BlockFunction)(uint32_t h[8], const unsigned char *p);
static BlockFunction compress = sha256_block;

static void sha256_with(BlockFunction block, const unsigned char *data, size_t len, unsigned char out[32])
{
    uint32_t h[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                     0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    size_t done = 0;
    for (; len - done >= 64; done += 64) {
        block(h, data + done);
    }
    unsigned char tail[128];
    size_t rest = len - done;
    memcpy(tail, data + done, rest);
    tail[rest] = 0x80;
    size_t padded = rest + 1 + 8 <= 64 ? 64 : 128;
    memset(tail + rest + 1, 0, padded - rest - 1);
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) {
        tail[padded - 1 - i] = (unsigned char)(bits >> (8 * i));
    }
    block(h, tail);
    if (padded == 128) {
        block(h, tail + 64);
    }
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (unsigned char)(h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(h[i] >> 8);
        out[4 * i + 3] = (unsigned char)h[i];
    }
}

static void sha256(const unsigned char *data, size_t len, unsigned char out[32])
{
    sha256_with(compress, data, len, out);
}

static void to_hex(const unsigned char *digest, char *out)
{
    static const char HEX[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = HEX[digest[i] >> 4];
        out[2 * i + 1] = HEX[digest[i] & 15];
    }
}

/* ------------------------------------------------------------------------------ the rules */

#define NAME_MAX_CHARS 30
#define CODE_MAX_CHARS 16

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* A name repair_fields returns unchanged: 1..30 characters, each an ASCII letter, a CJK unified
 * ideograph U+4E00..U+9FFF (every one of them a letter for str.isalpha since Unicode 14.0, which
 * is Python 3.11's: tests/unit/test_fastsplit.py checks it on the running Python), or the middle
 * dot U+00B7 between two of them (ethnic-minority names: 阿卜杜·热合曼); such a string is in NFKC
 * form, passes validate_repair_name unchanged and needs no JSON escaping. */
static int plain_name(const Py_UCS4 *data, Py_ssize_t n)
{
    if (n < 1 || n > NAME_MAX_CHARS) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = data[i];
        if (c < 128) {
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) {
                return 0;
            }
        }
        else if (c == 0x00B7) {
            if (i == 0 || i == n - 1) {
                return 0;
            }
        }
        else if (c < 0x4E00 || c > 0x9FFF) {
            return 0;
        }
    }
    return 1;
}

/* UTF-8 of a plain name (BMP characters only): at most 3 bytes a character */
static Py_ssize_t name_utf8(const Py_UCS4 *data, Py_ssize_t n, char *out)
{
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = data[i];
        if (c < 0x80) {
            out[k++] = (char)c;
        }
        else if (c < 0x800) {
            out[k++] = (char)(0xC0 | (c >> 6));
            out[k++] = (char)(0x80 | (c & 0x3F));
        }
        else {
            out[k++] = (char)(0xE0 | (c >> 12));
            out[k++] = (char)(0x80 | ((c >> 6) & 0x3F));
            out[k++] = (char)(0x80 | (c & 0x3F));
        }
    }
    return k;
}

static const int WEIGHTS[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
static const char CHECK_CHARS[] = "10X98765432";

/* is_plain_id18: 17 digits, a birth date 1900-2099 valid in every year (no 29 February), the
 * matching check character (a digit or an upper-case X). */
static int plain_id18(const unsigned char *s, Py_ssize_t n)
{
    if (n != 18) {
        return 0;
    }
    for (int i = 0; i < 17; i++) {
        if (!is_digit(s[i])) {
            return 0;
        }
    }
    if (!((s[6] == '1' && s[7] == '9') || (s[6] == '2' && s[7] == '0'))) {
        return 0;
    }
    int month = (s[10] - '0') * 10 + (s[11] - '0');
    int day = (s[12] - '0') * 10 + (s[13] - '0');
    int days;
    switch (month) {
    case 1: case 3: case 5: case 7: case 8: case 10: case 12:
        days = 31;
        break;
    case 4: case 6: case 9: case 11:
        days = 30;
        break;
    case 2:
        days = 28;
        break;
    default:
        return 0;
    }
    if (day < 1 || day > days) {
        return 0;
    }
    int sum = 0;
    for (int i = 0; i < 17; i++) {
        sum += (s[i] - '0') * WEIGHTS[i];
    }
    return s[17] == (unsigned char)CHECK_CHARS[sum % 11];
}

static int plain_mobile(const unsigned char *s, Py_ssize_t n)
{
    if (n != 11 || s[0] != '1' || s[1] < '3' || s[1] > '9') {
        return 0;
    }
    for (int i = 2; i < 11; i++) {
        if (!is_digit(s[i])) {
            return 0;
        }
    }
    return 1;
}

static int ascii_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); }

/* normalize_mobile of an ASCII cell, for what it accepts without clean() changing anything
 * (no space at either end): the 11 digits into out, or "" (n == 0). Returns the length written
 * (11 or 0), or -1 to leave the cell to the rules. Separators " -()\t" are dropped unless the
 * text has 11 characters; then a +86, 0086 or 86 prefix is dropped when exactly 11 remain. */
static int normal_mobile(const unsigned char *s, Py_ssize_t n, unsigned char out[11])
{
    if (n == 0) {
        return 0;
    }
    if (n == 11) {
        if (!plain_mobile(s, n)) {
            return -1;
        }
        memcpy(out, s, 11);
        return 11;
    }
    if (n > 40 || ascii_space(s[0]) || ascii_space(s[n - 1])) {
        return -1;
    }
    unsigned char kept[40];
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c != ' ' && c != '-' && c != '(' && c != ')' && c != '\t') {
            kept[k++] = c;
        }
    }
    const unsigned char *digits = kept;
    if (k == 14 && memcmp(kept, "+86", 3) == 0) {
        digits += 3;
    }
    else if (k == 15 && memcmp(kept, "0086", 4) == 0) {
        digits += 4;
    }
    else if (k == 13 && memcmp(kept, "86", 2) == 0) {
        digits += 2;
    }
    if (k - (digits - kept) != 11 || !plain_mobile(digits, 11)) {
        return -1;
    }
    memcpy(out, digits, 11);
    return 11;
}

static int plain_code(const unsigned char *s, Py_ssize_t n)
{
    if (n < 1 || n > CODE_MAX_CHARS) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (!(is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) {
            return 0;
        }
    }
    return 1;
}

/* exact type first: PyList_Check/PyUnicode_Check are calls (PyType_GetFlags) in the limited API */
#define IS_LIST(o) (Py_IS_TYPE((o), &PyList_Type) || PyList_Check(o))
#define IS_STR(o) (Py_IS_TYPE((o), &PyUnicode_Type) || PyUnicode_Check(o))

/* The UTF-8 bytes of a str (for an ASCII str its own data: no copy), or NULL when it is not a str
 * or has no UTF-8 (a lone surrogate): then not plain. The bytes are not checked for ASCII here:
 * every cell they are used for (ID number, mobile, code) is accepted only if each byte is an ASCII
 * digit, letter or separator, which no byte of a multi-byte UTF-8 sequence (>= 0x80) is. */
static const unsigned char *ascii_of(PyObject *text, Py_ssize_t *n)
{
    if (!IS_STR(text)) {
        return NULL;
    }
    const unsigned char *s = (const unsigned char *)PyUnicode_AsUTF8AndSize(text, n);
    if (s == NULL) {
        PyErr_Clear();
    }
    return s;
}


/* ------------------------------------------------------------------------------ SeenKeys */

/* The splitter's in-file dedupe table: the keys seen so far (1..16 bytes: the first 16 bytes of an
 * idcode digest, or an authCode), each with the row number that first saw it. Open addressing with
 * linear probing over 24-byte slots (row 0 = empty), at most 70 % full: for 1M rows about 48 MB,
 * against about 110 MB for a dict of bytes keys, and one cache miss per look-up instead of two or
 * three.
 * Keys are hashed with a per-table random seed, so a file cannot be made to collide on purpose.
 * A table made with fold_case=True upper-cases the ASCII letters of every key it is given (the
 * authCodes of a file are unique ignoring case: AUTH_CODE_UNIQUENESS, PySeenKeys does the same). */
typedef struct {
    unsigned char key[16];
    uint64_t row;
} Slot;

typedef struct {
    PyObject_HEAD
    Slot *slots;
    size_t mask; /* capacity - 1, capacity a power of two */
    size_t used;
    uint64_t seed[2];
    int fold_case; /* keys are upper-cased (ASCII letters) before any look-up */
    int keyed;     /* an ID table keyed with hmac_key: id_key() is HMAC-SHA256(key, digest)[:16] */
    uint32_t inner[8], outer[8]; /* the HMAC's states after its ipad and opad blocks */
} SeenKeysObject;

/* key as the table compares it: ASCII letters upper-cased when the table folds case */
static void fold_key(const SeenKeysObject *table, unsigned char key[16])
{
    if (table->fold_case) {
        for (int i = 0; i < 16; i++) {
            if (key[i] >= 'a' && key[i] <= 'z') {
                key[i] = (unsigned char)(key[i] - ('a' - 'A'));
            }
        }
    }
}

static void state_bytes(const uint32_t h[8], unsigned char out[32])
{
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (unsigned char)(h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(h[i] >> 8);
        out[4 * i + 3] = (unsigned char)h[i];
    }
}

/* one 32-byte message block after a 64-byte prefix already compressed into state: 96 bytes in all */
static void finish96(const uint32_t state[8], const unsigned char message[32], unsigned char out[32])
{
    uint32_t h[8];
    unsigned char block[64] = {0};
    memcpy(h, state, sizeof(h));
    memcpy(block, message, 32);
    block[32] = 0x80;
    block[62] = 0x03; /* 96 * 8 = 768 bits, big-endian */
    compress(h, block);
    state_bytes(h, out);
}

/* The key an ID table stores for an idcode digest: its first 16 bytes, or for a keyed table the
 * first 16 bytes of HMAC-SHA256(hmac_key, digest) (two compressions: the pads are precomputed) —
 * what the resend ledger stores (docs/decisions.md#resend-ledger), never a bare digest. */
static void id_key(const SeenKeysObject *table, const unsigned char digest[32], unsigned char key[16])
{
    if (!table->keyed) {
        memcpy(key, digest, 16);
        return;
    }
    unsigned char inner[32], mac[32];
    finish96(table->inner, digest, inner);
    finish96(table->outer, inner, mac);
    memcpy(key, mac, 16);
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static size_t slot_hash(const SeenKeysObject *table, const unsigned char key[16])
{
    uint64_t w0, w1;
    memcpy(&w0, key, 8);
    memcpy(&w1, key + 8, 8);
    return (size_t)(mix64(w0 ^ table->seed[0]) ^ mix64(w1 ^ table->seed[1]) * 31u);
}

/* the slot holding key, or the empty slot where it would go */
static Slot *slot_find(const SeenKeysObject *table, const unsigned char key[16])
{
    size_t at = slot_hash(table, key) & table->mask;
    for (;;) {
        Slot *slot = &table->slots[at];
        if (slot->row == 0 || memcmp(slot->key, key, 16) == 0) {
            return slot;
        }
        at = (at + 1) & table->mask;
    }
}

static int seen_grow(SeenKeysObject *table)
{
    size_t capacity = (table->mask + 1) * 2;
    Slot *old = table->slots;
    size_t old_capacity = table->mask + 1;
    Slot *slots = PyMem_Calloc(capacity, sizeof(Slot));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    table->slots = slots;
    table->mask = capacity - 1;
    for (size_t i = 0; i < old_capacity; i++) {
        if (old[i].row != 0) {
            *slot_find(table, old[i].key) = old[i];
        }
    }
    PyMem_Free(old);
    return 0;
}

/* the row that first saw key, 0 when none */
static uint64_t seen_first(const SeenKeysObject *table, const unsigned char key[16])
{
    return slot_find(table, key)->row;
}

/* room for one more key (slots found before this call are stale if it grew); -1 on error */
static int seen_reserve(SeenKeysObject *table)
{
    if ((table->used + 1) * 10 > (table->mask + 1) * 7) {
        return seen_grow(table);
    }
    return 0;
}

/* put key with row (> 0) into the empty slot slot_find gave for it, after seen_reserve */
static void slot_fill(SeenKeysObject *table, Slot *slot, const unsigned char key[16], uint64_t row)
{
    memcpy(slot->key, key, 16);
    slot->row = row;
    table->used++;
}

/* mark key seen by row (> 0) unless already seen; -1 on error */
static int seen_mark(SeenKeysObject *table, const unsigned char key[16], uint64_t row)
{
    if (seen_reserve(table) < 0) {
        return -1;
    }
    Slot *slot = slot_find(table, key);
    if (slot->row == 0) {
        slot_fill(table, slot, key, row);
    }
    return 0;
}

/* bytes of 1..16 → key, zero-padded and folded as the table does; -1 with TypeError/ValueError */
static int key_of(const SeenKeysObject *table, PyObject *value, unsigned char key[16])
{
    const char *data;
    Py_ssize_t n;
    if (PyBytes_Check(value)) {
        data = PyBytes_AsString(value);
        n = PyBytes_Size(value);
    }
    else {
        PyErr_SetString(PyExc_TypeError, "a key is bytes");
        return -1;
    }
    if (n < 1 || n > 16) {
        PyErr_SetString(PyExc_ValueError, "a key is 1 to 16 bytes");
        return -1;
    }
    memset(key, 0, 16);
    memcpy(key, data, (size_t)n);
    fold_key(table, key);
    return 0;
}

static PyTypeObject *SeenKeysType; /* the heap type (PyType_FromSpec), made when the module is imported */

/* n random bytes from os.urandom (the per-table hash seed) into out; -1 with an exception */
static int random_bytes(void *out, Py_ssize_t n)
{
    PyObject *os = PyImport_ImportModule("os");
    if (os == NULL) {
        return -1;
    }
    PyObject *bytes = PyObject_CallMethod(os, "urandom", "n", n);
    Py_DECREF(os);
    if (bytes == NULL) {
        return -1;
    }
    int ok = PyBytes_Check(bytes) && PyBytes_Size(bytes) == n;
    if (ok) {
        memcpy(out, PyBytes_AsString(bytes), (size_t)n);
    }
    else {
        PyErr_SetString(PyExc_SystemError, "os.urandom returned the wrong number of bytes");
    }
    Py_DECREF(bytes);
    return ok ? 0 : -1;
}

static PyObject *seen_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"fold_case", "hmac_key", NULL};
    int fold_case = 0;
    Py_buffer hmac_key = {0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|pz*:SeenKeys", names, &fold_case, &hmac_key)) {
        return NULL;
    }
    unsigned char pads[2][64];
    int keyed = hmac_key.buf != NULL;
    if (keyed) {
        if (hmac_key.len < 1 || hmac_key.len > 64) {
            PyBuffer_Release(&hmac_key);
            PyErr_SetString(PyExc_ValueError, "hmac_key is 1 to 64 bytes");
            return NULL;
        }
        memset(pads, 0, sizeof(pads));
        memcpy(pads[0], hmac_key.buf, (size_t)hmac_key.len);
        memcpy(pads[1], hmac_key.buf, (size_t)hmac_key.len);
        for (int i = 0; i < 64; i++) {
            pads[0][i] ^= 0x36;
            pads[1][i] ^= 0x5c;
        }
        PyBuffer_Release(&hmac_key);
    }
    allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    SeenKeysObject *table = (SeenKeysObject *)alloc(type, 0); /* zeroed: slots NULL until allocated */
    if (table == NULL) {
        return NULL;
    }
    table->mask = 1023;
    table->used = 0;
    table->fold_case = fold_case;
    table->keyed = keyed;
    if (keyed) {
        static const uint32_t IV[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                       0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
        memcpy(table->inner, IV, sizeof(IV));
        memcpy(table->outer, IV, sizeof(IV));
        compress(table->inner, pads[0]);
        compress(table->outer, pads[1]);
    }
    table->slots = PyMem_Calloc(table->mask + 1, sizeof(Slot));
    if (table->slots == NULL) {
        Py_DECREF(table);
        return PyErr_NoMemory();
    }
    if (random_bytes(table->seed, (Py_ssize_t)sizeof(table->seed)) < 0) {
        Py_DECREF(table);
        return NULL;
    }
    return (PyObject *)table;
}

static void seen_dealloc(PyObject *self)
{
    PyTypeObject *type = Py_TYPE(self);
    PyMem_Free(((SeenKeysObject *)self)->slots);
    freefunc free_object = (freefunc)PyType_GetSlot(type, Py_tp_free);
    free_object(self);
    Py_DECREF(type); /* an instance of a heap type holds a reference to it */
}

static PyObject *seen_py_first(SeenKeysObject *table, PyObject *key)
{
    unsigned char k[16];
    if (key_of(table, key, k) < 0) {
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(seen_first(table, k));
}

static PyObject *seen_py_mark(SeenKeysObject *table, PyObject *args)
{
    PyObject *key;
    unsigned long long row;
    unsigned char k[16];
    if (!PyArg_ParseTuple(args, "OK:mark", &key, &row) || key_of(table, key, k) < 0) {
        return NULL;
    }
    if (row == 0) {
        PyErr_SetString(PyExc_ValueError, "row numbers start at 1");
        return NULL;
    }
    if (seen_mark(table, k, row) < 0) {
        return NULL;
    }
    return Py_NewRef(Py_None); /* not the RETURN macro: see the top of this file */
}

static Py_ssize_t seen_len(PyObject *table) { return (Py_ssize_t)((SeenKeysObject *)table)->used; }

static PyObject *seen_py_key(SeenKeysObject *table, PyObject *digest)
{
    if (!PyBytes_Check(digest) || PyBytes_Size(digest) != 32) {
        PyErr_SetString(PyExc_ValueError, "key() takes a 32-byte idcode digest");
        return NULL;
    }
    unsigned char k[16];
    id_key(table, (const unsigned char *)PyBytes_AsString(digest), k);
    return PyBytes_FromStringAndSize((const char *)k, 16);
}

/* mark_many(keys, row): mark every 16-byte key of keys (a multiple of 16 bytes) seen by row */
static PyObject *seen_py_mark_many(SeenKeysObject *table, PyObject *args)
{
    Py_buffer keys;
    unsigned long long row;
    if (!PyArg_ParseTuple(args, "y*K:mark_many", &keys, &row)) {
        return NULL;
    }
    if (row == 0 || keys.len % 16 != 0) {
        PyBuffer_Release(&keys);
        PyErr_SetString(PyExc_ValueError, "mark_many takes 16-byte keys and a row > 0");
        return NULL;
    }
    const unsigned char *at = keys.buf;
    for (Py_ssize_t done = 0; done < keys.len; done += 16) {
        unsigned char k[16];
        memcpy(k, at + done, 16);
        fold_key(table, k);
        if (seen_mark(table, k, row) < 0) {
            PyBuffer_Release(&keys);
            return NULL;
        }
    }
    PyBuffer_Release(&keys);
    return Py_NewRef(Py_None); /* not the RETURN macro: see the top of this file */
}

/* the 1-based index of the first of the n ascending bounds >= row (n + 1 when none) */
static Py_ssize_t batch_of(const uint64_t *bounds, Py_ssize_t n, uint64_t row)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (bounds[mid] >= row) {
            hi = mid;
        }
        else {
            lo = mid + 1;
        }
    }
    return lo + 1;
}

/* export(last_rows, below) -> (keys, counts): the keys first seen by rows < below, grouped by the batch
 * they went into — batch i (1-based) holds the rows after last_rows[i-2] up to last_rows[i-1] — batch
 * after batch, 16 bytes each; counts[i-1] is how many batch i has. Rows after the last bound are not
 * exported. */
static PyObject *seen_py_export(SeenKeysObject *table, PyObject *args)
{
    PyObject *last_rows;
    unsigned long long below;
    if (!PyArg_ParseTuple(args, "O!K:export", &PyList_Type, &last_rows, &below)) {
        return NULL;
    }
    Py_ssize_t n = PyList_Size(last_rows);
    uint64_t *bounds = PyMem_Malloc((size_t)(n + 1) * sizeof(uint64_t));
    size_t *offsets = PyMem_Calloc((size_t)(n + 2), sizeof(size_t));
    if (bounds == NULL || offsets == NULL) {
        PyMem_Free(bounds);
        PyMem_Free(offsets);
        return PyErr_NoMemory();
    }
    PyObject *out = NULL, *counts = NULL, *result = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        bounds[i] = PyLong_AsUnsignedLongLong(PyList_GetItem(last_rows, i));
        if (bounds[i] == (uint64_t)-1 && PyErr_Occurred()) {
            goto done;
        }
    }
    for (size_t i = 0; i <= table->mask; i++) { /* counts per batch, at offsets[batch] */
        uint64_t row = table->slots[i].row;
        if (row != 0 && row < below) {
            offsets[batch_of(bounds, n, row)]++;
        }
    }
    counts = PyList_New(n);
    if (counts == NULL) {
        goto done;
    }
    size_t total = 0;
    for (Py_ssize_t b = 1; b <= n; b++) { /* offsets[b] becomes where batch b starts */
        size_t count = offsets[b];
        PyObject *number = PyLong_FromSize_t(count);
        if (number == NULL) {
            goto done;
        }
        if (PyList_SetItem(counts, b - 1, number) < 0) { /* steals number */
            goto done;
        }
        offsets[b] = total;
        total += count;
    }
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(total * 16));
    if (out == NULL) {
        goto done;
    }
    unsigned char *base = (unsigned char *)PyBytes_AsString(out);
    for (size_t i = 0; i <= table->mask; i++) {
        uint64_t row = table->slots[i].row;
        if (row == 0 || row >= below) {
            continue;
        }
        Py_ssize_t b = batch_of(bounds, n, row);
        if (b > n) {
            continue;
        }
        memcpy(base + 16 * offsets[b]++, table->slots[i].key, 16);
    }
    result = PyTuple_Pack(2, out, counts);
done:
    Py_XDECREF(out);
    Py_XDECREF(counts);
    PyMem_Free(bounds);
    PyMem_Free(offsets);
    return result;
}

static PyMethodDef SEEN_METHODS[] = {
    {"first", (PyCFunction)seen_py_first, METH_O, "first(key) -> the row that first saw key, 0 when none"},
    {"mark", (PyCFunction)seen_py_mark, METH_VARARGS, "mark(key, row) -> None; a key already seen keeps its row"},
    {"key", (PyCFunction)seen_py_key, METH_O, "key(idcode digest) -> the 16-byte key this ID table stores"},
    {"mark_many", (PyCFunction)seen_py_mark_many, METH_VARARGS, "mark_many(keys, row) -> None"},
    {"export", (PyCFunction)seen_py_export, METH_VARARGS,
     "export(last_rows, below) -> (keys, counts): keys first seen below row `below`, grouped by batch"},
    {NULL, NULL, 0, NULL},
};

static PyObject *seen_fold_case(SeenKeysObject *table, void *closure)
{
    (void)closure;
    return PyBool_FromLong(table->fold_case);
}

static PyObject *seen_keyed(SeenKeysObject *table, void *closure)
{
    (void)closure;
    return PyBool_FromLong(table->keyed);
}

static PyGetSetDef SEEN_GETSET[] = {
    {"fold_case", (getter)seen_fold_case, NULL, "whether keys are compared ignoring ASCII case", NULL},
    {"keyed", (getter)seen_keyed, NULL, "whether key() is an HMAC (hmac_key given)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot SEEN_SLOTS[] = {
    {Py_tp_doc, (void *)"SeenKeys(fold_case=False, hmac_key=None) -> an empty set of seen keys (1..16 bytes), "
                        "each with its first row"},
    {Py_tp_new, (void *)seen_new},
    {Py_tp_dealloc, (void *)seen_dealloc},
    {Py_tp_methods, SEEN_METHODS},
    {Py_tp_getset, SEEN_GETSET},
    {Py_sq_length, (void *)seen_len},
    {0, NULL},
};

static PyType_Spec SEEN_SPEC = {
    .name = "verifyfeed._fastsplit.SeenKeys",
    .basicsize = sizeof(SeenKeysObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = SEEN_SLOTS,
};

/* ------------------------------------------------------------------------------ take_plain */

/* The arguments both take functions share, checked before any is used as an index or a length:
 * name, ID and code columns are cell indices (>= 0), the phone column is one or -1 (none); the two
 * seen-keys tables are distinct (one key set each); start is within the input and limit at least 1.
 * 0 when they can be trusted, -1 with ValueError otherwise. */
static int check_arguments(Py_ssize_t i_name, Py_ssize_t i_id, Py_ssize_t i_phone, Py_ssize_t i_code,
                           SeenKeysObject *ids, SeenKeysObject *codes, Py_ssize_t start, Py_ssize_t count,
                           Py_ssize_t limit)
{
    if (i_name < 0 || i_id < 0 || i_code < 0 || i_phone < -1) {
        PyErr_SetString(PyExc_ValueError, "columns are cell indices (>= 0; the phone column may be -1: none)");
        return -1;
    }
    if (ids == codes) {
        PyErr_SetString(PyExc_ValueError, "ids and codes must be two SeenKeys tables");
        return -1;
    }
    if (start < 0 || start > count) {
        PyErr_SetString(PyExc_ValueError, "start is not an index of the input");
        return -1;
    }
    if (limit < 1) {
        PyErr_SetString(PyExc_ValueError, "limit must be at least 1");
        return -1;
    }
    return 0;
}

static const char R_NAME[] = "{\"name\":\"";
static const char R_ID[] = "\",\"idcode\":\"";
static const char R_PHONE[] = "\",\"usedPhone\":\"";
static const char R_CODE[] = "\",\"authCode\":\"";
static const char R_END[] = "\"}";
#define LIT(s) (sizeof(s) - 1)

/* The name's characters (UCS-4, in a caller's buffer) and how many there are. */
typedef struct {
    const Py_UCS4 *data;
    Py_ssize_t n;
} Span;

/* Accept one row if its values are plain and not seen yet: mark both keys seen and append the record.
 * 1 accepted, 0 left to the caller (nothing changed), -1 error. */
static int accept_row(Span name, const unsigned char *s_id, Py_ssize_t n_id, const unsigned char *s_phone,
                      Py_ssize_t n_phone, const unsigned char *s_code, Py_ssize_t n_code, uint64_t row,
                      SeenKeysObject *ids, SeenKeysObject *codes, PyObject *records)
{
    if (n_id != 18) {
        return 0;
    }
    unsigned char id_upper[18], mobile[11];
    memcpy(id_upper, s_id, 18);
    if (id_upper[17] == 'x') {
        id_upper[17] = 'X'; /* the number is hashed upper-cased */
    }
    n_phone = normal_mobile(s_phone, n_phone, mobile);
    if (n_phone < 0 || !plain_id18(id_upper, 18) || !plain_code(s_code, n_code) ||
        !plain_name(name.data, name.n)) {
        return 0;
    }
    unsigned char digest[32], phone_digest[32], idk[16];
    sha256(id_upper, 18, digest);
    id_key(ids, digest, idk);
    unsigned char code_key[16] = {0};
    memcpy(code_key, s_code, (size_t)n_code);
    fold_key(codes, code_key); /* the record keeps the code as written */
    if (seen_reserve(ids) < 0 || seen_reserve(codes) < 0) {
        return -1;
    }
    /* the tables outgrow the caches: ask for both slots now and hash the phone meanwhile */
    __builtin_prefetch(&ids->slots[slot_hash(ids, idk) & ids->mask]);
    __builtin_prefetch(&codes->slots[slot_hash(codes, code_key) & codes->mask]);
    if (n_phone) {
        sha256(mobile, 11, phone_digest);
    }
    Slot *id_slot = slot_find(ids, idk);
    Slot *code_slot = slot_find(codes, code_key);
    if (id_slot->row != 0 || code_slot->row != 0) {
        return 0; /* a duplicate: the caller rejects it with the row that came first */
    }
    char utf8[3 * NAME_MAX_CHARS];
    Py_ssize_t n_name = name_utf8(name.data, name.n, utf8);
    Py_ssize_t size = LIT(R_NAME) + n_name + LIT(R_ID) + 64 + LIT(R_PHONE) + (n_phone ? 64 : 0) + LIT(R_CODE) +
                      n_code + LIT(R_END);
    PyObject *record = PyBytes_FromStringAndSize(NULL, size);
    if (record == NULL) {
        return -1;
    }
    char *out = PyBytes_AsString(record);
#define PUT(src, len) (memcpy(out, (src), (size_t)(len)), out += (len))
    PUT(R_NAME, LIT(R_NAME));
    PUT(utf8, n_name);
    PUT(R_ID, LIT(R_ID));
    to_hex(digest, out);
    out += 64;
    PUT(R_PHONE, LIT(R_PHONE));
    if (n_phone) {
        to_hex(phone_digest, out);
        out += 64;
    }
    PUT(R_CODE, LIT(R_CODE));
    PUT(s_code, n_code);
    PUT(R_END, LIT(R_END));
#undef PUT
    slot_fill(ids, id_slot, idk, row);
    slot_fill(codes, code_slot, code_key, row);
    int failed = PyList_Append(records, record) < 0;
    Py_DECREF(record);
    return failed ? -1 : 1;
}

static PyObject *take_plain(PyObject *self, PyObject *args)
{
    PyObject *block, *numbers, *records;
    SeenKeysObject *ids, *codes;
    Py_ssize_t start, limit, i_name, i_id, i_phone, i_code;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!n(nnnn)O!O!O!O!n:take_plain", &PyList_Type, &block, &start, &i_name,
                          &i_id, &i_phone, &i_code, &PyList_Type, &numbers, SeenKeysType, &ids,
                          SeenKeysType, &codes, &PyList_Type, &records, &limit)) {
        return NULL;
    }
    Py_ssize_t rows = PyList_Size(block);
    if (PyList_Size(numbers) != rows) {
        PyErr_SetString(PyExc_ValueError, "numbers and block differ in length");
        return NULL;
    }
    if (check_arguments(i_name, i_id, i_phone, i_code, ids, codes, start, rows, limit) < 0) {
        return NULL;
    }
    Py_ssize_t i = start;
    Py_ssize_t have = PyList_Size(records); /* records only grows by accept_row here */
    for (; i < rows; i++) {
        PyObject *cells = PyList_GetItem(block, i);
        if (!IS_LIST(cells)) {
            PyErr_SetString(PyExc_TypeError, "each row must be a list of str");
            return NULL;
        }
        Py_ssize_t width = PyList_Size(cells);
        if (i_name >= width || i_id >= width || i_code >= width || i_phone >= width) {
            break;
        }
        PyObject *name = PyList_GetItem(cells, i_name);
        Py_ssize_t n_id = 0, n_phone = 0, n_code = 0;
        const unsigned char *s_id = ascii_of(PyList_GetItem(cells, i_id), &n_id);
        const unsigned char *s_code = ascii_of(PyList_GetItem(cells, i_code), &n_code);
        const unsigned char *s_phone = (const unsigned char *)"";
        if (i_phone >= 0) {
            s_phone = ascii_of(PyList_GetItem(cells, i_phone), &n_phone);
        }
        if (s_id == NULL || s_code == NULL || s_phone == NULL || !IS_STR(name)) {
            break;
        }
        unsigned long long row = PyLong_AsUnsignedLongLong(PyList_GetItem(numbers, i));
        if (row == (unsigned long long)-1 && PyErr_Occurred()) {
            return NULL;
        }
        if (row == 0) {
            PyErr_SetString(PyExc_ValueError, "row numbers start at 1");
            return NULL;
        }
        Py_UCS4 name_chars[NAME_MAX_CHARS];
        Span span = {name_chars, PyUnicode_GetLength(name)};
        if (span.n >= 1 && span.n <= NAME_MAX_CHARS &&
            PyUnicode_AsUCS4(name, name_chars, NAME_MAX_CHARS, 0) == NULL) {
            return NULL;
        }
        int taken = accept_row(span, s_id, n_id, s_phone, n_phone, s_code, n_code, row, ids, codes, records);
        if (taken < 0) {
            return NULL;
        }
        if (taken == 0) {
            break;
        }
        if (++have >= limit) {
            i++;
            break;
        }
    }
    return PyLong_FromSsize_t(i);
}

#define MAX_COLUMNS 64
#define MAX_ASCII_CELL 40
#define LINE_BUFFER_CHARS 1024 /* a line of up to this many characters is read into the stack */

/* An ASCII cell of a line into buf (NUL-free, at most MAX_ASCII_CELL); its length, or -1. */
static Py_ssize_t ascii_cell(const Py_UCS4 *data, Py_ssize_t from, Py_ssize_t to, unsigned char *buf)
{
    Py_ssize_t n = to - from;
    if (n > MAX_ASCII_CELL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = data[from + i];
        if (c >= 128) {
            return -1;
        }
        buf[i] = (unsigned char)c;
    }
    return n;
}

static PyObject *take_lines(PyObject *self, PyObject *args)
{
    PyObject *lines, *records;
    SeenKeysObject *ids, *codes;
    Py_ssize_t start, first, width, max_chars, limit, i_name, i_id, i_phone, i_code;
    int delimiter;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!nnCnn(nnnn)O!O!O!n:take_lines", &PyList_Type, &lines, &start, &first,
                          &delimiter, &width, &max_chars, &i_name, &i_id, &i_phone, &i_code, SeenKeysType,
                          &ids, SeenKeysType, &codes, &PyList_Type, &records, &limit)) {
        return NULL;
    }
    Py_ssize_t count = PyList_Size(lines);
    if (first < 1) {
        PyErr_SetString(PyExc_ValueError, "row numbers start at 1");
        return NULL;
    }
    if (first > PY_SSIZE_T_MAX - count) {
        PyErr_SetString(PyExc_OverflowError, "row numbers of these lines overflow");
        return NULL;
    }
    if (check_arguments(i_name, i_id, i_phone, i_code, ids, codes, start, count, limit) < 0) {
        return NULL;
    }
    Py_ssize_t i = start;
    Py_ssize_t have = PyList_Size(records); /* records only grows by accept_row here */
    /* a quote or line-break delimiter (a file's "sep=" line may say so) is the csv reader's to apply */
    if (width < 1 || width > MAX_COLUMNS || i_name >= width || i_id >= width || i_code >= width ||
        i_phone >= width || delimiter == '"' || delimiter == '\r' || delimiter == '\n' || delimiter == 0) {
        return PyLong_FromSsize_t(i); /* every line is left to the caller */
    }
    Py_ssize_t from[MAX_COLUMNS], to[MAX_COLUMNS];
    Py_UCS4 buffer[LINE_BUFFER_CHARS];
    Py_UCS4 *copy = NULL; /* a line too long for buffer: its own copy (PyMem), freed at the next line */
    for (; i < count; i++) {
        PyObject *line = PyList_GetItem(lines, i);
        if (!IS_STR(line)) {
            PyErr_SetString(PyExc_TypeError, "each line must be a str");
            goto failed;
        }
        Py_ssize_t n = PyUnicode_GetLength(line);
        PyMem_Free(copy);
        copy = NULL;
        const Py_UCS4 *data = buffer;
        if (n <= LINE_BUFFER_CHARS) {
            if (n > 0 && PyUnicode_AsUCS4(line, buffer, LINE_BUFFER_CHARS, 0) == NULL) {
                goto failed;
            }
        }
        else {
            copy = PyUnicode_AsUCS4Copy(line);
            if (copy == NULL) {
                goto failed;
            }
            data = copy;
        }
        if (n && data[n - 1] == '\n') {
            n--;
        }
        if (n && data[n - 1] == '\r') {
            n--;
        }
        /* the cells: split at the delimiter; a quote (or an unexpected count) leaves the line to the caller */
        Py_ssize_t field = 0;
        int plain = 1;
        from[0] = 0;
        for (Py_ssize_t p = 0; p < n; p++) {
            Py_UCS4 c = data[p];
            if (c == (Py_UCS4)delimiter) {
                if (field == width - 1) {
                    plain = 0;
                    break;
                }
                to[field++] = p;
                from[field] = p + 1;
            }
            else if (c == '"' || c == '\r' || c == '\n' || c == 0) {
                plain = 0;
                break;
            }
        }
        if (!plain || field != width - 1) {
            break;
        }
        to[field] = n;
        for (Py_ssize_t f = 0; f < width; f++) {
            if (to[f] - from[f] > max_chars) {
                plain = 0;
            }
        }
        unsigned char id[MAX_ASCII_CELL], phone[MAX_ASCII_CELL], code[MAX_ASCII_CELL];
        Py_ssize_t n_id = ascii_cell(data, from[i_id], to[i_id], id);
        Py_ssize_t n_code = ascii_cell(data, from[i_code], to[i_code], code);
        Py_ssize_t n_phone = i_phone >= 0 ? ascii_cell(data, from[i_phone], to[i_phone], phone) : 0;
        if (!plain || n_id < 0 || n_code < 0 || n_phone < 0) {
            break;
        }
        Span name = {data + from[i_name], to[i_name] - from[i_name]};
        int taken = accept_row(name, id, n_id, phone, n_phone, code, n_code, (uint64_t)(first + i), ids, codes,
                               records);
        if (taken < 0) {
            goto failed;
        }
        if (taken == 0) {
            break;
        }
        if (++have >= limit) {
            i++;
            break;
        }
    }
    PyMem_Free(copy);
    return PyLong_FromSsize_t(i);
failed:
    PyMem_Free(copy);
    return NULL;
}

static PyObject *py_sha256(PyObject *self, PyObject *args)
{
    Py_buffer view;
    int portable = 0;
    unsigned char digest[32];
    (void)self;
    if (!PyArg_ParseTuple(args, "y*|p:sha256", &view, &portable)) {
        return NULL;
    }
    sha256_with(portable ? sha256_block : compress, (const unsigned char *)view.buf, (size_t)view.len, digest);
    PyBuffer_Release(&view);
    return PyBytes_FromStringAndSize((const char *)digest, 32);
}

static PyMethodDef METHODS[] = {
    {"take_plain", take_plain, METH_VARARGS,
     "take_plain(block, start, columns, numbers, ids, codes, records, limit) -> int"},
    {"take_lines", take_lines, METH_VARARGS,
     "take_lines(lines, start, first, delimiter, width, max_field_chars, columns, ids, codes, records, limit) -> int"},
    {"sha256", py_sha256, METH_VARARGS,
     "sha256(data, portable=False) -> the 32-byte digest, by the SHA extensions where the CPU has them "
     "(SHA_NI) unless portable (for tests against hashlib)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {
    PyModuleDef_HEAD_INIT, "verifyfeed._fastsplit",
    "The splitter's fast path for clean lost-repair rows (see repair_batches._take_plain_py).", -1, METHODS,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastsplit(void)
{
    PyObject *module = PyModule_Create(&MODULE);
    if (module == NULL) {
        return NULL;
    }
    /* a second import (after the module was deleted from sys.modules) */
    Py_XDECREF((PyObject *)SeenKeysType);
    SeenKeysType = (PyTypeObject *)PyType_FromSpec(&SEEN_SPEC);
    if (SeenKeysType == NULL) {
        Py_DECREF(module);
        return NULL;
    }
    int sha_ni = 0;
#ifdef HAVE_SHA_NI_CODE
    if (cpu_has_sha_ni()) {
        compress = sha256_block_ni;
        sha_ni = 1;
    }
#endif
#ifdef Py_LIMITED_API
    long limited_api = Py_LIMITED_API; /* the oldest CPython this build loads on: 0x030B0000 is 3.11 */
#else
    long limited_api = 0; /* a build for the compiling CPython only */
#endif
    if (PyModule_AddIntConstant(module, "LIMITED_API", limited_api) < 0 ||
        PyModule_AddObjectRef(module, "SHA_NI", sha_ni ? Py_True : Py_False) < 0 ||
        PyModule_AddObjectRef(module, "SeenKeys", (PyObject *)SeenKeysType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
