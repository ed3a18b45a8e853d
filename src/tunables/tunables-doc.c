/*
 * tunables-doc.c - docs/tunables.md, generated from the rows.
 *
 * gen-tunables-md prints this; `ninja -C BUILD docs` writes it into the
 * source tree, and a unit test fails when the committed file differs, so
 * the reference can never drift from the table.
 */
#include <stdio.h>
#include <string.h>

#include "tunables-int.h"

/* Table cells: '|' would end the cell. */
static void add_cell(lm_text *out, const char *s)
{
    lm_text_add(out, " ");
    for (; *s; s++) {
        if (*s == '|')
            lm_text_add(out, "\\|");
        else
            lm_text_add(out, "%c", *s);
    }
    lm_text_add(out, " |");
}

static void add_number(lm_text *out, const lm_row *r, uint64_t v)
{
    char human[48], cell[96];
    lm_human_size(v, r->unit, human, sizeof(human));
    if (r->type == LM_T_SIZE && human[0])
        snprintf(cell, sizeof(cell), "%llu (%s)", (unsigned long long)v, human);
    else
        snprintf(cell, sizeof(cell), "%llu", (unsigned long long)v);
    add_cell(out, cell);
}

static const char *stability(const lm_row *r)
{
    if (r->flags & LM_F_DEPRECATED)
        return "**deprecated.** ";
    if (r->flags & LM_F_UNSTABLE)
        return "**unstable.** ";
    return "";
}

static void add_doc(lm_text *out, const lm_row *r)
{
    char doc[600];
    snprintf(doc, sizeof(doc), "%s%s", stability(r), r->doc);
    add_cell(out, doc);
}

static void parameters(lm_text *out)
{
    char cell[300];

    lm_text_add(out, "## Parameters\n\n"
                "Set with `migrate-set-parameters` (or an extended "
                "`migrate-set-capabilities` entry `{\"capability\": NAME, "
                "\"value\": V}`), read with `query-migrate-parameters`; "
                "HMP: `migrate_set_parameter NAME VALUE`, "
                "`info migrate_parameters`.\n\n"
                "| name | type | default | range | unit | live | since | "
                "description |\n"
                "|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < lm_nrows; i++) {
        const lm_row *r = &lm_rows[i];
        size_t len;
        const char *v;

        if (r->cap)
            continue;
        snprintf(cell, sizeof(cell), "`%s`", r->name);
        lm_text_add(out, "|");
        add_cell(out, cell);
        add_cell(out, lm_ttype_name(r->type));
        switch (r->type) {
        case LM_T_BOOL:
            add_cell(out, r->def ? "true" : "false");
            add_cell(out, "true, false");
            break;
        case LM_T_ENUM:
            v = lm_row_enum_value(r, r->def, &len);
            snprintf(cell, sizeof(cell), "`%.*s`", (int)len, v);
            add_cell(out, cell);
            lm_row_enum_list(r, ", ", cell, sizeof(cell));
            add_cell(out, cell);
            break;
        case LM_T_STRING:
            snprintf(cell, sizeof(cell), "\"%s\"", r->def_str);
            add_cell(out, cell);
            snprintf(cell, sizeof(cell), "at most %zu bytes", r->size - 1);
            add_cell(out, cell);
            break;
        default:
            add_number(out, r, r->def);
            snprintf(cell, sizeof(cell), "%llu – %llu",
                     (unsigned long long)r->min, (unsigned long long)r->max);
            {
                char human[48];
                lm_human_size(r->max, r->unit, human, sizeof(human));
                if (r->type == LM_T_SIZE && human[0])
                    snprintf(cell + strlen(cell), sizeof(cell) - strlen(cell),
                             " (%s)", human);
            }
            add_cell(out, cell);
            break;
        }
        add_cell(out, r->unit);
        add_cell(out, r->mut == LM_MUT_LIVE ? "yes"
                      : r->mut == LM_MUT_LIVE_KICK ? "yes, wakes the "
                        "migration thread" : "no (setup only)");
        add_cell(out, r->since);
        add_doc(out, r);
        lm_text_add(out, "\n");
    }
}

