/* The table of state types. Adding a type: one file in states/ and one line here. */
#include <string.h>

#include "state.h"

extern const state_ops pass_ops, task_ops, choice_ops, wait_ops, parallel_ops, map_ops,
    succeed_ops, fail_ops;

static const state_ops *const table[] = {&pass_ops,     &task_ops, &choice_ops,
                                         &wait_ops,     &parallel_ops, &map_ops,
                                         &succeed_ops,  &fail_ops};

const state_ops *state_ops_find(const char *type_name)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(table[i]->type_name, type_name) == 0)
            return table[i];
    return NULL;
}
