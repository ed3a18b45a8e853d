/*
 * tunables.h - the one table of migration parameters and capabilities.
 *
 * Every tunable is one row of tunables.def.  Everything else is derived
 * from the rows: the C snapshot struct below, QMP set/query, the extended
 * capabilities, parameter info, query-qmp-schema members, HMP parsing with
 * unit suffixes, the legacy one-tunable commands and docs/tunables.md.
 *
 * Thread model: an lm_tunables is shared by the monitor (sets, queries)
 * and the migration thread (snapshots).  All functions lock internally.
 */
#ifndef LM_TUNABLES_H
#define LM_TUNABLES_H

#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>

#include "livemig/livemig.h"

/* The table itself.  Unit tests of the table's machinery compile the
 * tunables sources against a test table by defining this. */
#ifndef LM_TUNABLES_DEF
#define LM_TUNABLES_DEF "tunables.def"
#endif

/* Value types of the table. */
typedef enum lm_ttype {
    LM_T_BOOL,
    LM_T_UINT,     /* plain integer with min/max */
    LM_T_SIZE,     /* bytes; HMP accepts K/M/G/T suffixes (powers of 1024) */
    LM_T_MS,       /* milliseconds; HMP accepts ms / s suffixes */
    LM_T_PERCENT,  /* 0..100 unless the row narrows it */
    LM_T_ENUM,     /* one of a fixed list of strings; stored as index */
    LM_T_STRING,
} lm_ttype;

/* When a tunable may change. */
typedef enum lm_tmut {
    LM_MUT_LIVE,        /* any time; the migration thread picks it up at its
                           next safe point (start of a pass / checkpoint) */
    LM_MUT_LIVE_KICK,   /* any time, and the change wakes the migration
                           thread at once (switchover-hold, mc-delay) */
    LM_MUT_SETUP_ONLY,  /* refused while a migration is active */
} lm_tmut;

/* Conversions of the legacy one-tunable commands. */
enum { LM_LEGACY_PLAIN, LM_LEGACY_SECONDS };

/* Flags of a row. */
#define LM_F_NONE       0u
#define LM_F_UNSTABLE   1u   /* "x-" name: may change without notice */
#define LM_F_DEPRECATED 2u   /* kept for old tools; query shows it */

/*
 * A consistent copy of every tunable, taken by the migration thread at a
 * safe point.  One member per row of tunables.def, named after the row's
 * C name: uint64_t for numeric rows, bool for bools, unsigned for enums
 * (index into the row's value list), char[256] for strings, and
 * bool cap_<name> for capabilities.
 */
typedef struct lm_params {
#define LM_BOOL(c, n, def, mut, fl, since, doc) bool c;
#define LM_UINT(c, n, ty, def, min, max, unit, mut, fl, since, doc) uint64_t c;
#define LM_ENUM(c, n, def, vals, mut, fl, since, doc) unsigned c;
#define LM_STR(c, n, def, mut, fl, since, doc) char c[256];
#define LM_CAP(c, n, fl, since, doc) bool cap_##c;
#define LM_ALIAS(alias, target)
#define LM_LEGACY(cmd, target, arg, kind)
#include LM_TUNABLES_DEF
#undef LM_BOOL
#undef LM_UINT
#undef LM_ENUM
#undef LM_STR
#undef LM_CAP
#undef LM_ALIAS
#undef LM_LEGACY
} lm_params;

typedef struct lm_tunables lm_tunables;

lm_tunables *lm_tunables_new(void);
void lm_tunables_free(lm_tunables *t);

/* Called (outside the lock) after a set changed a LM_MUT_LIVE_KICK row. */
void lm_tunables_set_kick(lm_tunables *t, void (*kick)(void *opaque),
                          void *opaque);

/* The owner's check of a whole new set (@next) against the current one
 * (@cur), run inside every set after each member passed the table's own
 * checks and before anything changes: false with @err (naming the
 * member) refuses the set, so nothing changes.  For rules the table can't
 * know, e.g. whether memory for a cache can be had.  Runs with the
 * table's lock held: it must not call back into the table. */
typedef bool (*lm_tunables_check_fn)(void *opaque, const struct lm_params *cur,
                                     const struct lm_params *next,
                                     livemig_error *err);
void lm_tunables_set_check(lm_tunables *t, lm_tunables_check_fn fn,
                           void *opaque);

/* The engine tells the table whether a migration is active, and its status
 * name (for error messages).  While active, setup-only parameters and all
 * capabilities are refused. */
void lm_tunables_set_active(lm_tunables *t, bool active, const char *status);

/* Copy every value (consistent, under the lock). */
void lm_tunables_snapshot(lm_tunables *t, struct lm_params *out);

