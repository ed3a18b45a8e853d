/*
 * engine.h - what the rest of livemig (monitor, daemon) may use of the
 * engine beyond the public API.
 */
#ifndef LM_ENGINE_H
#define LM_ENGINE_H

#include "livemig/livemig.h"
#include "tunables/tunables.h"

/* The engine's table of tunables (owned by the engine; never NULL).  The
 * monitor sets and queries it; the engine marks it active while a
 * migration runs, so setup-only tunables and capabilities are refused. */
lm_tunables *lm_engine_tunables(livemig *lm);

#endif
