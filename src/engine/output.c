/*
 * output.c - output commit: hold what the guest says to the world until
 * the checkpoint that contains the state behind it is acknowledged.
 *
 * Epochs: the guest runs epoch n between checkpoints n-1 and n.  An
 * output submitted while the guest runs epoch n is released when the
 * backup acknowledges checkpoint n, which captured everything the guest
 * did before it was stopped, so the state behind the output is on the
 * backup before anyone sees the output.  Release callbacks run under
 * out_lock, one at a time, in submission order.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine-int.h"

void lm_output_init(livemig *lm)
{
    pthread_mutex_init(&lm->out_lock, NULL);
}

void lm_output_destroy(livemig *lm)
{
    lm_output_release_all(lm);
    pthread_mutex_destroy(&lm->out_lock);
}

static void release_head_locked(livemig *lm)
{
    lm_output *o = lm->out_head;
    lm->out_head = o->next;
    if (!lm->out_head)
        lm->out_tail = NULL;
    o->fn(o->opaque, o->data, o->len);
    lm_hist_add(&lm->out_commit_us, lm_now_us() - o->submit_us);
    lm->out_held--;
    lm->out_released++;
    free(o);
}

bool livemig_output_submit(livemig *lm, const void *data, size_t len,
                           livemig_output_fn release, void *opaque,
                           livemig_error *err)
{
    if (!release) {
        livemig_error_set(err, "an output needs a release callback");
        return false;
    }
    pthread_mutex_lock(&lm->out_lock);
    if (!lm->out_hold) {
        release(opaque, data, len);
        lm->out_released++;
        pthread_mutex_unlock(&lm->out_lock);
        return true;
    }
    lm_output *o = malloc(sizeof(*o) + len);
    if (!o) {
        pthread_mutex_unlock(&lm->out_lock);
        livemig_error_set(err, "out of memory holding a %zu-byte output",
                          len);
        return false;
    }
    o->next = NULL;
    o->epoch = lm->out_epoch;
    o->submit_us = lm_now_us();
    o->fn = release;
    o->opaque = opaque;
    o->len = len;
    memcpy(o->data, data, len);
    if (lm->out_tail)
        lm->out_tail->next = o;
    else
        lm->out_head = o;
    lm->out_tail = o;
    lm->out_held++;
    pthread_mutex_unlock(&lm->out_lock);
    return true;
}

static void write_fd(void *opaque, const void *data, size_t len)
{
    int fd = (int)(intptr_t)opaque;
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;   /* the world stopped listening; nothing to hold */
        p += n;
        len -= (size_t)n;
    }
}

bool livemig_output_write(livemig *lm, int fd, const void *data, size_t len,
                          livemig_error *err)
{
    return livemig_output_submit(lm, data, len, write_fd,
                                 (void *)(intptr_t)fd, err);
}

void lm_output_hold(livemig *lm, uint64_t epoch)
{
    pthread_mutex_lock(&lm->out_lock);
    lm->out_hold = true;
    lm->out_epoch = epoch;
    lm_hist_reset(&lm->out_commit_us);
    pthread_mutex_unlock(&lm->out_lock);
}

void lm_output_set_epoch(livemig *lm, uint64_t epoch)
{
    pthread_mutex_lock(&lm->out_lock);
    lm->out_epoch = epoch;
    pthread_mutex_unlock(&lm->out_lock);
}

void lm_output_release_upto(livemig *lm, uint64_t epoch)
{
    pthread_mutex_lock(&lm->out_lock);
    while (lm->out_head && lm->out_head->epoch <= epoch)
        release_head_locked(lm);
    pthread_mutex_unlock(&lm->out_lock);
}

void lm_output_release_all(livemig *lm)
{
    pthread_mutex_lock(&lm->out_lock);
    while (lm->out_head)
        release_head_locked(lm);
    lm->out_hold = false;
    pthread_mutex_unlock(&lm->out_lock);
}

void lm_output_discard_all(livemig *lm)
{
    pthread_mutex_lock(&lm->out_lock);
    while (lm->out_head) {
        lm_output *o = lm->out_head;
        lm->out_head = o->next;
        lm->out_held--;
        lm->out_discarded++;
        free(o);
    }
    lm->out_tail = NULL;
    lm->out_hold = false;
    pthread_mutex_unlock(&lm->out_lock);
}