static void capabilities(lm_text *out)
{
    char cell[300];
    bool any = false;

    lm_text_add(out, "\n## Capabilities\n\n"
                "Booleans, all off by default, frozen while a migration is "
                "active. Set with `migrate-set-capabilities` "
                "`{\"capabilities\": [{\"capability\": NAME, \"state\": "
                "true}]}`, read with `query-migrate-capabilities`; HMP: "
                "`migrate_set_capability NAME on|off`, "
                "`info migrate_capabilities`.\n\n");
    for (size_t i = 0; i < lm_nrows; i++) {
        const lm_row *r = &lm_rows[i];
        if (!r->cap)
            continue;
        if (!any)
            lm_text_add(out, "| name | since | description |\n"
                        "|---|---|---|\n");
        any = true;
        snprintf(cell, sizeof(cell), "`%s`", r->name);
        lm_text_add(out, "|");
        add_cell(out, cell);
        add_cell(out, r->since);
        add_doc(out, r);
        lm_text_add(out, "\n");
    }
    if (!any)
        lm_text_add(out, "None yet.\n");
}

static void aliases_and_legacy(lm_text *out)
{
    lm_text_add(out, "\n## Deprecated spellings\n\n"
                "Accepted by every set command, never shown by a query.\n\n");
    if (!lm_naliases)
        lm_text_add(out, "None.\n");
    else
        lm_text_add(out, "| old name | use instead |\n|---|---|\n");
    for (size_t i = 0; i < lm_naliases; i++)
        lm_text_add(out, "| `%s` | `%s` |\n", lm_aliases[i].alias,
                    lm_aliases[i].target);

    lm_text_add(out, "\n## Legacy commands (deprecated)\n\n"
                "One-tunable QMP commands kept for old tools; each sets one "
                "row of the table. Use `migrate-set-parameters` instead.\n\n");
    if (!lm_nlegacies)
        lm_text_add(out, "None.\n");
    else
        lm_text_add(out, "| command | arguments | sets |\n|---|---|---|\n");
    for (size_t i = 0; i < lm_nlegacies; i++) {
        const lm_legacy_row *l = &lm_legacies[i];
        const lm_row *r = lm_row_find(l->target);
        if (l->kind == LM_LEGACY_SECONDS)
            lm_text_add(out, "| `%s` | `{\"%s\": SECONDS}` (a number, "
                        "e.g. 0.5) | `%s` = SECONDS × 1000 ms |\n",
                        l->command, l->arg, l->target);
        else
            lm_text_add(out, "| `%s` | `{\"%s\": VALUE}` | `%s` = VALUE%s%s "
                        "|\n", l->command, l->arg, l->target,
                        r && r->unit[0] ? " " : "", r ? r->unit : "");
    }
}

char *lm_tunables_markdown(void)
{
    lm_text out = { 0 };

    lm_text_add(&out, "<!-- Generated from src/tunables/tunables.def by "
                "gen-tunables-md; do not edit.\n"
                "     Regenerate with: ninja -C BUILD docs -->\n\n"
                "# Migration tunables\n\n"
                "Every parameter and capability of livemig is one row of "
                "`src/tunables/tunables.def`; this page, the QMP and HMP "
                "commands, `query-migrate-parameter-info` and "
                "`query-qmp-schema` are all derived from it.\n\n"
                "*live* tunables may change while a migration runs: the "
                "migration thread picks the new value up at its next safe "
                "point (the start of a pass or a checkpoint), or at once for "
                "those that wake it. The others, and every capability, are "
                "refused while a migration is active. A set is atomic: if "
                "any member is wrong, nothing changes and the error names "
                "the member.\n\n"
                "HMP values take units: sizes `1024`, `64K`, `512M`, `1.5G`, "
                "`2T` (powers of 1024, `B`/`KiB` spellings too); times "
                "`300`, `300ms`, `2s`, `0.5s` (plain numbers are "
                "milliseconds); percentages `50` or `50%%`; booleans "
                "`on`/`off`.\n\n");
    parameters(&out);
    capabilities(&out);
    aliases_and_legacy(&out);
    return lm_text_take(&out);
}
