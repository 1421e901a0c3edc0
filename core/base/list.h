/* The one intrusive doubly linked list, after Linux's hlist (list.h) and
 * libuv's queue.h: the links live inside the element, so linking and
 * unlinking never allocate and never fail, and an element unlinks itself in
 * O(1) without knowing which list holds it.
 *
 * Contract:
 *  - A zeroed bw_list_t is an empty list and a zeroed bw_list_node_t is an
 *    unlinked node, so elements and owners from calloc() need no setup.
 *  - A node is on at most one list at a time. bw_list_remove() unlinks it
 *    and zeroes it again; removing an unlinked node does nothing, and
 *    bw_list_linked() says whether a node is on a list, so no separate
 *    "on the list" flag is needed.
 *  - bw_list_push() links at the front: a walk from the front visits the
 *    most recently pushed first.
 *  - The list owns nothing: remove an element before freeing it. A non-empty
 *    list must not be copied or moved in memory (its first node points
 *    back at it); bw_list_move() is the way to hand the nodes over.
 *  - BW_LIST_FOREACH is for walks whose body unlinks nothing. When the body
 *    may unlink or link elements (callbacks), take elements off the front
 *    one at a time, or bw_list_move() the list aside first and drain that.
 *  - Not thread-safe; nothing here calls back or allocates. */
#ifndef BW_CORE_LIST_H
#define BW_CORE_LIST_H

#include <stddef.h>

#include "util.h"

typedef struct bw_list_node {
    struct bw_list_node *next;
    struct bw_list_node **pprev; /* the pointer to this node; NULL: unlinked */
} bw_list_node_t;

typedef struct bw_list {
    bw_list_node_t *first;
} bw_list_t;

static inline int bw_list_empty(const bw_list_t *l)
{
    return l->first == NULL;
}

static inline int bw_list_linked(const bw_list_node_t *n)
{
    return n->pprev != NULL;
}

/* Link the unlinked node n at the front of l. */
static inline void bw_list_push(bw_list_t *l, bw_list_node_t *n)
{
    n->next = l->first;
    if (n->next)
        n->next->pprev = &n->next;
    l->first = n;
    n->pprev = &l->first;
}

/* Unlink n from whatever list holds it, if any. */
static inline void bw_list_remove(bw_list_node_t *n)
{
    if (!n->pprev)
        return;
    *n->pprev = n->next;
    if (n->next)
        n->next->pprev = n->pprev;
    n->next = NULL;
    n->pprev = NULL;
}

/* Hand every node of `from`, in order, to the empty list `to`; `from` is
 * empty afterwards. */
static inline void bw_list_move(bw_list_t *from, bw_list_t *to)
{
    to->first = from->first;
    if (to->first)
        to->first->pprev = &to->first;
    from->first = NULL;
}

/* The element holding node (NULL for NULL); node is evaluated twice. */
#define BW_LIST_ENTRY(node, type, member)                                                          \
    ((node) ? BW_CONTAINER_OF(node, type, member) : (type *)NULL)
/* The element at the front of l, or NULL when l is empty. */
#define BW_LIST_FIRST(l, type, member) BW_LIST_ENTRY((l)->first, type, member)
/* Declare `type *var` and visit every element of l, front first. The body
 * must not unlink var or any other element, unless it leaves the loop
 * right after. */
#define BW_LIST_FOREACH(var, l, type, member)                                                      \
    for (type *var = BW_LIST_FIRST(l, type, member); var;                                          \
         var = BW_LIST_ENTRY(var->member.next, type, member))

#endif /* BW_CORE_LIST_H */
