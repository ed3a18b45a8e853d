/*
 * gen-tunables-md - print docs/tunables.md as generated from the table.
 *
 * usage: gen-tunables-md [-o FILE]    (stdout without -o)
 * `ninja -C BUILD docs` runs it with -o docs/tunables.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tunables/tunables.h"

int main(int argc, char **argv)
{
    const char *path = NULL;
    char *md;
    FILE *f = stdout;
    size_t len;

    if (argc == 3 && strcmp(argv[1], "-o") == 0) {
        path = argv[2];
    } else if (argc != 1) {
        fprintf(stderr, "usage: %s [-o FILE]\n", argv[0]);
        return 2;
    }
    md = lm_tunables_markdown();
    len = strlen(md);
    if (path && !(f = fopen(path, "w"))) {
        perror(path);
        free(md);
        return 1;
    }
    if (fwrite(md, 1, len, f) != len || fflush(f) != 0) {
        perror(path ? path : "stdout");
        free(md);
        return 1;
    }
    if (path && fclose(f) != 0) {
        perror(path);
        free(md);
        return 1;
    }
    free(md);
    return 0;
}
