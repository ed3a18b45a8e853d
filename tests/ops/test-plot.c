/*
 * test-plot.c - livemig-ctl migrate --plot FILE.svg draws the migration:
 * the file exists, is SVG, names its axes and marks the switchover and
 * the passes; without gnuplot the test is skipped (and says why).
 */
#include "itest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool have_gnuplot(void)
{
    const char *argv[] = { "/bin/sh", "-c", "command -v gnuplot", NULL };
    return lmh_run(argv, NULL, NULL, NULL, 10000) == 0;
}

static void test_migrate_plot(void **state)
{
    (void)state;
    if (!have_gnuplot()) {
        fprintf(stderr, "skipped: gnuplot is not installed (Debian: "
                "gnuplot-nox)\n");
        skip();
    }
    char uri[64], svg[400];
    it_tcp_uri(lmh_port(), uri, sizeof(uri));
    lmh_daemon *src = it_start("pattern,size=64M,dirty-rate=16M", NULL, NULL);
    lmh_daemon *dst = it_start("pattern,size=64M", uri, NULL);
    /* 64 MiB/s: a first pass of about a second, then shorter ones */
    it_set_params(src, "{\"max-bandwidth\": 67108864}");
    lmh_path(src, "migration.svg", svg, sizeof(svg));
    const char *argv[] = { lmh_ctl_path(), "-s", src->addr, "migrate",
                           "--plot", svg, uri, NULL };
    char *out = NULL, *err = NULL;
    int rc = lmh_run(argv, NULL, &out, &err, 120000);
    if (rc != 0 || !strstr(out, "status: completed") ||
        !strstr(out, "plot: "))
        it_fail("livemig-ctl migrate --plot exited %d: %s%s", rc, out, err);
    it_check_completed(src, dst, 64 * IT_MiB, true);
    FILE *f = fopen(svg, "r");
    if (!f)
        it_fail("no plot file '%s' after: %s", svg, out);
    char *text = calloc(1, 4 << 20);
    size_t n = fread(text, 1, (4 << 20) - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *want[] = { "<svg", "time since migrate (s)",
                           "remaining to send (MiB)", "rate (MB/s)",
                           "throughput (MB/s)", "dirty rate (MB/s)",
                           "switchover", "pass 2" };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(text, want[i]))
            it_fail("the plot (%zu bytes) lacks '%s'", n, want[i]);
    free(text);
    free(out);
    free(err);

    /* --plot with -d is refused: nothing would be drawn */
    const char *bad[] = { lmh_ctl_path(), "-s", src->addr, "migrate", "-d",
                          "--plot", svg, uri, NULL };
    if (lmh_run(bad, NULL, NULL, NULL, 10000) != 2)
        it_fail("migrate -d --plot was not refused as a usage error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_migrate_plot, it_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
