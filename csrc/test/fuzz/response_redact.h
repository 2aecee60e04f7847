/*
 * Test-only: response.c's redaction helpers, which the old reader (response_ref.c) links instead
 * of carrying a copy, so the differential tests the product's redaction, whatever it becomes.
 */
#ifndef CTC_RESPONSE_REDACT_H
#define CTC_RESPONSE_REDACT_H
#include <stddef.h>
#include <lua.h>

/* pushes s[0..n) with each string of the secrets array at argument 5 replaced by "***" */
void ctc_push_redacted(lua_State *L, const char *s, size_t n);
/* pushes a short, printable excerpt of body, secrets redacted first */
void ctc_push_excerpt(lua_State *L, const char *body, size_t len);
#endif
