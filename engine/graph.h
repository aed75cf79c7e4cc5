/* Graphviz DOT drawing of a compiled pipeline: states as nodes, transitions as edges
 * (Choice rules, Default and Catch labelled), Parallel branches and Map item
 * processors as nested clusters. */
#ifndef ETL_GRAPH_H
#define ETL_GRAPH_H

#include <stdio.h>

#include "machine.h"

void graph_write(const pipeline *pl, FILE *out);

#endif
