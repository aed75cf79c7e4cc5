/* The ASL context object ($$), built only when a path or template asks for it:
 * most transitions never need it, and building it costs an allocation per field. */
#ifndef ETL_CTX_H
#define ETL_CTX_H

#include <jansson.h>

typedef struct ctx_provider {
    json_t *(*build)(void *arg); /* returns a NEW reference to the context object, or NULL */
    void *arg;
    json_t *cache;               /* set by ctx_get on first use; owner json_decref()s it */
} ctx_provider;

/* Borrowed reference to the context object, built on first call; NULL when cp is NULL
 * or building fails. */
static inline json_t *ctx_get(ctx_provider *cp)
{
    if (!cp)
        return NULL;
    if (!cp->cache && cp->build)
        cp->cache = cp->build(cp->arg);
    return cp->cache;
}

static inline void ctx_release(ctx_provider *cp)
{
    if (cp && cp->cache) {
        json_decref(cp->cache);
        cp->cache = NULL;
    }
}

#endif
