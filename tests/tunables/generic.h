/* generic.h - table-independent tunables tests and their helpers. */
#ifndef LM_TEST_TUNABLES_GENERIC_H
#define LM_TEST_TUNABLES_GENERIC_H

#include <stdbool.h>
#include <stdint.h>

#include "tunables/tunables.h"

/* Runs the generic group; returns the number of failed tests. */
int run_generic_tests(void);

/* The parameter-info entry of @name (borrowed), or NULL. */
json_object *info_of(const char *name);
json_object *jget(json_object *o, const char *key);
const char *jstr(json_object *o, const char *key);
bool jbool(json_object *o, const char *key);
uint64_t ju64(json_object *o, const char *key);
/* Every value a client can see, as one string (malloc'd). */
char *state_of(lm_tunables *t);
/* The queried value of parameter @name (new reference). */
json_object *param_value(lm_tunables *t, const char *name);
bool cap_state(lm_tunables *t, const char *name);
/* migrate-set-parameters {name: v}; takes ownership of @v. */
bool set1(lm_tunables *t, const char *name, json_object *v,
          livemig_error *err);
/* migrate-set-capabilities with @json as arguments. */
bool setcaps(lm_tunables *t, const char *json, livemig_error *err);
void assert_contains(const char *hay, const char *needle);

#endif
