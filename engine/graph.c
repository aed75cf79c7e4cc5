/* `etlrun graph`: the machine as Graphviz DOT (see graph.h). Node ids are "s<N>" from a
 * running counter so that any state name, quotes and newlines included, is safe. */
#include "graph.h"

#include <stdlib.h>
#include <string.h>

#include "state.h"

typedef struct gctx {
    FILE *out;
    const state **ids;  /* id -> state */
    size_t n, cap;
    int cluster;
} gctx;

static size_t id_of(gctx *g, const state *st)
{
    for (size_t i = 0; i < g->n; i++)
        if (g->ids[i] == st)
            return i;
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 64;
        const state **ids = realloc(g->ids, cap * sizeof *ids);
        if (!ids)
            abort(); /* a graph of a compiled pipeline: no sensible way on */
        g->ids = ids;
        g->cap = cap;
    }
    g->ids[g->n] = st;
    return g->n++;
}

static void put_quoted(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', out);
        if (*s == '\n')
            fputs("\\n", out);
        else
            fputc(*s, out);
    }
    fputc('"', out);
}

static const char *shape_of(state_type t)
{
    switch (t) {
    case ST_CHOICE:
        return "diamond";
    case ST_SUCCEED:
        return "doublecircle";
    case ST_FAIL:
        return "octagon";
    case ST_WAIT:
        return "ellipse";
    default:
        return "box";
    }
}

static void write_machine(gctx *g, const machine *m, int depth);

struct edge_arg {
    gctx *g;
    const state *from;
};

static void edge(gctx *g, const state *from, const state *to, const char *label, bool dashed)
{
    fprintf(g->out, "%*ss%zu -> s%zu", 2, "", id_of(g, from), id_of(g, to));
    if (label || dashed) {
        fputs(" [", g->out);
        if (label) {
            fputs("label=", g->out);
            put_quoted(g->out, label);
        }
        if (dashed)
            fprintf(g->out, "%sstyle=dashed", label ? ", " : "");
        fputc(']', g->out);
    }
    fputs(";\n", g->out);
}

static void visit_target(state *to, const char *label, void *arg)
{
    struct edge_arg *ea = arg;
    edge(ea->g, ea->from, to, label, false);
}

static void write_machine(gctx *g, const machine *m, int depth)
{
    int ind = 2 * depth;
    for (size_t i = 0; i < m->n_states; i++) {
        const state *st = m->states[i];
        machine **kids = NULL;
        size_t nk = st->ops->children ? st->ops->children(st, &kids) : 0;
        fprintf(g->out, "%*ss%zu [label=", ind, "", id_of(g, st));
        char label[512];
        snprintf(label, sizeof label, "%s\n(%s)", st->name, st->ops->type_name);
        put_quoted(g->out, label);
        fprintf(g->out, ", shape=%s%s];\n", shape_of(st->type),
                st == m->start ? ", penwidth=2" : "");
        for (size_t k = 0; k < nk; k++) {
            fprintf(g->out, "%*ssubgraph cluster_%d {\n", ind, "", g->cluster++);
            fprintf(g->out, "%*slabel=", ind + 2, "");
            put_quoted(g->out, kids[k]->label);
            fprintf(g->out, ";\n%*sstyle=rounded;\n", ind + 2, "");
            write_machine(g, kids[k], depth + 1);
            fprintf(g->out, "%*s}\n", ind, "");
            if (kids[k]->start)
                edge(g, st, kids[k]->start, st->type == ST_MAP ? "each item" : NULL, true);
        }
    }
    for (size_t i = 0; i < m->n_states; i++) {
        const state *st = m->states[i];
        if (st->next)
            edge(g, st, st->next, NULL, false);
        for (size_t c = 0; c < st->n_catch; c++)
            edge(g, st, st->catch_[c].next, "Catch", true);
        if (st->ops->targets) {
            struct edge_arg ea = {g, st};
            st->ops->targets(st, visit_target, &ea);
        }
    }
}

void graph_write(const pipeline *pl, FILE *out)
{
    gctx g = {.out = out};
    fputs("digraph ", out);
    put_quoted(out, pl->name);
    fputs(" {\n  rankdir=TB;\n  node [fontname=\"Helvetica\"];\n", out);
    fputs("  start [shape=point];\n", out);
    write_machine(&g, pl->top, 1);
    if (pl->top->start)
        fprintf(out, "  start -> s%zu;\n", id_of(&g, pl->top->start));
    fputs("}\n", out);
    free(g.ids);
}
