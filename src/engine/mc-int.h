/*
 * mc-int.h - the timing rule both sides of micro-checkpointing derive
 * from mc-heartbeat-timeout (hb), so that a backup that may have been
 * given up never takes over by itself (docs/micro-checkpointing.md,
 * "Never two primaries").
 *
 *  - The primary gives its backup up when it has heard nothing from it
 *    (ACK or PONG) for lm_mc_giveup_ms(hb), or a send to it made no
 *    progress for as long.
 *  - The backup answers every HEARTBEAT with a PONG.  Each message it
 *    sends while its "lease" holds renews the lease; the lease holds while
 *    its last such message is younger than lm_mc_lease_ms(hb), which is
 *    LM_MC_MARGIN_MS shorter than the primary's give-up time.  A
 *    checkpoint that begins after ACK n proves the primary read ACK n, so
 *    it renews the lease to the moment ACK n was sent.
 *  - The backup takes over by itself only while the lease holds; after
 *    a longer gap (it was stopped or starved) it stands down and only
 *    mc-failover makes it take over.
 *  - The primary that stops writing for lm_mc_suspect_ms(hb) suspects the
 *    backup may have taken over: until an ACK of a later checkpoint
 *    clears that, losing the backup stops its guest instead of running on.
 */
#ifndef LM_MC_INT_H
#define LM_MC_INT_H

#include <stdint.h>

#define LM_MC_MARGIN_MS 500u

static inline uint64_t lm_mc_giveup_ms(uint64_t hb)
{
    return hb ? hb + 1000u : 5000u;
}

static inline uint64_t lm_mc_lease_ms(uint64_t hb)
{
    return lm_mc_giveup_ms(hb) - LM_MC_MARGIN_MS;
}

static inline uint64_t lm_mc_suspect_ms(uint64_t hb)
{
    return hb / 2;
}

/* How often the primary sends a heartbeat when it has nothing else. */
static inline uint64_t lm_mc_heartbeat_every_ms(uint64_t hb)
{
    uint64_t ms = hb ? hb / 4 : 500u;
    return ms < 5 ? 5 : ms;
}

#endif
