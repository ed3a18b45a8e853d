/* suggest.h - "did you mean": the candidate closest to a mistyped name. */
#ifndef LM_SUGGEST_H
#define LM_SUGGEST_H

#include <stddef.h>

/* Edit distance (insert, delete, substitute, swap of neighbours) between
 * @a and @b, with '_' and '-' counted as the same character (QMP spells
 * names with '-', HMP and habit with '_').  Names longer than 63 bytes
 * count as far from everything. */
size_t lm_edit_distance(const char *a, const char *b);

/* Accumulate candidates one by one; lm_suggest_best() is the closest
 * one near enough to be what was meant (at most 2 edits, 1 for names of
 * four characters or fewer), or NULL. */
typedef struct lm_suggest {
    const char *word;
    const char *best;
    size_t dist;
} lm_suggest;

void lm_suggest_init(lm_suggest *s, const char *word);
void lm_suggest_add(lm_suggest *s, const char *candidate);
const char *lm_suggest_best(const lm_suggest *s);

#endif
