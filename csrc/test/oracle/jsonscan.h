/*
 * The validating JSON page scanner: the reference the parser tests and the fuzzers hold the
 * product's decoder (csrc/jsondecode.c) to. Test-only; not part of the module.
 */
#ifndef CTC_ORACLE_JSONSCAN_H
#define CTC_ORACLE_JSONSCAN_H
#include "../../parsers.h"

/* JSON page scanner. Validates that body[0..len) is one well-formed JSON value
 * (RFC 8259: objects, arrays, strings with all escapes incl. \u and four hex digits, numbers,
 * true/false/null; whitespace; nesting depth limit CTC_JSON_MAX_DEPTH, beyond which it is
 * an error), and, when the top-level value is an object with a member "data" whose value is
 * an array, calls on_record once per element of that array, in order, with:
 *   index (0-based), and kind:
 *     CTC_ID_INT     the element is an object with member "id" whose value is a JSON
 *                    integer in plain digits (0 or [1-9][0-9]*: no sign, fraction or exponent,
 *                    so 5.0, 5e0, -0 are not) or a string of 1-19 decimal digits, at most
 *                    INT64_MAX -> id set
 *     CTC_ID_MISSING the element is an object without "id" (or not an object); id is 0
 *     CTC_ID_OTHER   "id" exists but is something else (float, overflow, bool, ...); id is 0
 * The whole document is validated first: on_record is never called for malformed JSON.
 * If on_record returns non-zero the scan stops and ctc_json_scan_page returns that value
 * (then *count is the number of records delivered, that one included). on_record may be NULL.
 * Returns 0 on success, CTC_JSON_NO_DATA_ARRAY (1) when the document is valid but there is no
 * top-level "data" array (then *count = 0), or -1 for malformed JSON with *why set to a static
 * sentence ("invalid JSON: unterminated string") and *err_offset to the byte offset of the
 * problem (len for an unexpected end). why and err_offset may be NULL.
 * *count receives the number of elements of the data array. Duplicate keys: the last
 * "id"/"data" wins (like cjson). Member names are compared after decoding escapes
 * ("\u0069d" is "id"). Strings are not checked for valid UTF-8 (like cjson), but \u escapes
 * must pair surrogates correctly. Iterative, O(len), no allocation. */
#define CTC_JSON_NO_DATA_ARRAY 1
typedef int (*ctc_record_cb)(void *ud, size_t index, int kind, int64_t id);
int ctc_json_scan_page(const char *body, size_t len, ctc_record_cb on_record, void *ud,
                       size_t *count, const char **why, size_t *err_offset);
/* The last record of a page, fast: the id of the last element of the top-level "data" array
 * (*kind as for on_record) and the number of elements (*count), WITHOUT validating the JSON.
 * For a document ctc_json_scan_page accepts, the answer is the one its last on_record call
 * would give; for any other input it is some answer, read within len (a hint, e.g. to ask for
 * the next page early, which the full read of the page then confirms or throws away).
 * Returns 0, or CTC_JSON_NO_DATA_ARRAY when no top-level "data" array was found. */
int ctc_json_page_last(const char *body, size_t len, int *kind, int64_t *id, size_t *count);
/* Every element of the top-level "data" array, as ctc_json_scan_page's on_record sees them,
 * WITHOUT validating the JSON: for a body a JSON decoder has already accepted (the old
 * records reader, csrc/test/fuzz/response_ref.c, reads ids so after lua-cjson). For a document ctc_json_scan_page accepts, the calls, the result and *count are its
 * own; on any other input, some answer read within len. For well-formed JSON,
 * ctc_json_page_last's id and count are this walk's last call and *count (the two share the
 * search for the array and the reading of an element). Returns 0, CTC_JSON_NO_DATA_ARRAY (no top-level "data" array;
 * *count = 0), or on_record's non-zero value (then *count counts that record). */
int ctc_json_page_ids(const char *body, size_t len, ctc_record_cb on_record, void *ud,
                      size_t *count);

#endif