/*
 * Setting, whatever the path (QMP, extended capabilities, HMP, legacy):
 *  - one transaction: every member is checked (name or alias, liveness,
 *    JSON type, range, enum membership) on a copy; on the first error
 *    nothing changes and @err (initialise it with livemig_error_clear or
 *    {0}; the first error set wins) names the member in quotes, the rule
 *    and what to do;
 *  - while active, setup-only parameters and every capability are refused
 *    even when set to the value they already have;
 *  - numeric rows take JSON integers only (no doubles, strings, negatives);
 *    string rows also take null, meaning "" (QEMU's StrOrNull);
 *  - deprecated aliases are accepted wherever a name is;
 *  - after the swap, if a LM_MUT_LIVE_KICK row changed value, the kick
 *    hook runs once, outside the lock, on the setting thread.
 * args may be NULL for "no members" where a command has no required ones.
 */

/* QMP migrate-set-parameters: atomic, nothing changes on error. */
bool lm_tunables_set_parameters(lm_tunables *t, json_object *args,
                                livemig_error *err);
/* QMP query-migrate-parameters: new reference. */
json_object *lm_tunables_query_parameters(lm_tunables *t);
/* QMP migrate-set-capabilities {"capabilities": [...]}: entries are
 * {"capability": NAME, "state": BOOL} or, for any parameter,
 * {"capability": NAME, "value": V}.  Atomic over the whole list.  A
 * "live" member (as the extended query prints) is accepted and ignored, so
 * the extended query's output can be sent back as it is. */
bool lm_tunables_set_capabilities(lm_tunables *t, json_object *args,
                                  livemig_error *err);
/* QMP query-migrate-capabilities; @extended adds every parameter as
 * {"capability", "value", "live"}.  New reference. */
json_object *lm_tunables_query_capabilities(lm_tunables *t, bool extended);
/* QMP query-migrate-parameter-info: new reference.  Parameters first,
 * then capabilities, each {"name", "type" (bool|uint|size|ms|percent|enum|
 * string), "capability", "default", "min" and "max" (numeric rows),
 * "values" (enum rows), "unit", "live", "kick", "doc", "since",
 * "deprecated", "unstable", "aliases"}. */
json_object *lm_tunables_parameter_info(void);

/* HMP migrate_set_parameter NAME VALUE (suffixes allowed) and
 * migrate_set_capability NAME on|off. */
bool lm_tunables_set_from_string(lm_tunables *t, const char *name,
                                 const char *value, livemig_error *err);
bool lm_tunables_set_capability_string(lm_tunables *t, const char *name,
                                       const char *value, livemig_error *err);
/* HMP "info migrate_parameters" / "info migrate_capabilities" text
 * (malloc'd, caller frees), values with units. */
char *lm_tunables_format_parameters(lm_tunables *t);
char *lm_tunables_format_capabilities(lm_tunables *t);

/* Legacy one-tunable commands (migrate_set_downtime, migrate_set_speed,
 * ...), each a row alias.  The monitor registers each name and routes it
 * to lm_tunables_legacy_call. */
size_t lm_tunables_legacy_count(void);
const char *lm_tunables_legacy_name(size_t i);
bool lm_tunables_legacy_call(lm_tunables *t, const char *command,
                             json_object *args, livemig_error *err);

/* query-qmp-schema pieces: the object type members of the parameters
 * (with features live / deprecated / unstable), new reference. */
json_object *lm_tunables_schema_members(void);

/* ---- added to the fixed interface above -------------------------------- */

/* The defaults of every row (what lm_tunables_new starts with). */
void lm_tunables_defaults(struct lm_params *out);

/* HMP form of a legacy command: one string argument, e.g.
 * "migrate_set_downtime 0.5" (seconds; "500ms" also accepted) or
 * "migrate_set_speed 1G" (the target row's HMP suffixes). */
bool lm_tunables_legacy_call_string(lm_tunables *t, const char *command,
                                    const char *value, livemig_error *err);

/* The legacy commands as data, for query-commands / the schema / help:
 * array of {"command", "parameter" (the row it sets), "argument" (its one
 * member name), "type" ("number" for seconds, else the row's schema type),
 * "unit" ("s" for seconds, else the row's unit)}.  New reference. */
json_object *lm_tunables_legacy_info(void);

/*
 * query-qmp-schema types that lm_tunables_schema_members refers to, as an
 * array of SchemaInfo objects, new reference:
 *  - one enum per LM_ENUM row, named after the row in CamelCase
 *    ("zero-page-detection" -> "ZeroPageDetection"); the members' "type"
 *    uses exactly that name;
 *  - "MigrationCapability": enum of the capability names;
 *  - "MigrationParameter": enum of the parameter names.
 * Each is {"name", "meta-type": "enum", "members": [{"name"[, "features"]}],
 * "values": [...]}.  The monitor appends them to its schema as they are and
 * forms the object types itself (e.g. "MigrationParameters" and
 * "MigrateSetParameters" with lm_tunables_schema_members() as members).
 */
json_object *lm_tunables_schema_types(void);

/* HMP "help migrate_set_parameter": one line per parameter with its form,
 * range, default and doc (malloc'd, caller frees). */
char *lm_tunables_format_help(void);

/* docs/tunables.md as generated from the table (malloc'd, caller frees). */
char *lm_tunables_markdown(void);

#endif
