#ifndef VOICECORE_CHIREDIS_SHIM_H
#define VOICECORE_CHIREDIS_SHIM_H

// hiredis 0.14.1 (Debian 12 libhiredis-dev). The header lives in /usr/include, so no pkg-config
// search path is needed (pkg-config's -D_FILE_OFFSET_BITS=64 would only produce a SwiftPM warning).
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

// `redisContext.errstr` imports as a 128-element tuple; copy it out as a C string instead.
static inline void vc_redis_errstr(const redisContext *c, char *out, size_t outlen) {
    if (outlen == 0) return;
    strncpy(out, c->errstr, outlen - 1);
    out[outlen - 1] = '\0';
}

// Reply objects from an arena.
//
// hiredis builds a reply as one calloc'd object per value plus a malloc'd copy of each string,
// and freeReplyObject frees them one by one: for a stream read of thousands of entries that was
// the largest part of a consumer's time (malloc and free, not Redis). With these functions
// installed on a context, the objects (the same `redisReply` layout, so nothing else changes)
// come from chunks owned by the context, and `vc_reply_arena_reset` releases a whole reply at
// once. VoiceCore reads one reply at a time and is done with it before asking for the next, so
// the arena is reset before each `redisGetReply`; `freeReplyObject` must never be called on
// these replies (freeObject, which hiredis calls on a reader error, does nothing).

typedef struct vc_reply_chunk {
    struct vc_reply_chunk *next;
    size_t size;
    size_t used;
    size_t pad;  // keeps the data 16-byte aligned
} vc_reply_chunk;

typedef struct vc_reply_arena {
    vc_reply_chunk *first;
    vc_reply_chunk *current;
    size_t bytes;
} vc_reply_arena;

enum { VC_REPLY_CHUNK = 256 * 1024, VC_REPLY_ARENA_KEEP = 16 * 1024 * 1024 };

static inline void *vc_reply_arena_alloc(vc_reply_arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    vc_reply_chunk *c = a->current;
    while (c == NULL || c->used + n > c->size) {
        vc_reply_chunk *next = c ? c->next : a->first;
        if (next == NULL) {
            size_t size = n > VC_REPLY_CHUNK ? n : VC_REPLY_CHUNK;
            next = (vc_reply_chunk *)malloc(sizeof(vc_reply_chunk) + size);
            if (next == NULL) return NULL;
            next->next = NULL;
            next->size = size;
            a->bytes += size;
            if (c) c->next = next; else a->first = next;
        }
        next->used = 0;
        c = next;
    }
    a->current = c;
    void *p = (char *)(c + 1) + c->used;
    c->used += n;
    return p;
}

static inline redisReply *vc_reply_new(const redisReadTask *task, int type) {
    redisReply *r = (redisReply *)vc_reply_arena_alloc((vc_reply_arena *)task->privdata, sizeof(redisReply));
    if (r == NULL) return NULL;
    memset(r, 0, sizeof(*r));
    r->type = type;
    if (task->parent) ((redisReply *)task->parent->obj)->element[task->idx] = r;
    return r;
}

static inline void *vc_reply_string(const redisReadTask *task, char *str, size_t len) {
    char *copy = (char *)vc_reply_arena_alloc((vc_reply_arena *)task->privdata, len + 1);
    if (copy == NULL) return NULL;
    memcpy(copy, str, len);
    copy[len] = '\0';
    redisReply *r = vc_reply_new(task, task->type);
    if (r == NULL) return NULL;
    r->str = copy;
    r->len = len;
    return r;
}

static inline void *vc_reply_array(const redisReadTask *task, int elements) {
    redisReply **children = NULL;
    if (elements > 0) {
        children = (redisReply **)vc_reply_arena_alloc((vc_reply_arena *)task->privdata, (size_t)elements * sizeof(redisReply *));
        if (children == NULL) return NULL;
        memset(children, 0, (size_t)elements * sizeof(redisReply *));
    }
    redisReply *r = vc_reply_new(task, REDIS_REPLY_ARRAY);
    if (r == NULL) return NULL;
    r->element = children;
    r->elements = elements;
    return r;
}

static inline void *vc_reply_integer(const redisReadTask *task, long long value) {
    redisReply *r = vc_reply_new(task, REDIS_REPLY_INTEGER);
    if (r != NULL) r->integer = value;
    return r;
}

static inline void *vc_reply_nil(const redisReadTask *task) {
    return vc_reply_new(task, REDIS_REPLY_NIL);
}

static inline void vc_reply_free_nothing(void *reply) { (void)reply; }

static redisReplyObjectFunctions vc_reply_arena_functions = {
    vc_reply_string, vc_reply_array, vc_reply_integer, vc_reply_nil, vc_reply_free_nothing,
};

/// Installs the arena on a connected context; returns 0, or -1 when out of memory.
static inline int vc_reply_arena_install(redisContext *c) {
    vc_reply_arena *a = (vc_reply_arena *)calloc(1, sizeof(vc_reply_arena));
    if (a == NULL) return -1;
    c->reader->fn = &vc_reply_arena_functions;
    c->reader->privdata = a;
    return 0;
}

/// Releases every reply read so far; beyond VC_REPLY_ARENA_KEEP bytes the extra chunks are freed.
static inline void vc_reply_arena_reset(redisContext *c) {
    vc_reply_arena *a = (vc_reply_arena *)c->reader->privdata;
    if (a == NULL) return;
    if (a->bytes > VC_REPLY_ARENA_KEEP && a->first) {
        vc_reply_chunk *extra = a->first->next;
        while (extra) { vc_reply_chunk *next = extra->next; free(extra); extra = next; }
        a->first->next = NULL;
        a->bytes = a->first->size;
    }
    a->current = a->first;
    if (a->first) a->first->used = 0;
}

/// redisFree, then the arena's memory.
static inline void vc_redis_free(redisContext *c) {
    vc_reply_arena *a = (vc_reply_arena *)c->reader->privdata;
    redisFree(c);
    if (a == NULL) return;
    vc_reply_chunk *chunk = a->first;
    while (chunk) { vc_reply_chunk *next = chunk->next; free(chunk); chunk = next; }
    free(a);
}

#endif
