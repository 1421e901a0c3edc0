/* The one intrusive doubly linked list, after libuv's queue.h and Linux's
 * list.h: a circular list through a sentinel, with the links inside the
 * element, so linking and unlinking never allocate and never fail, both
 * ends are O(1), and an element unlinks itself without knowing its list.
 *
 * Contract:
 *  - A zeroed bw_list_t is an empty list and a zeroed bw_list_node_t is an
 *    unlinked node, so elements and owners from calloc() need no setup.
 *  - A node is on at most one list at a time. bw_list_remove() unlinks it
 *    and zeroes it again; removing an unlinked node does nothing, and
 *    bw_list_linked() says whether a node is on a list, so no separate
 *    "on the list" flag is needed.
 *  - bw_list_push() links at the front, bw_list_push_back() at the back;
 *    walks go front to back.
 *  - The list owns nothing: remove an element before freeing it. A non-empty
 *    list must not be copied or moved in memory (its end nodes point back
 *    at it); bw_list_move() is the way to hand the nodes over.
 *  - BW_LIST_FOREACH is for walks whose body unlinks nothing, or leaves the
 *    loop right after it does. When the body may unlink or link elements
 *    (callbacks), take elements off the front one at a time, or
 *    bw_list_move() the list aside first and drain that.
 *  - Not thread-safe; nothing here calls back or allocates. */
#ifndef BW_CORE_LIST_H
#define BW_CORE_LIST_H

#include <stddef.h>

#include "util.h"

typedef struct bw_list_node {
    struct bw_list_node *next, *prev; /* NULL: unlinked */
} bw_list_node_t;

/* The sentinel: next is the front, prev the back; NULL or itself: empty. */
typedef struct bw_list {
    bw_list_node_t head;
} bw_list_t;

static inline int bw_list_empty(const bw_list_t *l)
{
    return !l->head.next || l->head.next == &l->head;
}

static inline int bw_list_linked(const bw_list_node_t *n)
{
    return n->next != NULL;
}

/* Link the unlinked node n between a and b (neighbours, or the sentinel). */
static inline void bw__list_link(bw_list_node_t *a, bw_list_node_t *n, bw_list_node_t *b)
{
    n->prev = a;
    n->next = b;
    a->next = n;
    b->prev = n;
}

static inline void bw__list_init(bw_list_t *l)
{
    if (!l->head.next)
        l->head.next = l->head.prev = &l->head;
}

/* Link the unlinked node n at the front of l. */
static inline void bw_list_push(bw_list_t *l, bw_list_node_t *n)
{
    bw__list_init(l);
    bw__list_link(&l->head, n, l->head.next);
}

/* Link the unlinked node n at the back of l. */
static inline void bw_list_push_back(bw_list_t *l, bw_list_node_t *n)
{
    bw__list_init(l);
    bw__list_link(l->head.prev, n, &l->head);
}

/* Unlink n from whatever list holds it, if any. */
static inline void bw_list_remove(bw_list_node_t *n)
{
    if (!n->next)
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = NULL;
    n->prev = NULL;
}

/* The node at the front of l, or NULL when l is empty. */
static inline bw_list_node_t *bw_list_first(const bw_list_t *l)
{
    return bw_list_empty(l) ? NULL : l->head.next;
}

/* The node after n on l, or NULL when n is the last. */
static inline bw_list_node_t *bw_list_next(const bw_list_t *l, const bw_list_node_t *n)
{
    return n->next == &l->head ? NULL : n->next;
}

/* Hand every node of `from`, in order, to the empty list `to`; `from` is
 * empty afterwards. */
static inline void bw_list_move(bw_list_t *from, bw_list_t *to)
{
    to->head.next = to->head.prev = NULL;
    if (bw_list_empty(from))
        return;
    bw__list_link(from->head.prev, &to->head, from->head.next);
    from->head.next = from->head.prev = NULL;
}

/* The element holding node (NULL for NULL); node is evaluated twice. */
#define BW_LIST_ENTRY(node, type, member)                                                          \
    ((node) ? BW_CONTAINER_OF(node, type, member) : (type *)NULL)
/* The element at the front of l, or NULL when l is empty. */
#define BW_LIST_FIRST(l, type, member) BW_LIST_ENTRY(bw_list_first(l), type, member)
/* Declare `type *var` and visit every element of l, front first (see the
 * contract above for unlinking inside the body). */
#define BW_LIST_FOREACH(var, l, type, member)                                                      \
    for (type *var = BW_LIST_FIRST(l, type, member); var;                                          \
         var = BW_LIST_ENTRY(bw_list_next(l, &var->member), type, member))

#endif /* BW_CORE_LIST_H */
